"""The training pipeline under kfp.local (SubprocessRunner, this env) on the real taxi CSV."""

import json

import pytest

from kfloop import datasets
from kfloop import features as F
from kfloop.local import run_pipeline
from pipelines import training


@pytest.mark.slow
def test_ingest_runs_under_kfp_local(tmp_path, taxi_csv):
    run = run_pipeline(training.create_pipeline(), tmp_path / "root", source=str(taxi_csv))
    train = datasets.read_dataset(str(run.output("ingest-op", "train_data")))
    live = datasets.read_dataset(str(run.output("ingest-op", "live_data")))
    assert live[F.EVENT_TIME.name].min() > train[F.EVENT_TIME.name].max()
    executor = json.loads(run.output("ingest-op", "executor_output.json").read_text())
    counts = executor["artifacts"]["counts"]["artifacts"][0]["metadata"]
    assert counts["rows_read"] == 15002
    assert counts["train_rows"] + counts["eval_rows"] + counts["live_rows"] == 15002
    assert counts["train_rows"] == len(train)


def test_pipeline_compiles(tmp_path):
    from kfp import compiler

    out = tmp_path / "training.yaml"
    compiler.Compiler().compile(training.create_pipeline(), str(out))
    assert "ingest-op" in out.read_text()
