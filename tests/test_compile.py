"""``kfloop compile``: the compiled IR carries images, retries, caching, resources, GPU and dashboard outputs.

These tests walk the YAML that goes to the cluster (no cluster needed). What each pipeline must do for
them to pass:
- call ``pipelines.settings.configure(...)`` on every task (resources, caching, retries) and
  ``pipelines.settings.configure_gpu(...)`` on the train task only;
- ``task.set_display_name(...)`` on every task (a name other than the auto-generated task key);
- every component emits at least one HTML / Markdown / Metrics / ClassificationMetrics output, and its
  docstring has a ``Returns:`` section describing its outputs (kfp copies output descriptions into the
  IR only from there) and an ``Args:`` entry for every input parameter.
"""

import subprocess
import sys

import pytest
from kfp import dsl

from kfloop import config
from kfloop.app import compile as kc

DASHBOARD = {"system.HTML", "system.Markdown", "system.Metrics", "system.ClassificationMetrics"}

#: Settings by role (the component name without ``comp-`` and ``-op``): cache = caching on, retry =
#: retried with backoff. Only the roles listed are pinned; "required" roles must exist.
EXPECTED = {
    "training": {
        "ingest": {"cache": True, "retry": True, "required": True},  # reads the source (gs://)
        "validate": {"cache": True},
        "train": {"cache": True, "retry": True, "required": True},  # a preempted Spot node resumes
        "evaluate": {"cache": False, "retry": True, "required": True},  # reads the current champion
        "push": {"cache": False, "retry": True, "required": True},  # writes the store, moves aliases
    },
    "monitoring": {
        "monitor": {"cache": False, "retry": True, "required": True},  # window ends "now"
        "decide": {"cache": False},  # cooldown: reads the clock and the history
        "trigger": {"cache": False, "retry": True},  # talks to the KFP API
    },
    "batch_prediction": {
        "batch-input": {"cache": True, "retry": True, "required": True},  # reads the input (gs://)
        "gate": {"cache": True, "required": True},
        "batch-score": {"cache": False, "retry": True, "required": True},  # resolves an alias, logs
    },
}
GPU_ROLE = ("training", "train")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Both pipelines compiled once with the default images (``{name: (spec, platform)}``)."""
    out = tmp_path_factory.mktemp("ir")
    paths = {}
    for name in kc.PIPELINES:
        try:
            paths[name] = kc.compile_all(out, names=[name])[name]
        except kc.CompileError as e:
            paths[name] = e
    return paths


def _ir(compiled, name):
    path = compiled[name]
    if isinstance(path, Exception):
        pytest.fail(f"pipeline {name!r} does not compile: {path}")
    return kc.load_ir(path)


def _role(component_ref: str) -> str:
    role = component_ref.removeprefix("comp-")
    role = role.removesuffix("-op")
    return role.rsplit("-", 1)[0] if role[-1:].isdigit() and "-" in role else role


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the DAG (nested sub-DAGs included): ``{task key: task}``."""
    tasks = {}
    for comp in [spec["root"], *spec.get("components", {}).values()]:
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def _container_tasks(spec: dict):
    """``(key, task, component, container)`` for each task that runs a container."""
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    for key, task in _tasks(spec).items():
        comp = spec["components"][task["componentRef"]["name"]]
        container = executors.get(comp.get("executorLabel", ""), {}).get("container")
        if container is not None:
            yield key, task, comp, container


def _k8s_executors(platform: dict) -> dict:
    """The Kubernetes platform spec's per-executor settings (volumes, node selectors): ``{label: ...}``."""
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


PIPELINE_NAMES = sorted(kc.PIPELINES)


@pytest.mark.parametrize("name", PIPELINE_NAMES)
def test_loads_back_with_kfp_loader(compiled, name):
    from kfp import components

    spec, _ = _ir(compiled, name)
    loaded = components.load_component_from_file(str(compiled[name]))
    assert loaded.pipeline_spec.pipeline_info.name == spec["pipelineInfo"]["name"]
    assert set(loaded.component_spec.inputs or {}) == set(
        spec["root"].get("inputDefinitions", {}).get("parameters", {})
    )


@pytest.mark.parametrize("name", PIPELINE_NAMES)
def test_every_image_from_config(compiled, name):
    spec, _ = _ir(compiled, name)
    images = {c["image"] for *_, c in _container_tasks(spec)}
    assert images, "no container tasks"
    # The image split: only the train step pulls the GPU training image; every other step the CPU one.
    for key, task, _comp, container in _container_tasks(spec):
        want = (
            config.TRAINING_IMAGE
            if (name, _role(task["componentRef"]["name"])) == GPU_ROLE
            else config.PIPELINE_IMAGE
        )
        assert container["image"] == want, f"{name}/{key}: {container['image']}"


def _constants(spec: dict) -> dict[str, dict[str, str]]:
    """``{task key: {input: constant}}`` of the string constants the root DAG passes to its tasks."""
    out = {}
    for key, task in spec["root"]["dag"]["tasks"].items():
        params = task.get("inputs", {}).get("parameters", {})
        out[key] = {n: p["runtimeValue"]["constant"] for n, p in params.items() if "runtimeValue" in p}
    return out


def test_compiled_images_reach_deploy_and_the_retrain_trigger(tmp_path):
    """Every deploy uses the images this pipeline was compiled with, not kfloop.config's; a retrain runs an
    already compiled / uploaded training pipeline (the monitoring pipeline's ``training_pipeline``), so the
    trigger carries no images of its own."""
    paths = kc.compile_all(tmp_path, registry="eu.gcr.io/acme", tag="sha-1234")
    imgs = kc.images("eu.gcr.io/acme", "sha-1234")
    training, _ = kc.load_ir(paths["training"])
    (deploy,) = [c for k, c in _constants(training).items() if k.startswith("deploy")]
    assert deploy["serving_image"] == imgs.serving
    monitoring, _ = kc.load_ir(paths["monitoring"])
    (trig,) = [t for k, t in monitoring["root"]["dag"]["tasks"].items() if k.startswith("trigger")]
    params = trig["inputs"]["parameters"]
    assert params["training_pipeline"]["componentInputParameter"] == "training_pipeline"
    assert not {"pipeline_image", "training_image", "serving_image"} & set(params)
    for path in paths.values():
        text = path.read_text()
        for default in (config.PIPELINE_IMAGE, config.TRAINING_IMAGE, config.SERVING_IMAGE):
            assert default not in text, f"{path.name} still names {default}"


@pytest.mark.parametrize("name", PIPELINE_NAMES)
def test_resources_on_every_task(compiled, name):
    spec, _ = _ir(compiled, name)
    for key, _task, _comp, container in _container_tasks(spec):
        res = container.get("resources", {})
        for field in ("resourceCpuRequest", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert res.get(field), f"{name}/{key}: no {field} (call pipelines.settings.configure)"


@pytest.mark.parametrize("name", PIPELINE_NAMES)
def test_retries_and_caching_choices(compiled, name):
    spec, _ = _ir(compiled, name)
    cluster = config.ClusterConfig()
    roles = {}
    for key, task, _comp, _c in _container_tasks(spec):
        roles.setdefault(_role(task["componentRef"]["name"]), []).append((key, task))
        policy = task.get("retryPolicy")
        if policy is not None:  # every retried task uses the reviewed backoff
            train = (name, _role(task["componentRef"]["name"])) == GPU_ROLE
            assert policy == {
                "maxRetryCount": cluster.train_retries if train else cluster.num_retries,
                "backoffDuration": cluster.backoff_duration,
                "backoffFactor": cluster.backoff_factor,
                "backoffMaxDuration": cluster.backoff_max_duration,
            }, f"{name}/{key}"
    for role, want in EXPECTED[name].items():
        if want.get("required"):
            assert role in roles, f"{name} pipeline has no {role!r} task (roles: {sorted(roles)})"
        for key, task in roles.get(role, []):
            cached = bool(task.get("cachingOptions", {}).get("enableCache", False))
            assert cached is want["cache"], f"{name}/{key}: caching {'on' if cached else 'off'}"
            if "retry" in want:
                assert ("retryPolicy" in task) is want["retry"], f"{name}/{key}: retry policy"
    if name == "monitoring":
        assert any(not t.get("cachingOptions", {}).get("enableCache") for _k, t, *_ in _container_tasks(spec))


def test_gpu_settings_on_train_task_only(compiled):
    gpu = config.GpuConfig()
    found = []
    for name in PIPELINE_NAMES:
        spec, platform = _ir(compiled, name)
        executors = _k8s_executors(platform)
        for key, task, comp, container in _container_tasks(spec):
            acc = container.get("resources", {}).get("accelerator")
            k8s = executors.get(comp["executorLabel"], {})
            if (name, _role(task["componentRef"]["name"])) != GPU_ROLE:
                assert acc is None, f"{name}/{key} asks for an accelerator"
                assert "nodeSelector" not in k8s and "tolerations" not in k8s, f"{name}/{key}"
                continue
            found.append(key)
            assert acc["resourceType"] == config.ClusterConfig().gpu_resource
            assert int(acc["resourceCount"]) == gpu.accelerator_count
            assert k8s["nodeSelector"]["labels"] == {gpu.node_selector_key: gpu.accelerator_type}
            assert {"key": gpu.toleration_key, "operator": "Exists", "effect": "NoSchedule"} in k8s[
                "tolerations"
            ]
            res = container["resources"]
            assert res["resourceCpuRequest"] == gpu.cpu_request
            assert res["resourceMemoryRequest"] == gpu.memory_request
    assert found, "no train task in the training pipeline"


@pytest.mark.parametrize("name", PIPELINE_NAMES)
def test_dashboard_artifacts_and_descriptions(compiled, name):
    spec, _ = _ir(compiled, name)
    assert spec["pipelineInfo"].get("description"), f"{name}: pipeline has no description"
    for key, task, comp, _c in _container_tasks(spec):
        assert task["taskInfo"]["name"] != key, f"{name}/{key}: no display name (task.set_display_name)"
        outputs = comp.get("outputDefinitions", {}).get("artifacts", {})
        shown = {o: a for o, a in outputs.items() if a["artifactType"]["schemaTitle"] in DASHBOARD}
        assert shown, f"{name}/{key}: emits none of {sorted(DASHBOARD)}"
        for out, art in shown.items():
            assert art.get("description"), (
                f"{name}/{key}: output {out!r} has no description (document it under 'Returns:' in the docstring)"
            )
        for param, p in comp.get("inputDefinitions", {}).get("parameters", {}).items():
            assert p.get("description"), f"{name}/{key}: input {param!r} has no description (docstring Args)"


def test_registry_tag_and_root_override(tmp_path):
    paths = kc.compile_all(
        tmp_path, registry="eu.gcr.io/acme/", tag="sha-1234", pipeline_root="gs://acme-runs/kfloop/"
    )
    assert set(paths) == set(kc.PIPELINES)
    for path in paths.values():
        spec, _ = kc.load_ir(path)
        assert spec["defaultPipelineRoot"] == "gs://acme-runs/kfloop"
        images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
        assert images and all(
            i.startswith("eu.gcr.io/acme/kfloop-") and i.endswith(":sha-1234") for i in images
        )
        assert config.PIPELINE_IMAGE not in path.read_text()


def test_images_follow_config():
    imgs = kc.images()
    assert (imgs.pipeline, imgs.training, imgs.serving) == (
        config.PIPELINE_IMAGE,
        config.TRAINING_IMAGE,
        config.SERVING_IMAGE,
    )
    assert kc.Images.from_dict(imgs.as_dict()) == imgs
    with pytest.raises(kc.CompileError, match="training missing"):
        kc.Images.from_dict({"pipeline": "a", "serving": "b", "training": ""})
    assert kc.images("r.io/x", "2").serving == "r.io/x/kfloop-serving:2"
    for bad in ({"registry": "Bad Registry"}, {"tag": "a b"}, {"tag": ".x"}, {"registry": "https://r.io"}):
        with pytest.raises(kc.CompileError, match=next(iter(bad))):
            kc.images(**bad)


@pytest.mark.parametrize("root", ["/tmp/local", "gs://", "http://x/y", "s3:/b"])
def test_bad_pipeline_root(tmp_path, root):
    with pytest.raises(kc.CompileError, match="pipeline_root"):
        kc.compile_all(tmp_path, pipeline_root=root, names=["training"])
    assert list(tmp_path.iterdir()) == []


def create_pipeline():
    """A pipeline with an image not from kfloop.config (for the test below)."""

    @dsl.component(base_image="python:3.11")
    def stray_op(x: str) -> str:
        return x

    @dsl.pipeline(name="stray")
    def stray(x: str = "a"):
        stray_op(x=x)

    return stray


def test_foreign_image_fails_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(kc.PIPELINES, "stray", __name__)
    with pytest.raises(kc.CompileError, match=r"exec-stray-op uses image 'python:3.11'"):
        kc.compile_all(tmp_path, names=["training", "stray"])
    assert list(tmp_path.iterdir()) == []  # training.yaml not written either
    with pytest.raises(kc.CompileError, match="'nope' is not one of"):
        kc.compile_all(tmp_path, names=["nope"])


def test_cli(tmp_path):
    run = [sys.executable, "-m", "kfloop.app.cli", "compile"]
    proc = subprocess.run(
        [*run, "--print-images", "--tag", "9.9"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        f"pipeline={config.IMAGE_REGISTRY}/kfloop-pipeline:9.9",
        f"training={config.IMAGE_REGISTRY}/kfloop-training:9.9",
        f"serving={config.IMAGE_REGISTRY}/kfloop-serving:9.9",
    ]
    proc = subprocess.run(
        [*run, "--output-dir", str(tmp_path), "--tag", "bad tag"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == "kfloop compile: tag: 'bad tag' is not an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]*, max 128)"
    )
    proc = subprocess.run(
        [*run, "--output-dir", str(tmp_path), "--pipeline", "training"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training.yaml"]


def test_settings_reject_bad_quantities():
    from pipelines import settings

    @dsl.component(base_image=config.PIPELINE_IMAGE)
    def noop_op(x: str) -> str:
        return x

    cases = [
        ({"cpu": "two"}, "cpu: 'two'"),
        ({"memory": "1GB"}, "memory: '1GB'"),
        ({"cpu_limit": "500m"}, "cpu_limit: '500m' is below"),
        ({"memory_limit": "512Mi"}, "memory_limit: '512Mi' is below"),
    ]
    checked = []

    @dsl.pipeline(name="p")
    def p(x: str = "a"):
        task = noop_op(x=x)
        for bad, message in cases:
            kwargs = {"network_io": False, "deterministic": True, "cpu": "1", "memory": "1Gi", **bad}
            with pytest.raises(ValueError, match=message):
                settings.configure(task, **kwargs)
            checked.append(message)
        settings.configure(task, network_io=False, deterministic=False, cpu="250m", memory="1Gi")

    assert len(checked) == len(cases)
    spec = p.pipeline_spec
    res = spec.deployment_spec["executors"]["exec-noop-op"]["container"]["resources"]
    assert (res["resourceCpuLimit"], res["resourceMemoryLimit"]) == ("500m", "1Gi")  # 2x cpu, = memory
    task = spec.root.dag.tasks["noop-op"]
    assert not task.caching_options.enable_cache and not task.HasField("retry_policy")
    assert settings.memory_bytes("1Gi") == 2**30 and settings.cpu_cores("250m") == 0.25


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_tasks_do_not_pip_install_at_start(compiled, name):
    """The pipeline image already holds kfp and kfloop (requirements/pipeline.lock): no task installs
    packages when it starts (a cluster may not reach PyPI, and a second kfp would drift from the lock)."""
    spec, _ = _ir(compiled, name)
    for key, _task, _comp, container in _container_tasks(spec):
        script = " ".join(container.get("command", []) + container.get("args", []))
        assert "pip install" not in script, f"{name}/{key} runs pip install at start"
        assert "kfp.dsl.executor_main" in script, f"{name}/{key} is not a kfp Python component"


def test_private_registry_pull_secret_reaches_every_task(tmp_path):
    from kfp import compiler

    from pipelines import settings

    @dsl.component(base_image=config.PIPELINE_IMAGE)
    def noop_op(x: str) -> str:
        return x

    cluster = config.ClusterConfig(image_pull_secret="regcred")

    @dsl.pipeline(name="p")
    def p(x: str = "a"):
        settings.configure(
            noop_op(x=x), network_io=False, deterministic=True, cpu="100m", memory="64Mi", cluster=cluster
        )

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(p, str(path))
    _, platform = kc.load_ir(path)
    (executor,) = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    assert [s["secretName"] for s in executor["imagePullSecret"]] == ["regcred"]


def test_only_the_trigger_gets_the_kfp_api_token_label(compiled):
    label = config.ClusterConfig().kfp_access_label
    found = []
    for name in PIPELINE_NAMES:
        spec, platform = _ir(compiled, name)
        executors = _k8s_executors(platform)
        for _key, task, comp, _c in _container_tasks(spec):
            labels = executors.get(comp["executorLabel"], {}).get("podMetadata", {}).get("labels", {})
            if labels.get(label) == "true":
                found.append((name, _role(task["componentRef"]["name"])))
    assert found == [("monitoring", "trigger")]


def test_images_pinned_by_digest_reach_executors_and_embedded_values(tmp_path):
    digest = "eu.gcr.io/acme/kfloop-serving@sha256:" + "ab" * 32
    train = "eu.gcr.io/acme/kfloop-training@sha256:" + "cd" * 32
    paths = kc.compile_all(tmp_path, tag="sha-9", digests={"serving": digest, "training": train})
    training = paths["training"].read_text()
    assert digest in training and train in training and config.SERVING_IMAGE not in training
    assert f"{config.IMAGE_REGISTRY}/kfloop-pipeline:sha-9" in training
    for bad, match in (({"serving": "x:1"}, "sha256"), ({"gpu": digest}, "not one of")):
        with pytest.raises(kc.CompileError, match=match):
            kc.images(digests=bad)
    proc = subprocess.run(
        [sys.executable, "-m", "kfloop.app.cli", "compile", "--print-images", "--image", f"serving={digest}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and f"serving={digest}" in proc.stdout.splitlines()


def test_the_tasks_that_send_events_mount_the_optional_notify_secret(compiled):
    """The notification config (channels and their tokens) reaches the tasks that send events as the
    optional ``kfloop-notify`` Secret, never as a pipeline parameter; no other task gets it."""
    cluster = config.ClusterConfig()
    found = []
    for name in PIPELINE_NAMES:
        spec, platform = _ir(compiled, name)
        executors = _k8s_executors(platform)
        for _key, task, comp, _c in _container_tasks(spec):
            for vol in executors.get(comp["executorLabel"], {}).get("secretAsVolume", []):
                if vol["secretName"] == cluster.notify_secret:
                    assert vol["mountPath"] == cluster.notify_mount and vol["optional"] is True
                    found.append((name, _role(task["componentRef"]["name"])))
    assert sorted(found) == sorted(
        [
            ("batch_prediction", "gate"),
            ("monitoring", "canary"),
            ("monitoring", "decide"),
            ("training", "deploy"),
            ("training", "gate"),
            ("training", "push"),
        ]
    ), found
