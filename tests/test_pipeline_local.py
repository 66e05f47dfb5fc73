"""The whole training pipeline under kfp.local (SubprocessRunner, this env) on the real taxi CSV.

One run per module (ingest → validate → gate → train → champion → evaluate → push → deploy); each test
checks one stage's outputs, so the stages are not re-run once per component.
"""

import json

import pytest

from kfloop import config, contract, datasets
from kfloop.app.local import run_pipeline
from kfloop.blessing import read_blessing
from kfloop.store import ModelStore
from pipelines import training

EPOCHS = 4


def _executor(run, task):
    return json.loads(run.output(task, "executor_output.json").read_text())


@pytest.fixture(scope="module")
def training_run(tmp_path_factory, taxi_csv, taxi_spec):
    from tests.conftest import TAXI_SPEC_PATH

    tmp = tmp_path_factory.mktemp("training-pipeline")
    store_uri = str(tmp / "store")
    run = run_pipeline(
        training.create_pipeline(),
        tmp / "root",
        spec=TAXI_SPEC_PATH,
        source=str(taxi_csv),
        store_uri=store_uri,
        model_name=taxi_spec.name,
        cutoff="2015-01-01",
        deploy_mode="local",
        epochs=EPOCHS,
    )
    return run, store_uri


@pytest.mark.slow
def test_ingest_splits_by_time_with_counts_that_add_up(training_run, taxi_spec):
    run, _ = training_run
    train = datasets.read_dataset(str(run.output("ingest-op", "train_data")), taxi_spec)
    live = datasets.read_dataset(str(run.output("ingest-op", "live_data")), taxi_spec)
    assert live["trip_start_timestamp"].min() > train["trip_start_timestamp"].max()
    counts = _executor(run, "ingest-op")["artifacts"]["counts"]["artifacts"][0]["metadata"]
    assert counts["train_rows"] + counts["eval_rows"] + counts["live_rows"] == counts["rows_read"] == 15002
    assert counts["train_rows"] == len(train)


@pytest.mark.slow
def test_validate_passes_clean_data(training_run):
    run, _ = training_run
    summary = json.loads((run.output("validate-op", "anomalies") / "summary.json").read_text())
    train_rows = _executor(run, "ingest-op")["artifacts"]["counts"]["artifacts"][0]["metadata"]["train_rows"]
    assert summary["num_examples"] == summary["rows"] == train_rows
    assert summary["blocking"] is False and summary["anomalies"] == []
    assert len(summary["skew"]) == 16
    report = run.output("validate-op", "report").read_text()
    assert report.lstrip().startswith("<!DOCTYPE html>") and "PASSED" in report
    assert run.output("gate-op", "report").read_text().startswith("Data gate passed")


@pytest.mark.slow
def test_train_exports_both_signatures_metrics_and_a_self_contained_report(training_run):
    import tensorflow as tf

    run, _ = training_run
    model_dir = run.output("train-op", "model")
    assert (model_dir / "saved_model.pb").is_file()
    assert (model_dir / "kfloop_metadata.json").is_file()
    assert set(tf.saved_model.load(str(model_dir)).signatures) >= {"serving_default", "predict_raw"}

    executor = _executor(run, "train-op")
    metrics = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["auc"] > 0.75, metrics  # a broken model scores ~0.5
    assert metrics["train_rows"] > 5000 and metrics["eval_rows"] > 1000
    assert 1 <= metrics["epochs_run"] <= EPOCHS
    model_meta = executor["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert model_meta["auc"] == metrics["auc"]
    assert model_meta["train_window_end"] < "2015-01-01"

    report = run.output("train-op", "report").read_text()
    assert report.startswith("<!DOCTYPE html>") and report.count("<svg") == 2
    assert "<script" not in report and "src=" not in report and "href=" not in report  # self-contained
    assert f"{metrics['auc']:.4f}" in report


@pytest.mark.slow
def test_evaluate_blesses_the_first_model_on_value_thresholds(training_run):
    run, _ = training_run
    blessing = read_blessing(str(run.output("evaluate-op", "blessing")))
    assert blessing["blessed"] is True, [r["message"] for r in blessing["reasons"]]
    assert blessing["champion_version"] is None
    assert any(r["kind"] == "no_champion" for r in blessing["reasons"])
    assert "BLESSED" in run.output("evaluate-op", "report").read_text()

    executor = _executor(run, "evaluate-op")
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


@pytest.mark.slow
def test_push_crowns_the_blessed_first_model_with_a_history_record(training_run):
    _, store_uri = training_run
    store = ModelStore(store_uri)
    name = "taxi-tips"  # the taxi spec's name
    (version,) = store.versions(name)
    assert store.get_alias(name, "champion") == version
    crowned = [h for h in store.history(name) if h.get("alias") == "champion" and h["action"] == "push"]
    assert len(crowned) == 1
    assert (crowned[0]["from"], crowned[0]["to"], crowned[0]["outcome"]) == (None, version, "success")
    assert crowned[0]["reason"] and crowned[0]["time"]
    meta = store.metadata(name, version)  # the model's own schema: the one that validated its data
    assert meta["schema_sha256"] and meta["spec_sha256"]
    version_dir = store.model_uri(name, version)
    assert contract.sha256_of(contract.schema_uri(version_dir)) == meta["schema_sha256"]


def test_pipeline_compiles(tmp_path):
    from kfp import compiler

    out = tmp_path / "training.yaml"
    compiler.Compiler().compile(training.create_pipeline(), str(out))
    text = out.read_text()
    for task in (
        "ingest-op",
        "validate-op",
        "gate-op",
        "train-op",
        "champion-op",
        "evaluate-op",
        "push-op",
        "deploy-op",
    ):
        assert task in text
