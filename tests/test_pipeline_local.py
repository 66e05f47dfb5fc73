"""The whole training pipeline under kfp.local (SubprocessRunner, this env) on the real taxi CSV."""

import json

import pytest

from kfloop import datasets
from kfloop import features as F
from kfloop.local import run_pipeline
from kfloop.store import ModelStore
from pipelines import training


def _executor(run, task):
    return json.loads(run.output(task, "executor_output.json").read_text())


@pytest.mark.slow
def test_training_pipeline_blesses_pushes_and_crowns_the_first_model(tmp_path, taxi_csv):
    store_uri = str(tmp_path / "store")
    run = run_pipeline(
        training.create_pipeline(),
        tmp_path / "root",
        source=str(taxi_csv),
        store_uri=store_uri,
        deploy_mode="local",
        epochs=4,
    )
    # ingest: a time split whose counts add up
    train = datasets.read_dataset(str(run.output("ingest-op", "train_data")))
    live = datasets.read_dataset(str(run.output("ingest-op", "live_data")))
    assert live[F.EVENT_TIME.name].min() > train[F.EVENT_TIME.name].max()
    counts = _executor(run, "ingest-op")["artifacts"]["counts"]["artifacts"][0]["metadata"]
    assert counts["train_rows"] + counts["eval_rows"] + counts["live_rows"] == counts["rows_read"] == 15002
    assert counts["train_rows"] == len(train)

    # validate passed clean data; evaluate blessed the first model on value thresholds only
    assert run.output("validate-op", "report").read_text().lstrip().startswith("<!DOCTYPE html>")
    blessing = json.loads(run.output("evaluate-op", "blessing").read_text())
    assert blessing["blessed"] is True
    assert any(r["kind"] == "no_champion" for r in blessing["reasons"])
    assert blessing["metrics"]["auc"] > 0.75

    # push: the blessed first model is the champion, with a history record saying so
    store = ModelStore(store_uri)
    config_name = "taxi-tips"
    (version,) = store.versions(config_name)
    assert store.get_alias(config_name, "champion") == version
    crowned = [
        h for h in store.history(config_name) if h.get("alias") == "champion" and h["action"] == "push"
    ]
    assert len(crowned) == 1
    assert (crowned[0]["from"], crowned[0]["to"], crowned[0]["outcome"]) == (None, version, "success")
    assert crowned[0]["reason"] and crowned[0]["time"]
    assert store.metadata(config_name, version)["schema_hash"]


def test_pipeline_compiles(tmp_path):
    from kfp import compiler

    out = tmp_path / "training.yaml"
    compiler.Compiler().compile(training.create_pipeline(), str(out))
    text = out.read_text()
    for task in (
        "ingest-op",
        "validate-op",
        "train-op",
        "champion-op",
        "evaluate-op",
        "push-op",
        "deploy-op",
    ):
        assert task in text
