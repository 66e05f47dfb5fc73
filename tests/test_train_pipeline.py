"""GPU placement of the train task in the compiled IR (its kfp.local run is in tests/test_pipeline_local.py)."""

from kfp import dsl

from components.ingest.component import ingest_op
from components.train.component import train_op
from kfloop import config
from kfloop.config import GpuConfig
from pipelines import settings


def _pipeline(gpu: GpuConfig = GpuConfig()):
    @dsl.pipeline(name="kfloop-train-test")
    def ingest_then_train(source: str, spec: str, epochs: int = 8):
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
            spec=spec,
            epochs=epochs,
            early_stopping_patience=2,
        )
        settings.configure_gpu(train, gpu)

    return ingest_then_train


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
