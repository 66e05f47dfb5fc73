"""manifests/: every YAML parses, no secrets, least-privilege RBAC, hardened containers, and the checked-in
ServingRuntime / InferenceService still match what kfloop.deploy renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfloop import config, deploy

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
OURS = ("base", "overlays")  # manifests/tfjob.yaml belongs to the training issue


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs() -> dict[Path, list[dict]]:
    return {p: docs(p) for p in sorted(MANIFESTS.rglob("*.yaml"))}


def by_kind(kind: str) -> list[dict]:
    return [
        d
        for sub in OURS
        for p in sorted((MANIFESTS / sub).rglob("*.yaml"))
        for d in docs(p)
        if d.get("kind") == kind
    ]


def test_every_manifest_parses_and_holds_no_secret():
    found = all_docs()
    assert any("base" in str(p) for p in found) and any("gke" in str(p) for p in found)
    for path, items in found.items():
        assert items, f"{path} is empty"
        for d in items:
            assert d.get("kind") != "Secret", f"{path}: secrets do not belong in files"
        text = path.read_text().lower()
        for marker in ("private_key", "-----begin", "password:", "\ntoken:", " token:"):
            assert marker not in text, f"{path}: looks like a credential ({marker})"


def test_kustomizations_reference_existing_files():
    for k in MANIFESTS.rglob("kustomization.yaml"):
        spec = docs(k)[0]
        for res in spec.get("resources", []):
            assert (k.parent / res).exists(), f"{k}: resource {res} missing"
        for patch in spec.get("patches", []):
            assert (k.parent / patch["path"]).is_file()


def _containers() -> list[dict]:
    out = [c for rt in by_kind("ServingRuntime") for c in rt["spec"]["containers"]]
    out += [isvc["spec"]["predictor"]["model"] for isvc in by_kind("InferenceService")]
    return out


def test_containers_are_hardened_with_resources():
    containers = _containers()
    assert len(containers) == 2
    for c in containers:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert set(c["resources"]["requests"]) == {"cpu", "memory"}
        assert set(c["resources"]["limits"]) >= {"memory"}


def test_checked_in_serving_objects_match_the_renderer():
    (rt,) = by_kind("ServingRuntime")
    assert rt == deploy.render_serving_runtime()
    assert rt["spec"]["containers"][0]["command"] == ["python", "-m", "serving"]
    (isvc,) = by_kind("InferenceService")
    version = isvc["metadata"]["labels"]["kfloop.dev/model-version"]
    store_arg = next(a for a in isvc["spec"]["predictor"]["model"]["args"] if a.startswith("--store-uri="))
    rendered = deploy.render_inference_service(config.MODEL_NAME, store_arg.split("=", 1)[1], version)
    assert isvc == rendered
    m = isvc["spec"]["predictor"]["model"]
    assert m["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{config.MODEL_NAME}/ready"
    assert m["livenessProbe"] and m["lifecycle"]["preStop"]
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "kfloop-serving"


def test_rbac_is_least_privilege():
    roles = by_kind("Role")
    assert not by_kind("ClusterRole") and not by_kind("ClusterRoleBinding")
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            assert "delete" not in rule["verbs"] and "secrets" not in rule["resources"]
    subjects = {s["name"] for b in by_kind("RoleBinding") for s in b["subjects"]}
    assert subjects == {"kfloop-pipelines"}  # the predictor gets no Kubernetes API rights
    (isvc_rule,) = [r for role in roles for r in role["rules"] if "inferenceservices" in r["resources"]]
    assert {"get", "patch"} <= set(isvc_rule["verbs"])  # what server-side apply needs


@pytest.mark.parametrize("sa", ["kfloop-pipelines", "kfloop-serving"])
def test_gke_overlay_sets_workload_identity(sa):
    base = [d for d in by_kind("ServiceAccount") if d["metadata"]["name"] == sa]
    annotated = [d for d in base if "iam.gke.io/gcp-service-account" in d["metadata"].get("annotations", {})]
    assert len(base) == 2 and len(annotated) == 1  # placeholder only in the overlay
    assert annotated[0]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
        ".iam.gserviceaccount.com"
    )
