"""GPU placement of the train task in the compiled IR (its kfp.local run is in tests/test_pipeline_local.py)."""

import pytest
from kfp import dsl

from components.ingest.component import ingest_op
from components.train.component import train_op
from kfloop import config
from kfloop.config import GpuConfig
from pipelines import settings
from tests.plugins.data import TAXI_CUTOFF


def _pipeline(gpu: GpuConfig = GpuConfig()):
    @dsl.pipeline(name="kfloop-train-test")
    def ingest_then_train(source: str, spec: str, epochs: int = 8):
        ingest = ingest_op(
            source=source,
            spec=spec,
            cutoff=TAXI_CUTOFF,
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


@pytest.mark.slow
def test_train_evaluate_push_of_a_non_taxi_spec_under_kfp_local(tmp_path):
    """train_op → evaluate_op → push_op with the synthetic churn spec (given as YAML text): the model
    directory carries spec and schema, evaluate reads the label and slices from it, the version's
    metadata records both hashes."""
    import json

    from components.evaluate.component import evaluate_op
    from components.push.component import push_op
    from kfloop import contract
    from kfloop.app import local
    from kfloop.store import ModelStore
    from tests import byo_module_model as B

    paths = B.write_splits(tmp_path / "data", train_rows=800, eval_rows=300)
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "reference.json").write_text("{}")
    store_uri = str(tmp_path / "store")

    @dsl.pipeline(name="churn-train-test")
    def pipe(train_uri: str, eval_uri: str, spec: str, schema_uri: str, store_uri: str, reference_uri: str):
        train_data = dsl.importer(artifact_uri=train_uri, artifact_class=dsl.Dataset, reimport=True)
        eval_data = dsl.importer(artifact_uri=eval_uri, artifact_class=dsl.Dataset, reimport=True)
        reference = dsl.importer(artifact_uri=reference_uri, artifact_class=dsl.Artifact, reimport=True)
        train = train_op(
            train_data=train_data.output,
            eval_data=eval_data.output,
            spec=spec,
            schema_uri=schema_uri,
            epochs=6,
            batch_size=64,
            learning_rate=0.01,
            hidden_units="8",
            early_stopping_patience=0,
        )
        evaluate = evaluate_op(eval_data=eval_data.output, model=train.outputs["model"], auc_floor=0.6)
        push_op(
            model=train.outputs["model"],
            blessing=evaluate.outputs["blessing"],
            store_uri=store_uri,
            model_name="churn-demo",
            data_window_start="",
            data_window_end="",
            run_id="run-1",
            code_version="test",
            reference=reference.output,
            train_data=train_data.output,
            eval_data=eval_data.output,
            trigger_id="",
            notify_config="",
        )

    run = local.run_pipeline(
        pipe,
        tmp_path / "runs",
        train_uri=paths["train"],
        eval_uri=paths["eval"],
        spec=B.SPEC_YAML,
        schema_uri=paths["schema"],
        store_uri=store_uri,
        reference_uri=str(tmp_path / "reference"),
    )
    blessing = json.loads(run.output("evaluate-op", "blessing").read_text())
    assert blessing["blessed"] and blessing["spec_name"] == "churn-demo" and blessing["slicing"] == [["plan"]]
    ms = ModelStore(store_uri)
    assert ms.aliases("churn-demo") == {"champion": "v0001"}
    version_dir = ms.model_uri("churn-demo", "v0001")
    meta = ms.metadata("churn-demo", "v0001")
    assert meta["spec_sha256"] == contract.sha256_of(contract.spec_uri(version_dir))
    assert meta["schema_sha256"] == contract.sha256_of(contract.schema_uri(version_dir))
    assert meta["spec_name"] == "churn-demo"
    assert meta["model_artifact"]["metadata"]["spec_sha256"] == meta["spec_sha256"]
