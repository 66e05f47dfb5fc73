"""ingest → train → evaluate under kfp.local on the real taxi CSV: the first model is blessed."""

import json

import pytest
from kfp import dsl

from components.evaluate.component import evaluate_op
from components.evaluate.evaluate import read_blessing
from components.ingest.component import ingest_op
from components.train.component import train_op
from kfloop import config
from kfloop.local import run_pipeline


@dsl.pipeline(name="kfloop-evaluate-test")
def _pipeline(source: str, champion_uri: str = ""):
    ingest = ingest_op(
        source=source,
        cutoff=config.DEFAULT_CUTOFF,
        window_start="",
        live_end="",
        eval_fraction=config.DEFAULT_EVAL_FRACTION,
    )
    train = train_op(
        train_data=ingest.outputs["train_data"],
        eval_data=ingest.outputs["eval_data"],
        epochs=3,
        early_stopping_patience=0,
    )
    evaluate_op(
        eval_data=ingest.outputs["eval_data"],
        model=train.outputs["model"],
        champion_uri=champion_uri,
    )


@pytest.mark.slow
def test_ingest_train_evaluate_blesses_first_model(tmp_path, taxi_csv):
    run = run_pipeline(_pipeline, tmp_path / "root", source=str(taxi_csv))
    blessing = read_blessing(str(run.output("evaluate-op", "blessing")))
    assert blessing["blessed"] is True, [r["message"] for r in blessing["reasons"]]
    assert blessing["champion_version"] is None
    assert any(r["kind"] == "no_champion" for r in blessing["reasons"])
    assert "BLESSED" in run.output("evaluate-op", "report").read_text()

    executor = json.loads(run.output("evaluate-op", "executor_output.json").read_text())
    arts = executor["artifacts"]
    metrics = arts["metrics"]["artifacts"][0]["metadata"]
    assert metrics["blessed"] == 1.0
    assert metrics["auc"] == pytest.approx(blessing["metrics"]["auc"])
    assert metrics["auc"] >= config.EvaluationConfig().auc_floor
    cls = arts["classification"]["artifacts"][0]["metadata"]
    assert cls["confusionMatrix"]["annotationSpecs"] == [{"displayName": "0"}, {"displayName": "1"}]
    rows = cls["confusionMatrix"]["rows"]
    assert sum(sum(r["row"]) for r in rows) == metrics["example_count"]
    assert len(cls["confidenceMetrics"]) > 10
    assert arts["blessing"]["artifacts"][0]["metadata"]["blessed"] is True
    assert executor["parameterValues"]["blessed"] is True


def test_component_defaults_follow_config():
    spec = evaluate_op.component_spec
    params = spec.inputs
    cfg = config.EvaluationConfig()
    assert params["auc_floor"].default == cfg.auc_floor
    assert params["max_auc_regression"].default == cfg.max_auc_regression
    assert params["min_slice_examples"].default == cfg.min_slice_examples
    assert params["max_slice_auc_regression"].default == cfg.max_slice_auc_regression
    assert params["slice_features"].default == ",".join(cfg.slice_features)
    assert params["champion_uri"].default == ""
    assert set(spec.outputs) >= {"blessing", "metrics", "classification", "report", "blessed"}
