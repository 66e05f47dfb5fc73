"""The train component: ingest → train under kfp.local on the taxi data, and GPU placement in the IR."""

import json

import pytest
from kfp import dsl

from components.ingest.component import ingest_op
from components.train.component import train_op
from kfloop import config
from kfloop.config import GpuConfig
from kfloop.local import run_pipeline
from pipelines import settings


def _pipeline(gpu: GpuConfig = GpuConfig()):
    @dsl.pipeline(name="kfloop-train-test")
    def ingest_then_train(source: str, epochs: int = 8):
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
            epochs=epochs,
            early_stopping_patience=2,
        )
        settings.configure_gpu(train, gpu)

    return ingest_then_train


@pytest.mark.slow
def test_ingest_then_train_under_kfp_local(tmp_path, taxi_csv):
    import tensorflow as tf

    run = run_pipeline(_pipeline(), tmp_path / "root", source=str(taxi_csv))
    model_dir = run.output("train-op", "model")
    assert (model_dir / "saved_model.pb").is_file()
    assert (model_dir / "kfloop_metadata.json").is_file()
    assert set(tf.saved_model.load(str(model_dir)).signatures) >= {"serving_default", "predict_raw"}

    executor = json.loads(run.output("train-op", "executor_output.json").read_text())
    metrics = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert metrics["auc"] > 0.75, metrics  # a broken model scores ~0.5
    assert metrics["train_rows"] > 5000 and metrics["eval_rows"] > 1000
    assert 1 <= metrics["epochs_run"] <= 8
    model_meta = executor["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert model_meta["auc"] == metrics["auc"]
    assert model_meta["train_window_end"] < "2015-01-01"

    report = run.output("train-op", "report").read_text()
    assert report.startswith("<!DOCTYPE html>") and report.count("<svg") == 2
    assert "<script" not in report and "src=" not in report and "href=" not in report  # self-contained
    assert f"{metrics['auc']:.4f}" in report


def _tasks(ir: dict) -> dict:
    return ir["root"]["dag"]["tasks"]


def test_compiled_ir_puts_only_the_train_task_on_the_gpu_pool(tmp_path):
    import yaml
    from kfp import compiler

    gpu = GpuConfig(accelerator_type="nvidia-l4", accelerator_count=2, cpu_request="6", memory_request="24Gi")
    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(_pipeline(gpu), str(out))
    docs = list(yaml.safe_load_all(out.read_text()))
    ir, platform = docs[0], docs[1] if len(docs) > 1 else {}
    executors = ir["deploymentSpec"]["executors"]
    k8s = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})

    train_exec = _tasks(ir)["train-op"]["componentRef"]["name"].replace("comp-", "exec-")
    ingest_exec = _tasks(ir)["ingest-op"]["componentRef"]["name"].replace("comp-", "exec-")

    res = executors[train_exec]["container"]["resources"]
    assert res["accelerator"]["resourceCount"] == "2"
    assert res["accelerator"]["resourceType"] == config.ClusterConfig().gpu_resource
    assert res["resourceCpuRequest"] == "6" and res["resourceMemoryRequest"] == "24Gi"
    assert k8s[train_exec]["nodeSelector"]["labels"] == {gpu.node_selector_key: "nvidia-l4"}
    assert k8s[train_exec]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]

    assert "accelerator" not in executors[ingest_exec]["container"].get("resources", {})
    assert ingest_exec not in k8s  # no node selector / toleration on any other task
    assert set(k8s) == {train_exec}
