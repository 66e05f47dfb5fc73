"""Permissions match the code: every Kubernetes and KFP API call kfloop makes from a pod (deploy,
promote, rollback, the canary step through the same functions, the retrain trigger) is recorded against
loopback API servers, turned into the RBAC rule it needs, and compared with what manifests/ grants to the
service account the runs are created with: exactly those verbs on exactly those resources, nothing more.
A source scan makes sure no other pod-side call site exists unrecorded."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from kfloop import config, deploy
from kfloop.app import compile as kc
from kfloop.store import ModelStore
from tests import cluster_checks as cc
from tests.fake_apis import FakeKfpApi, FakeKubeApi
from tests.test_store import make_model_dir

NAME = "taxi-tips"
NS = config.DeployConfig().namespace
SA = config.ClusterConfig().service_account
#: Rights a KFP v2 run's own pods need from their account, independent of kfloop's code (Argo >= 3.4
#: emissary executor: WorkflowTaskResults; KFP v2 driver: the kfp-launcher ConfigMap). Kept in the
#: kfloop-run-executor Role; pinned here so that it cannot grow unnoticed.
EXECUTOR_RULES = {
    ("argoproj.io", "workflowtaskresults", "create", None),
    ("argoproj.io", "workflowtaskresults", "patch", None),
    ("", "configmaps", "get", "kfp-launcher"),
}
#: Modules allowed to talk to the Kubernetes / KFP APIs, each exercised below. kfloop/app/submit.py runs on a
#: workstation or in CI (`kfloop submit`), never in a pipeline pod.
CALL_SITES = {"kfloop/kube.py", "components/trigger/trigger.py", "kfloop/app/submit.py"}
_API_USE = re.compile(r"\.call_api\(|kfp\.Client\(|kubernetes\.client\.\w+Api\(|client\.CustomObjectsApi")

_K8S_VERBS = {"GET": "get", "PATCH": "patch", "PUT": "update", "DELETE": "delete", "POST": "create"}
_K8S_PATH = re.compile(
    r"^/(?:apis/(?P<group>[^/]+)/[^/]+|api/v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
#: KFP v2beta1 routes → the (resource, verb) its multi-user API server authorizes with a
#: SubjectAccessReview in group pipelines.kubeflow.org (backend/src/apiserver/server/*_server.go).
_KFP_ROUTES = [
    ("GET", re.compile(r"^/apis/v2beta1/healthz$"), None),
    ("GET", re.compile(r"^/apis/v2beta1/experiments$"), ("experiments", "list")),
    ("POST", re.compile(r"^/apis/v2beta1/experiments$"), ("experiments", "create")),
    ("GET", re.compile(r"^/apis/v2beta1/experiments/[^/]+$"), ("experiments", "get")),
    ("POST", re.compile(r"^/apis/v2beta1/runs$"), ("runs", "create")),
    ("GET", re.compile(r"^/apis/v2beta1/runs$"), ("runs", "list")),
    ("GET", re.compile(r"^/apis/v2beta1/runs/[^/]+$"), ("runs", "get")),
]


def k8s_rule(req: dict) -> tuple:
    """``(apiGroup, resource[/sub], verb, resourceName or None)`` a Kubernetes API request needs."""
    m = _K8S_PATH.match(req["path"])
    assert m, f"not a namespaced Kubernetes API path: {req['path']}"
    assert m["ns"] == NS, f"{req['path']}: outside the runs' namespace {NS}"
    resource = m["plural"] + (f"/{m['sub']}" if m["sub"] else "")
    verb = _K8S_VERBS[req["method"]]
    if req["method"] == "GET" and not m["name"]:
        verb = "watch" if req["query"].get("watch") == ["true"] else "list"
    names_matter = resource.endswith("/token")  # granted per name; everything else namespace-wide
    return (m["group"] or "", resource, verb, m["name"] if names_matter else None)


def kfp_rule(req: dict) -> tuple | None:
    for method, pattern, need in _KFP_ROUTES:
        if req["method"] == method and pattern.match(req["path"]):
            return None if need is None else ("pipelines.kubeflow.org", need[0], need[1], None)
    raise AssertionError(f"unmapped KFP API call {req['method']} {req['path']}: add it to _KFP_ROUTES")


def granted(objs: list[dict], account: str) -> set[tuple]:
    """The rules of every Role / ClusterRole bound to ``account`` (in ``NS``), flattened."""
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objs if o["kind"] in ("Role", "ClusterRole")}
    out = set()
    for b in objs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace") == NS
            for s in b["subjects"]
        ):
            continue
        role = roles[(b["roleRef"]["kind"], b["roleRef"]["name"])]
        for rule in role["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        for n in rule.get("resourceNames") or [None]:
                            out.add((g, r, v, n))
    return out


def rbac_diff(needed: set[tuple], have: set[tuple]) -> list[str]:
    """What is missing and what is granted beyond need ([] = exact)."""
    return [f"missing: {r}" for r in sorted(needed - have, key=str)] + [
        f"not needed: {r}" for r in sorted(have - needed, key=str)
    ]


# ------------------------------------------------------------------------------------------ recording
def _record_deploys(tmp_path) -> list[dict]:
    root = str(tmp_path / "store")
    ms = ModelStore(root)
    v1, v2, v3 = (ms.publish(NAME, str(make_model_dir(tmp_path, t)), {}) for t in "abc")
    with FakeKubeApi() as api:
        c = api.cluster()
        kw = {"mode": "cluster", "namespace": NS, "cluster": c}
        deploy.deploy(root, NAME, version=v1, **kw)
        deploy.deploy(root, NAME, version=v2, canary_percent=10, **kw)
        deploy.promote(root, NAME, **kw)
        deploy.deploy(root, NAME, version=v3, canary_percent=10, **kw)
        deploy.rollback(root, NAME, **kw)
        reject = getattr(deploy, "reject_canary", None)  # the canary step's roll-back (h/canary)
        if reject is not None:
            deploy.deploy(root, NAME, version=v2, canary_percent=10, **kw)
            reject(root, NAME, **kw)
        api.fail = True
        with pytest.raises(deploy.DeployError):
            deploy.deploy(root, NAME, version=v3, canary_percent=10, **kw)  # failed rollout: undone
        return list(api.requests)


def _jwt(sub: str) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{enc({'alg': 'RS256'})}.{enc({'sub': sub})}.sig"


def _record_trigger(tmp_path, monkeypatch) -> tuple[list[dict], list[dict], dict, FakeKfpApi]:
    from components.trigger import trigger as T

    sa_dir = tmp_path / "sa"
    sa_dir.mkdir()
    (sa_dir / "namespace").write_text(NS)
    (sa_dir / "token").write_text(_jwt(f"system:serviceaccount:{NS}:{SA}"))
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-projected-token"))
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client keeps a context file under ~/.config
    imgs = kc.images("eu.gcr.io/acme", "sha-42")
    # What the trigger runs on a cluster: the training pipeline compiled with these images (kfloop compile).
    package = kc.compile_all(tmp_path / "compiled", imgs=imgs, names=["training"])["training"]
    with FakeKubeApi() as kube, FakeKfpApi() as kfp_api:
        job = {
            "mode": "cluster",
            "host": kfp_api.url,
            "namespace": "",
            "experiment": "kfloop",
            "pipeline_root": "",
            "training_pipeline": str(package),
            "run_name": "kfloop-retrain-d1",
        }
        run = T.submit_from_pod(
            job,
            {"source": "gs://b/taxi.csv", "store_uri": "gs://b/store"},
            sa_dir=str(sa_dir),
            api_client=kube.api_client(),
        )
        return list(kube.requests), list(kfp_api.requests), run, kfp_api


@pytest.fixture(scope="module")
def rendered_base():
    return cc.kustomize(cc.MANIFESTS / "base")


def test_rbac_grants_exactly_what_the_code_calls(tmp_path, monkeypatch, rendered_base):
    deploy_calls = _record_deploys(tmp_path)
    kube_calls, kfp_calls, _run, _api = _record_trigger(tmp_path, monkeypatch)
    needed = {k8s_rule(r) for r in deploy_calls + kube_calls}
    needed |= {rule for r in kfp_calls if (rule := kfp_rule(r)) is not None}
    assert ("serving.kserve.io", "inferenceservices", "patch", None) in needed  # recorded, not assumed
    assert ("", "serviceaccounts/token", "create", SA) in needed
    assert ("pipelines.kubeflow.org", "runs", "create", None) in needed
    problems = rbac_diff(needed | EXECUTOR_RULES, granted(rendered_base, SA))
    assert problems == [], "\n".join(problems)
    # The predictor's account has no Kubernetes rights at all.
    assert granted(rendered_base, config.DeployConfig().service_account) == set()


def test_trigger_run_uses_the_rights_holding_account_and_the_compiled_images(tmp_path, monkeypatch):
    kube_calls, kfp_calls, run, kfp_api = _record_trigger(tmp_path, monkeypatch)
    (token_req,) = kube_calls
    assert token_req["body"]["spec"]["audiences"] == ["pipelines.kubeflow.org"]
    (created,) = kfp_api.runs
    assert created["service_account"] == SA and run["namespace"] == NS
    assert all(
        r["auth"] == f"Bearer kfp-token-for-{NS}-{SA}"
        for r in kfp_calls
        if r["path"] != "/apis/v2beta1/healthz"
    )
    exp = [r for r in kfp_calls if r["method"] == "POST" and r["path"].endswith("/experiments")]
    assert exp and exp[0]["body"].get("namespace") == NS
    spec_text = json.dumps(created["pipeline_spec"])
    imgs = kc.images("eu.gcr.io/acme", "sha-42")
    assert imgs.training in spec_text and imgs.pipeline in spec_text and imgs.serving in spec_text
    for default in (config.PIPELINE_IMAGE, config.TRAINING_IMAGE, config.SERVING_IMAGE):
        assert default not in spec_text
    assert created["display_name"] == "kfloop-retrain-d1"


def test_rbac_checker_fails_on_a_missing_or_an_extra_verb(tmp_path, rendered_base):
    needed = {k8s_rule(r) for r in _record_deploys(tmp_path)}
    have = {r for r in granted(rendered_base, SA) if r[0] == "serving.kserve.io"}
    assert rbac_diff(needed, have) == []
    assert rbac_diff(needed, have - {("serving.kserve.io", "inferenceservices", "patch", None)}) == [
        "missing: ('serving.kserve.io', 'inferenceservices', 'patch', None)"
    ]
    assert rbac_diff(needed, have | {("serving.kserve.io", "inferenceservices", "delete", None)}) == [
        "not needed: ('serving.kserve.io', 'inferenceservices', 'delete', None)"
    ]


def test_no_unrecorded_api_call_site():
    """A new module that calls the Kubernetes or KFP API from a pod must be recorded above first."""
    found = set()
    for top in ("kfloop", "components", "pipelines", "serving"):
        for path in (cc.ROOT / top).rglob("*.py"):
            if _API_USE.search(path.read_text()):
                found.add(str(path.relative_to(cc.ROOT)))
    assert found <= CALL_SITES, f"unrecorded API call sites: {sorted(found - CALL_SITES)}"
    assert "kfloop/kube.py" in found and "components/trigger/trigger.py" in found


def test_trigger_pod_identity_errors(tmp_path):
    from components.trigger import trigger as T

    with pytest.raises(T.TriggerError, match="not running in a Kubernetes pod"):
        T.pod_identity(str(tmp_path))
    (tmp_path / "namespace").write_text(NS)
    (tmp_path / "token").write_text(_jwt("user:alice"))
    with pytest.raises(T.TriggerError, match="not a service account"):
        T.pod_identity(str(tmp_path))
    assert isinstance(Path(T.SA_DIR), Path)
