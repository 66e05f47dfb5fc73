"""The predictor image's entrypoint and the arguments KServe gives it (ServingRuntime args + the
InferenceService's model args, as kfloop.deploy renders them) are accepted by ``python -m serving``'s own
parser and mean what the manifests intend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kfloop import config, deploy

pytestmark = pytest.mark.serving
ROOT = Path(__file__).resolve().parents[2]
#: Any model name: the entrypoint knows none (the name is the dataset spec's, given by the manifests).
MODEL = "some-model"


def _entrypoint() -> list[str]:
    text = (ROOT / "serving" / "Dockerfile").read_text()
    (entry,) = re.findall(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    import json

    return json.loads(entry)


@pytest.mark.parametrize("mode", ["Serverless", "RawDeployment"])
def test_runtime_and_isvc_args_parse_with_the_predictor_parser(mode):
    from serving.__main__ import build_parser

    rt = deploy.render_serving_runtime()
    (container,) = rt["spec"]["containers"]
    assert container["command"] == _entrypoint() == ["python", "-m", "serving"]
    cfg = config.DeployConfig(deployment_mode=mode)
    isvc = deploy.render_inference_service(MODEL, "gs://b/store", "v0007", cfg=cfg, canary_percent=100)
    # KServe substitutes {{.Name}} and appends the model's args to the runtime's.
    argv = [a.replace("{{.Name}}", MODEL) for a in container["args"]]
    argv += isvc["spec"]["predictor"]["model"]["args"]
    args = build_parser().parse_args(argv)
    assert (args.model_name, args.store_uri, args.model_ref) == (MODEL, "gs://b/store", "v0007")
    from kfloop import isvc as isvc_mod
    from serving.__main__ import grpc_port

    # the ports the InferenceService declares are the ones the predictor listens on: REST (http1) and,
    # in RawDeployment, gRPC on KServe's h2c port (Serverless routes one: http1 by default)
    ports = {p["name"]: p["containerPort"] for p in isvc["spec"]["predictor"]["model"]["ports"]}
    assert args.http_port == deploy.HTTP_PORT == ports["http1"]
    assert grpc_port(args) == isvc_mod.GRPC_PORT == 8081  # gRPC on in the pod, on KServe's h2c port
    assert set(ports) == ({"http1", "h2c"} if mode == "RawDeployment" else {"http1"})
    if "h2c" in ports:
        assert ports["h2c"] == grpc_port(args)
    probes = isvc["spec"]["predictor"]["model"]
    assert probes["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{MODEL}/ready"


def test_a_wrong_argument_is_refused_by_the_parser():
    from serving.__main__ import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model-name=x", "--store-uri=gs://b/s", "--model-version=v1"])
