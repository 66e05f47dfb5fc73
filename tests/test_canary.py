"""The canary verdict on a prediction log: clearly worse rolls back, clearly better promotes, few rows wait
and then the stated rule decides, unhealthy canaries roll back; the cluster path against a recorded API."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.canary import canary as C
from components.canary import mirror as M
from components.decide import decide as D
from kfloop import clock, config, deploy, fs
from kfloop import spec as kspec
from kfloop.app import replay
from kfloop.store import ModelStore
from tests.fake_apis import FakeKubeApi
from tests.test_store import make_model_dir

NAME = "taxi-tips"
#: The canary step reads only ids, versions, probabilities and labels: any dataset's log will do.
SPEC = kspec.loads(
    f"""
name: {NAME}
task: binary
label: {{column: y, positive: "yes"}}
columns:
  - {{name: x, kind: numeric, nullable: true}}
  - {{name: c, kind: categorical_string, nullable: true}}
"""
)
NOW = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)  # the monitoring clock (data time, as in the replay)
#: End of the log read: the log is stamped by the servers' clock, which is the wall clock here.
END = clock.utc_now() + dt.timedelta(days=1)


@pytest.fixture
def two(tmp_path):
    """A store with champion v0001 and canary v0002 (pushed as a blessed challenger)."""
    return champion_and_canary(tmp_path)


def champion_and_canary(tmp_path):
    """``(root, store, v1, v2)``: champion ``v1`` and canary ``v2`` (the ``two`` fixture's store)."""
    root = str(tmp_path / "store")
    ms = ModelStore(root)
    v1, v2 = (ms.publish(NAME, str(make_model_dir(tmp_path, t)), {}) for t in "ab")
    ms.set_alias(NAME, "champion", v1, action="push")
    ms.set_alias(NAME, "canary", v2, action="push", reason="blessed challenger")
    return root, ms, v1, v2


def _frame(n: int) -> pd.DataFrame:
    data = {f.name: [None] * n for f in SPEC.model_features}
    data["x"] = [1.0] * n
    return pd.DataFrame(data)


def _traffic(root, v_champ, v_can, n, *, seed=0, canary_shift=0.0, batch=50, canary_version=None):
    """``n`` live rows answered by the champion (main log) and by a shadow canary under the same request
    ids (shadow log, as the local loop runs it); the labels arrive in the main log's feedback.

    ``canary_shift`` > 0: the canary separates the classes better; < 0: worse.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    base = y * 1.2 + rng.normal(size=n)
    champ = 1 / (1 + np.exp(-(base + rng.normal(scale=0.6, size=n))))
    can = 1 / (1 + np.exp(-(base + canary_shift * (2 * y - 1) + rng.normal(scale=0.6, size=n))))
    start = clock.utc_now()
    shadow = fs.join(root, config.CanaryConfig().shadow_log)
    labels = []
    for lo in range(0, n, batch):
        rid = f"live-{seed}-{lo:06d}"
        frame = _frame(min(batch, n - lo))
        for version, p, log_root in ((v_champ, champ, root), (canary_version or v_can, can, shadow)):
            recs = replay.prediction_records(
                frame,
                p[lo : lo + len(frame)],
                spec=SPEC,
                model_name=NAME,
                model_version=version,
                start=start + dt.timedelta(milliseconds=lo),
                request_id=rid,
            )
            replay.write_prediction_log(log_root, NAME, recs, spec=SPEC, server_id=f"w{seed}-{lo}")
        labels += [(rid, i, int(y[lo + i])) for i in range(len(frame))]
    replay.write_feedback(root, NAME, labels)


def test_clearly_worse_canary_is_rolled_back(two):
    root, ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=-1.0)
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["action"] == C.REJECT and out["verdict"] == "worse"
    c = out["comparison"]
    assert c["paired"] and c["rows"] == 2000 and c["high"] < 0 and c["challenger"] < c["champion"]
    msg = out["reasons"][0]["message"]
    assert "AUC challenger" in msg and "[" in msg and "2000 paired rows" in msg
    assert ms.aliases(NAME) == {"champion": v1}  # canary cleared, champion untouched
    rec = ms.history(NAME)[-1]
    assert rec["alias"] == "canary" and rec["action"] == "reject" and "worse" in rec["reason"]
    assert [v["action"] for v in C.read_verdicts(root, NAME)] == [C.REJECT]
    assert C.read_verdicts(root, NAME)[0]["decided_at"] == "2016-01-01T00:00:00.000Z"  # monitoring clock
    # The decision remembers: the next decision says the retraining changed nothing.
    known = D.outcomes(ms.history(NAME))
    assert [o["kind"] for o in known][-1] == D.REJECTED_BY_CANARY
    assert "CANARY" in C.to_markdown(out).upper() and "| auc |" in C.to_markdown(out)


def test_clearly_better_canary_is_promoted(two):
    root, ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["action"] == C.PROMOTE and out["verdict"] == "better"
    assert out["comparison"]["low"] > 0
    assert ms.aliases(NAME) == {"champion": v2}
    assert "promote" in out["deploy"]["summary"]


def test_indistinguishable_on_few_rows_keeps_waiting_then_the_stated_rule_decides(two):
    root, ms, v1, v2 = two
    canary_cfg = dataclasses.replace(config.CanaryConfig(), max_checks=2)
    _traffic(root, v1, v2, 300, seed=5, canary_shift=0.0)
    actions = []
    for k in range(3):
        out = C.judge(root, NAME, now=NOW + dt.timedelta(hours=k), window_end=END, canary_cfg=canary_cfg)
        actions.append((out["action"], out["verdict"]))
        assert out["comparison"]["rows"] == 300
    assert actions[:2] == [(C.WAIT, "undecided"), (C.WAIT, "undecided")]
    # The third check is past max_checks: undecided becomes ComparisonConfig.at_limit ("worse": reject).
    assert actions[2] == (C.REJECT, config.ComparisonConfig().at_limit)
    assert "at the limit" in out["summary"]
    assert ms.get_alias(NAME, "canary") is None and ms.get_alias(NAME, "champion") == v1


def test_no_traffic_yet_waits_without_counting(two):
    root, ms, _v1, v2 = two
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["action"] == C.WAIT and out["comparison"]["rows"] == 0
    assert ms.get_alias(NAME, "canary") == v2


def test_canary_answering_with_the_wrong_version_is_rolled_back(two):
    root, ms, v1, v2 = two
    # The "canary" server serves the champion: every row answered twice as v0001, never as v0002.
    _traffic(root, v1, v2, 600, canary_shift=1.0, canary_version=v1)
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["action"] == C.REJECT and out["verdict"] == "unhealthy"
    assert "wrong version" in out["summary"]
    assert ms.get_alias(NAME, "canary") is None


def test_canary_that_fails_requests_is_rolled_back(two, tmp_path):
    root, _ms, v1, v2 = two
    _traffic(root, v1, v2, 400, canary_shift=1.0)
    # One more request the champion answered and the mirrored canary did not (an HTTP error there).
    recs = replay.prediction_records(
        _frame(20), [0.5] * 20, spec=SPEC, model_name=NAME, model_version=v1, request_id="x"
    )
    replay.write_prediction_log(root, NAME, recs, spec=SPEC, server_id="champ-extra")
    # ... and the mirror's record says it forwarded "x" and got a 500.
    M.record(root, NAME, [("x", 500)])
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["action"] == C.REJECT and "1 of" in out["summary"] and "errors" in out["summary"]


def test_a_client_retry_answered_twice_by_the_same_version_is_not_a_failure(two):
    root, _ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    # The client retried request live-0-000000 with the same X-Request-Id: the champion answered it again.
    recs = replay.prediction_records(
        _frame(50), [0.9] * 50, spec=SPEC, model_name=NAME, model_version=v1, request_id="live-0-000000"
    )
    replay.write_prediction_log(root, NAME, recs, spec=SPEC, server_id="champ-retry")
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["verdict"] == "better" and out["action"] == C.PROMOTE, out["summary"]
    assert "50 request rows answered again by" in out["summary"] and "client retries" in out["summary"]
    assert out["comparison"]["rows"] == 2000  # the first answer kept, the retry dropped


def test_an_unmirrored_request_is_not_a_canary_failure_and_the_reason_says_so(two):
    root, _ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    M.record(root, NAME, [(f"live-0-{lo:06d}", 200) for lo in range(0, 2000, 50)])
    # Two requests sent to the champion only (never forwarded by the mirror).
    for rid in ("direct-1", "direct-2"):
        recs = replay.prediction_records(
            _frame(8), [0.5] * 8, spec=SPEC, model_name=NAME, model_version=v1, request_id=rid
        )
        replay.write_prediction_log(root, NAME, recs, spec=SPEC, server_id=f"champ-{rid}")
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["action"] == C.PROMOTE, out["summary"]
    assert "2 of 42 champion requests were never mirrored" in out["summary"]
    assert out["mirror_records"] == 1


def test_conflicting_labels_keep_the_first_and_the_verdict_records_their_provenance(two):
    root, _ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    # An attacker sends the opposite label for every row afterwards: it must not flip the verdict.
    flipped = []
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    for lo in range(0, 2000, 50):
        flipped += [(f"live-0-{lo:06d}", i, int(1 - y[lo + i])) for i in range(50)]
    replay.write_feedback(root, NAME, flipped)
    out = C.judge(root, NAME, now=NOW, window_end=END)
    assert out["action"] == C.PROMOTE and out["verdict"] == "better", out["summary"]
    prov = out["label_provenance"]
    assert prov["conflicts"] == 2000 and prov["feedback_files"] >= 2 and prov["labelled_rows"] == 4000


def test_unknown_version_in_the_window_is_unhealthy(two):
    root, ms, v1, v2 = two
    _traffic(root, v1, "v0099", 300)
    out = C.judge(root, NAME, now=NOW, window_end=END, act=False, record=False)
    assert out["action"] == C.REJECT and "v0099" in out["summary"]
    assert ms.get_alias(NAME, "canary") == v2  # act=False: judged only


def test_no_canary_is_nothing_to_judge(tmp_path):
    out = C.judge(str(tmp_path / "store"), NAME, now=NOW, window_end=END)
    assert out["action"] == C.NONE and "no canary" in out["summary"]


def _live_canary(root, v1, v2, api):
    """The cluster as a training run leaves it: champion ``v1`` rolled out, ``v2`` a 10 % canary."""
    ms = ModelStore(root)
    ms.set_alias(NAME, "canary", None)
    c = api.cluster()
    deploy.deploy(root, NAME, version=v1, mode="cluster", namespace="ml", cluster=c)
    deploy.deploy(root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=10)
    assert ms.aliases(NAME) == {"champion": v1, "canary": v2}
    return c, len(api.requests)


def test_cluster_promote_and_rollback_reach_the_inference_service(two):
    """The step's cluster path against a real HTTP server that answers like the Kubernetes API (KServe
    reconciling the InferenceService) and records every request."""
    root, ms, v1, v2 = two
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{NAME}"
    with FakeKubeApi() as api:
        c, n = _live_canary(root, v1, v2, api)
        _traffic(root, v1, v2, 2000, canary_shift=1.0)
        out = C.judge(root, NAME, now=NOW, window_end=END, mode="cluster", namespace="ml", cluster=c)
        assert out["action"] == C.PROMOTE
        sent = api.requests[n:]
        (patch,) = [r for r in sent if r["method"] == "PATCH"]
        assert patch["path"] == path and patch["type"] == "application/apply-patch+yaml"
        assert patch["query"]["fieldManager"] == ["kfloop"]
        pred = patch["body"]["spec"]["predictor"]
        assert pred["canaryTrafficPercent"] == 100 and f"--model-ref={v2}" in pred["model"]["args"]
        assert {r["method"] for r in sent} == {"GET", "PATCH"} and all(r["path"] == path for r in sent)
        assert api.live["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
        assert ms.aliases(NAME) == {"champion": v2}

        # A new, clearly worse canary: rolled back, the champion re-pinned at 100 %.
        v3 = ms.publish(NAME, str(make_model_dir(Path(root).parent, "c")), {})
        deploy_out = deploy.deploy(
            root, NAME, version=v3, mode="cluster", namespace="ml", cluster=c, canary_percent=10
        )
        assert deploy_out.alias == "canary"
        n = len(api.requests)
        _traffic(root, v2, v3, 2000, seed=9, canary_shift=-1.0)
        out = C.judge(root, NAME, now=NOW, window_end=END, mode="cluster", namespace="ml", cluster=c)
        assert out["action"] == C.REJECT
        (patch,) = [r for r in api.requests[n:] if r["method"] == "PATCH"]
        pred = patch["body"]["spec"]["predictor"]
        assert pred["canaryTrafficPercent"] == 100 and f"--model-ref={v2}" in pred["model"]["args"]
        assert ms.aliases(NAME) == {"champion": v2}


def test_the_canary_steps_api_calls_are_within_the_pipelines_rbac(two):
    """What the step sends to the Kubernetes API (recorded) is allowed by manifests/base/rbac.yaml."""
    import yaml

    rbac = Path(__file__).resolve().parents[1] / "manifests" / "base" / "rbac.yaml"
    roles = [d for d in yaml.safe_load_all(rbac.read_text()) if d and d["kind"] == "Role"]
    (rule,) = [r for role in roles for r in role["rules"] if "inferenceservices" in r["resources"]]
    root, _ms, v1, v2 = two
    with FakeKubeApi() as api:
        c, n = _live_canary(root, v1, v2, api)
        _traffic(root, v1, v2, 2000, canary_shift=-1.0)
        C.judge(root, NAME, now=NOW, window_end=END, mode="cluster", namespace="ml", cluster=c)
        sent = api.requests[n:]
        verbs = {{"GET": "get", "PATCH": "patch"}[r["method"]] for r in sent}
        assert all("/inferenceservices/" in r["path"] for r in sent)
    assert verbs == {"get", "patch"} and verbs <= set(rule["verbs"])


def test_compiled_monitoring_ir_has_the_canary_step_on_the_schedulers_clock(tmp_path):
    import yaml
    from kfp import compiler

    from pipelines import monitoring

    out = tmp_path / "monitoring.yaml"
    compiler.Compiler().compile(monitoring.create_pipeline(), str(out))
    ir = next(yaml.safe_load_all(out.read_text()))  # the pipeline spec (a platform spec may follow)
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["canary-op"]["taskInfo"]["name"] == "canary verdict"
    assert "monitor-op" in tasks["canary-op"]["dependentTasks"]
    assert (
        tasks["decide-op"]["inputs"]["artifacts"]["canary"]["taskOutputArtifact"]["producerTask"]
        == "canary-op"
    )
    for name in ("monitor-op", "canary-op", "decide-op"):
        sched = tasks[name]["inputs"]["parameters"]["scheduled_time"]["runtimeValue"]["constant"]
        assert sched == "{{$.pipeline_job_schedule_time_utc}}"
    assert tasks["canary-op"]["inputs"]["parameters"]["mode"]["componentInputParameter"] == "deploy_mode"
    assert ir["root"]["inputDefinitions"]["parameters"]["deploy_mode"]["defaultValue"] == "cluster"
    outputs = ir["components"]["comp-canary-op"]["outputDefinitions"]["artifacts"]
    assert {outputs[k]["artifactType"]["schemaTitle"] for k in ("metrics", "report", "page")} == {
        "system.Metrics",
        "system.Markdown",
        "system.HTML",
    }


def test_traffic_split_is_compared_unpaired_and_says_so(two):
    """A KServe split: each version answered its own requests (main log only), so the rows differ."""
    root, _ms, v1, v2 = two
    rng = np.random.default_rng(3)
    labels = []
    for version, shift, n, tag in ((v1, 0.0, 3000, "a"), (v2, 1.5, 3000, "b")):
        y = rng.integers(0, 2, n)
        p = 1 / (1 + np.exp(-(y * 1.2 + shift * (2 * y - 1) + rng.normal(size=n))))
        for lo in range(0, n, 100):
            rid = f"split-{tag}-{lo}"
            recs = replay.prediction_records(
                _frame(100),
                p[lo : lo + 100],
                spec=SPEC,
                model_name=NAME,
                model_version=version,
                request_id=rid,
            )
            replay.write_prediction_log(root, NAME, recs, spec=SPEC, server_id=f"split-{tag}-{lo}")
            labels += [(rid, i, int(y[lo + i])) for i in range(100)]
    replay.write_feedback(root, NAME, labels)
    out = C.judge(root, NAME, now=NOW, window_end=END, act=False, record=False)
    c = out["comparison"]
    assert c["paired"] is False and c["rows"] == 6000 and out["verdict"] == "better"
    assert "rows (unpaired)" in out["summary"]


def test_a_compiled_canary_step_rolls_out_the_compiled_predictor_image(tmp_path):
    """Promote / rollback from the step render the image the pipeline was compiled with (kfloop compile)."""
    from kfloop.app import compile as kc

    paths = kc.compile_all(tmp_path, registry="eu.gcr.io/acme", tag="sha-1234")
    spec, _ = kc.load_ir(paths["monitoring"])
    params = spec["root"]["dag"]["tasks"]["canary-op"]["inputs"]["parameters"]
    assert (
        params["serving_image"]["runtimeValue"]["constant"] == kc.images("eu.gcr.io/acme", "sha-1234").serving
    )
