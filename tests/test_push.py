"""Push: blessed models are published (first → champion, later → canary); others are not, and why is kept.

No ``from __future__ import annotations`` here: the kfp.local test defines a pipeline, and kfp needs real
(not string) annotations.
"""

import json

import pytest

from components.push.push import PushError, push, read_blessing
from kfloop.store import ModelStore
from tests.test_store import make_model_dir

NAME = "taxi-tips"


def blessing_file(path, blessed: bool, *, auc: float = 0.8):
    reasons = [
        {
            "metric": "auc",
            "slice": "overall",
            "threshold": 0.75,
            "challenger": auc,
            "champion": None,
            "passed": blessed,
            "message": f"overall AUC {auc} {'>=' if blessed else '<'} floor 0.75",
        }
    ]
    body = {"blessed": blessed, "reasons": reasons, "champion_version": None, "metrics": {"auc": auc}}
    path.write_text(json.dumps(body))
    return str(path)


def test_first_blessed_is_champion_then_canary_and_rejects_recorded(tmp_path):
    root = str(tmp_path / "store")
    r1 = push(
        str(make_model_dir(tmp_path, "a")),
        blessing_file(tmp_path / "b1.json", True),
        root,
        NAME,
        {"run_id": "run-1"},
    )
    assert (r1.pushed, r1.version, r1.alias, r1.champion) == (True, "v0001", "champion", "v0001")
    ms = ModelStore(root)
    meta = ms.metadata(NAME, "v0001")
    assert meta["run_id"] == "run-1" and meta["blessing"]["blessed"] is True and meta["metrics"]["auc"] == 0.8

    r2 = push(str(make_model_dir(tmp_path, "b")), blessing_file(tmp_path / "b2.json", True), root, NAME)
    assert (r2.version, r2.alias, r2.champion) == ("v0002", "canary", "v0001")
    assert ms.aliases(NAME) == {"champion": "v0001", "canary": "v0002"}

    r3 = push(
        str(make_model_dir(tmp_path, "c")),
        blessing_file(tmp_path / "b3.json", False, auc=0.6),
        root,
        NAME,
        {"run_id": "run-3"},
    )
    assert not r3.pushed and r3.version is None and r3.champion == "v0001"
    assert r3.reasons == ("overall AUC 0.6 < floor 0.75",)
    assert ms.versions(NAME) == ["v0001", "v0002"]  # nothing pushed
    rejected = [h for h in ms.history(NAME) if h["event"] == "rejected"]
    assert (
        len(rejected) == 1 and rejected[0]["reasons"] == list(r3.reasons) and rejected[0]["run_id"] == "run-3"
    )
    first = [h for h in ms.history(NAME) if h["event"] == "alias" and h["alias"] == "champion"]
    assert [(h["to"], h["outcome"], h["reason"]) for h in first] == [
        ("v0001", "success", "first blessed model")
    ]


def test_bad_blessing_is_named(tmp_path):
    with pytest.raises(PushError, match="does not exist"):
        read_blessing(str(tmp_path / "none.json"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(PushError, match="not JSON"):
        read_blessing(str(tmp_path / "bad.json"))
    (tmp_path / "str.json").write_text(json.dumps({"blessed": "yes"}))
    with pytest.raises(PushError, match="'blessed' must be true or false"):
        push(str(make_model_dir(tmp_path)), str(tmp_path / "str.json"), str(tmp_path / "s"), NAME)
    assert ModelStore(str(tmp_path / "s")).versions(NAME) == []


@pytest.mark.slow
def test_push_op_under_kfp_local(tmp_path):
    """push_op in a kfp.local pipeline: a blessed model becomes champion, a non-blessed one is refused."""
    from kfp import dsl

    from components.deploy.component import deploy_op
    from components.push.component import push_op
    from kfloop.app import local

    root = str(tmp_path / "store")

    @dsl.pipeline(name="push-test")
    def pipe(model_uri: str, blessing_uri: str, store_uri: str, run_id: str, reference_uri: str):
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model, reimport=True)
        blessing = dsl.importer(artifact_uri=blessing_uri, artifact_class=dsl.Artifact, reimport=True)
        reference = dsl.importer(artifact_uri=reference_uri, artifact_class=dsl.Artifact, reimport=True)
        # the training data whose digest the version keeps (any file will do here)
        data = dsl.importer(artifact_uri=reference_uri, artifact_class=dsl.Dataset, reimport=True)
        pushed = push_op(
            model=model.output,
            blessing=blessing.output,
            store_uri=store_uri,
            model_name=NAME,
            data_window_start="2013-01-01",
            data_window_end="2015-01-01",
            run_id=run_id,
            code_version="0.1.0",
            reference=reference.output,
            train_data=data.output,
            eval_data=data.output,
            trigger_id="decision-x",
            notify_config="",
        )
        deploy_op(
            pushed=pushed.outputs["pushed"],
            store_uri=store_uri,
            model_name=NAME,
            mode="local",
            namespace="",
            canary_percent=-1,
        )

    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "reference.json").write_text("{}")
    args = {
        "model_uri": str(make_model_dir(tmp_path, "a")),
        "store_uri": root,
        "reference_uri": str(tmp_path / "reference"),
    }
    run = local.run_pipeline(
        pipe,
        tmp_path / "runs",
        blessing_uri=blessing_file(tmp_path / "b.json", True),
        run_id="local-run",
        **args,
    )
    out = json.loads(run.output("push-op", "pushed").read_text())
    assert (out["pushed"], out["version"], out["alias"]) == (True, "v0001", "champion")
    assert "published" in run.output("push-op", "report").read_text()
    ms = ModelStore(root)
    assert ms.resolve(NAME) == "v0001"
    assert (tmp_path / "store" / "models" / NAME / "v0001" / "reference" / "reference.json").is_file()
    meta = ms.metadata(NAME, "v0001")
    assert (
        meta["data_window"] == {"start": "2013-01-01", "end": "2015-01-01"} and meta["run_id"] == "local-run"
    )
    # lineage: the trigger, the data's content digest, the code's commit
    from kfloop import lineage, notify

    digest = lineage.data_digest(str(tmp_path / "reference"))
    assert meta["trigger_id"] == "decision-x" and digest.startswith("sha256:")
    assert meta["provenance"]["data_digest"] == {"train": digest, "eval": digest}
    assert meta["provenance"]["git_commit"] == lineage.code_commit()
    facts = lineage.version_facts(root, NAME, "v0001")
    assert facts["trigger_id"] == "decision-x" and facts["data_digest"]["train"] == digest
    assert [e["type"] for e in notify.read_events(root, NAME)] == ["challenger.blessed"]

    run = local.run_pipeline(
        pipe,
        tmp_path / "runs",
        blessing_uri=blessing_file(tmp_path / "n.json", False),
        run_id="run-2",
        **args,
    )
    out = json.loads(run.output("push-op", "pushed").read_text())
    assert not out["pushed"] and out["reasons"] and out["champion"] == "v0001"
    assert ms.versions(NAME) == ["v0001"]
    assert [h["event"] for h in ms.history(NAME)][-1] == "rejected"
    assert [e["type"] for e in notify.read_events(root, NAME)][-1] == "challenger.refused"
    assert "nothing deployed" in run.output("deploy-op", "report").read_text()

    blessing = blessing_file(tmp_path / "b2.json", True)
    run = local.run_pipeline(pipe, tmp_path / "runs", blessing_uri=blessing, run_id="run-3", **args)
    assert json.loads(run.output("push-op", "pushed").read_text())["alias"] == "canary"
    assert "canary v0002 -> v0002" in run.output("deploy-op", "report").read_text()
    assert ms.aliases(NAME) == {"champion": "v0001", "canary": "v0002"}
