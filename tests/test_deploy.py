"""Deployment: rendered InferenceService / ServingRuntime, RawDeployment refusal, local alias moves, and
cluster applies recorded by a real HTTP server standing in for the Kubernetes API."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kfloop import config, deploy
from kfloop.deploy import CanaryRefused, DeployError
from kfloop.store import ModelStore
from tests.test_store import make_model_dir

NAME = "taxi-tips"
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "kserve"  # ../shared from the repo


def predictor_container(isvc: dict) -> dict:
    return isvc["spec"]["predictor"]["model"]


def test_inference_service_fields():
    cfg = config.DeployConfig(namespace="ml", drain_seconds=7)
    isvc = deploy.render_inference_service(NAME, "gs://bkt/store", "v0003", cfg=cfg, canary_percent=25)
    assert isvc["kind"] == "InferenceService" and isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["namespace"] == "ml" and isvc["metadata"]["name"] == NAME
    assert isvc["metadata"]["annotations"][deploy.MODE_ANNOTATION] == "Serverless"
    pred = isvc["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 25 and pred["serviceAccountName"] == cfg.service_account
    m = predictor_container(isvc)
    assert m["storageUri"] == "gs://bkt/store/models/taxi-tips/v0003/model"
    assert m["image"] == config.SERVING_IMAGE and m["runtime"] == deploy.RUNTIME_NAME
    assert "--model-ref=v0003" in m["args"] and "--store-uri=gs://bkt/store" in m["args"]
    assert m["readinessProbe"]["httpGet"] == {"path": "/v2/models/taxi-tips/ready", "port": 8080}
    assert m["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert m["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    assert pred["terminationGracePeriodSeconds"] > 7
    assert m["resources"]["requests"] == {"cpu": cfg.cpu_request, "memory": cfg.memory_request}
    assert m["resources"]["limits"] == {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit}
    sc = m["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    # A full rollout sends 100 %; RawDeployment carries no canary field at all.
    full = deploy.render_inference_service(NAME, "gs://bkt/store", "v0003", canary_percent=0)
    assert full["spec"]["predictor"]["canaryTrafficPercent"] == 100
    raw = dataclasses.replace(cfg, deployment_mode="RawDeployment")
    rendered = deploy.render_inference_service(NAME, "gs://b/s", "v0001", cfg=raw, canary_percent=100)
    assert "canaryTrafficPercent" not in rendered["spec"]["predictor"]
    assert rendered["metadata"]["annotations"][deploy.MODE_ANNOTATION] == "RawDeployment"


def test_serving_runtime_fields():
    rt = deploy.render_serving_runtime(namespace="ml")
    c = rt["spec"]["containers"][0]
    assert rt["metadata"]["name"] == deploy.RUNTIME_NAME and rt["metadata"]["namespace"] == "ml"
    assert c["image"] == config.SERVING_IMAGE and c["command"] == ["python", "-m", "serving"]
    assert "--model-name={{.Name}}" in c["args"]
    assert rt["spec"]["supportedModelFormats"][0]["name"] == deploy.MODEL_FORMAT
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["resources"]["limits"]


def test_raw_deployment_refuses_canary():
    raw = config.DeployConfig(deployment_mode="RawDeployment")
    with pytest.raises(CanaryRefused, match=r"RawDeployment.*ignores canaryTrafficPercent"):
        deploy.render_inference_service(NAME, "gs://b/s", "v0002", cfg=raw, canary_percent=10)
    live = {"metadata": {"annotations": {deploy.MODE_ANNOTATION: "RawDeployment"}}}
    assert deploy.is_raw_deployment(config.DeployConfig(), live)
    assert not deploy.is_raw_deployment(config.DeployConfig(), {"metadata": {}})
    with pytest.raises(DeployError, match="within 0..100"):
        deploy.render_inference_service(NAME, "gs://b/s", "v0002", canary_percent=101)


@pytest.mark.slow
@pytest.mark.skipif(not SCHEMAS.is_dir(), reason="KServe CRD schemas not present (../shared/schemas/kserve)")
def test_rendered_objects_match_kserve_crd_schemas():
    import jsonschema
    import yaml

    def schema(file: str, version: str) -> dict:
        crd = yaml.load((SCHEMAS / file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        sch = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)

        def strict(node):  # unknown fields are errors (the API server would prune them silently)
            if isinstance(node, dict):
                if (
                    node.get("type") == "object"
                    and "properties" in node
                    and "additionalProperties" not in node
                ) and not node.get("x-kubernetes-preserve-unknown-fields"):
                    node["additionalProperties"] = False
                for v in node.values():
                    strict(v)
            elif isinstance(node, list):
                for v in node:
                    strict(v)

        strict(sch)
        sch["properties"]["metadata"] = {"type": "object"}
        return sch

    # Draft7Validator(...).validate skips the (slow, for a 2 MB CRD) meta-schema check of jsonschema.validate.
    isvc = jsonschema.Draft7Validator(schema("serving.kserve.io_inferenceservices.yaml", "v1beta1"))
    for percent in (None, 0, 10):
        isvc.validate(deploy.render_inference_service(NAME, "gs://b/s", "v0002", canary_percent=percent))
    runtime = jsonschema.Draft7Validator(schema("serving.kserve.io_servingruntimes.yaml", "v1alpha1"))
    runtime.validate(deploy.render_serving_runtime())
    bad = deploy.render_serving_runtime()
    bad["spec"]["containers"][0]["notAField"] = 1
    with pytest.raises(jsonschema.ValidationError, match="notAField"):
        runtime.validate(bad)


@pytest.fixture
def three_versions(tmp_path):
    root = str(tmp_path / "store")
    ms = ModelStore(root)
    vs = [ms.publish(NAME, str(make_model_dir(tmp_path, t)), {}) for t in "abc"]
    return root, ms, vs


def test_local_deploy_promote_rollback(three_versions):
    root, ms, (v1, v2, v3) = three_versions
    out = deploy.deploy(root, NAME, version=v1)
    assert (out.alias, out.version, out.canary_percent) == ("champion", v1, 100)
    out = deploy.deploy(root, NAME, version=v2, canary_percent=20)
    assert (out.alias, out.previous) == ("canary", None)
    assert ms.aliases(NAME) == {"champion": v1, "canary": v2}
    dry = deploy.promote(root, NAME, dry_run=True)
    assert dry.dry_run and ms.get_alias(NAME, "champion") == v1  # nothing moved
    deploy.promote(root, NAME)
    assert ms.aliases(NAME) == {"champion": v2}
    with pytest.raises(DeployError, match="no canary to promote"):
        deploy.promote(root, NAME)
    deploy.deploy(root, NAME, version=v3, canary_percent=0)  # straight to champion
    assert ms.aliases(NAME) == {"champion": v3}
    out = deploy.rollback(root, NAME)
    assert (out.previous, out.version) == (v3, v2) and ms.get_alias(NAME, "champion") == v2
    deploy.rollback(root, NAME)
    assert ms.get_alias(NAME, "champion") == v1
    with pytest.raises(DeployError, match="no earlier champion"):
        deploy.rollback(root, NAME)
    outcomes = [(h["action"], h["alias"], h["to"]) for h in ms.history(NAME) if h["event"] == "alias"]
    assert ("rollback", "champion", v2) in outcomes and ("promote", "champion", v2) in outcomes
    raw = config.DeployConfig(deployment_mode="RawDeployment")
    with pytest.raises(CanaryRefused):
        deploy.deploy(root, NAME, version=v3, canary_percent=10, cfg=raw)
    assert ms.get_alias(NAME, "canary") is None


class _FakeApiServer:
    """A real HTTP server on loopback that answers like the Kubernetes API for one InferenceService
    (GET -> the last applied object or 404; PATCH -> stores and echoes) and records every request."""

    def __init__(self, live: dict | None = None):
        self.requests: list[dict] = []
        self.live = live
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.requests.append({"method": "GET", "path": self.path})
                if outer.live is None:
                    self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                else:
                    self._send(200, outer.live)

            def do_PATCH(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"method": "PATCH", "path": self.path, "type": self.headers["Content-Type"], "body": body}
                )
                outer.live = body
                self._send(200, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def cluster(self) -> deploy.Cluster:
        from kubernetes import client

        conf = client.Configuration(host=f"http://127.0.0.1:{self.httpd.server_address[1]}")
        return deploy.Cluster(client.ApiClient(conf))


def test_cluster_mode_applies_canary_promote_rollback(three_versions):
    root, ms, (v1, v2, _v3) = three_versions
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{NAME}"
    with _FakeApiServer() as api:
        c = api.cluster()
        ms.set_alias(NAME, "champion", v1)
        with pytest.raises(DeployError, match="does not exist yet"):
            deploy.deploy(
                root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=10
            )
        assert ms.get_alias(NAME, "canary") is None  # refused before any alias moved

        deploy.deploy(root, NAME, version=v1, mode="cluster", namespace="ml", cluster=c)
        patch = api.requests[-1]
        assert patch["method"] == "PATCH" and patch["type"] == "application/apply-patch+yaml"
        assert patch["path"].startswith(path) and "fieldManager=kfloop" in patch["path"]
        assert predictor_container(patch["body"])["storageUri"].endswith(f"/models/{NAME}/{v1}/model")

        out = deploy.deploy(
            root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=15
        )
        body = api.requests[-1]["body"]
        assert out.alias == "canary" and body["spec"]["predictor"]["canaryTrafficPercent"] == 15
        assert "--model-ref=v0002" in predictor_container(body)["args"]

        deploy.promote(root, NAME, mode="cluster", namespace="ml", cluster=c)
        body = api.requests[-1]["body"]
        assert body["spec"]["predictor"]["canaryTrafficPercent"] == 100
        assert ms.aliases(NAME) == {"champion": v2}

        deploy.rollback(root, NAME, mode="cluster", namespace="ml", cluster=c)
        body = api.requests[-1]["body"]
        assert (
            "--model-ref=v0001" in predictor_container(body)["args"] and ms.get_alias(NAME, "champion") == v1
        )

        # The live object says RawDeployment (set outside kfloop): a canary is refused, nothing applied.
        api.live["metadata"]["annotations"][deploy.MODE_ANNOTATION] = "RawDeployment"
        n = len(api.requests)
        with pytest.raises(CanaryRefused, match="kserve#5335"):
            deploy.deploy(
                root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=10
            )
        assert [r["method"] for r in api.requests[n:]] == ["GET"]
        assert ms.get_alias(NAME, "canary") is None
