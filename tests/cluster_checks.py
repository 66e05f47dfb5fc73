"""Checks of what kfloop sends to a cluster, with the real tools: kustomize (``kubectl kustomize``),
``kubernetes-validate`` (Kubernetes OpenAPI schemas, strict), KServe's CRD schemas (vendored in
``tests/schemas/kserve``, unknown fields rejected) and Knative's pod-spec field rules.

Used by tests/test_manifests.py and tests/test_rbac.py; importing it runs nothing.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
KSERVE_SCHEMAS = Path(__file__).resolve().parent / "schemas" / "kserve"
#: Kubernetes version the objects are validated against (GKE regular channel at the time of writing).
K8S_VERSION = "1.32"
KSERVE_FILES = {
    "InferenceService": "serving.kserve.io_inferenceservices.json",
    "ServingRuntime": "serving.kserve.io_servingruntimes.json",
}


#: Istio kinds (not in kubernetes-validate): strict schemas written from Istio's API reference.
ISTIO_SCHEMAS = Path(__file__).resolve().parent / "schemas" / "istio"
ISTIO_FILES = {"AuthorizationPolicy": "security.istio.io_authorizationpolicies.json"}


class CheckError(AssertionError):
    """An object that a cluster would reject (the message names object, field and rule)."""


# ------------------------------------------------------------------------------------------ kustomize
def kustomize(path: str | Path) -> list[dict]:
    """``kubectl kustomize <path>``: the objects a ``kubectl apply -k`` would send.

    Raises:
        CheckError: kubectl is not installed (``make tools`` installs it) or kustomize fails.
    """
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise CheckError("kubectl not found: `make tools` installs it (Debian package kubernetes-client)")
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise CheckError(f"kubectl kustomize {path} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def overlays() -> list[Path]:
    """Every kustomization under manifests/ (base and each overlay)."""
    return sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))


# ------------------------------------------------------------------------------------ strict schemas
def _strict(node):
    """Unknown fields are errors (the API server would prune them silently or reject them)."""
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for v in node.values():
            _strict(v)
    elif isinstance(node, list):
        for v in node:
            _strict(v)
    return node


@functools.cache
def _kserve_validator(kind: str, version: str):
    import jsonschema

    doc = json.loads((KSERVE_SCHEMAS / KSERVE_FILES[kind]).read_text())
    schema = _strict(doc["versions"][version])
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is checked by the API server
    return jsonschema.Draft7Validator(schema)


def validate(obj: dict) -> None:
    """Validates one object strictly: KServe kinds against the vendored CRDs, every other kind against
    the Kubernetes OpenAPI schemas (``kubernetes-validate``, strict: unknown fields are errors).

    Raises:
        CheckError: the object does not validate (names kind, name and the field path).
    """
    kind, api = obj.get("kind"), obj.get("apiVersion", "")
    where = f"{kind} {obj.get('metadata', {}).get('namespace', '')}/{obj.get('metadata', {}).get('name')}"
    if api.startswith("serving.kserve.io/"):
        if kind not in KSERVE_FILES:
            raise CheckError(f"{where}: no vendored KServe schema for {kind}")
        errors = sorted(_kserve_validator(kind, api.split("/")[1]).iter_errors(obj), key=lambda e: e.path)
        if errors:
            e = errors[0]
            raise CheckError(f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
        return
    if api.startswith("security.istio.io/"):
        if kind not in ISTIO_FILES:
            raise CheckError(f"{where}: no Istio schema for {kind}")
        import jsonschema

        schema = json.loads((ISTIO_SCHEMAS / ISTIO_FILES[kind]).read_text())
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            raise CheckError(f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
        return
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise CheckError(f"{where}: {'.'.join(map(str, e.path))}: {e.message}") from None
    except kubernetes_validate.SchemaNotFoundError:
        raise CheckError(f"{where}: {api} {kind} is not a Kubernetes kind with a known schema") from None


# --------------------------------------------------------------------------------- Knative field rules
#: Pod-spec fields Knative Serving accepts with its default feature flags (knative.dev/serving
#: pkg/apis/serving/fieldmask.go, PodSpecMask + config-features defaults). Everything else, e.g.
#: ``terminationGracePeriodSeconds`` (never allowed) or ``securityContext`` (flag
#: ``kubernetes.podspec-securitycontext``, disabled by default), is rejected by its webhook.
KNATIVE_POD_FIELDS = frozenset(
    {
        "serviceAccountName",
        "containers",
        "volumes",
        "imagePullSecrets",
        "enableServiceLinks",
        "automountServiceAccountToken",
    }
)
#: Container fields Knative accepts (ContainerMask): no ``lifecycle``, ``stdin``, ``tty``, ...
KNATIVE_CONTAINER_FIELDS = frozenset(
    {
        "name",
        "args",
        "command",
        "env",
        "envFrom",
        "image",
        "imagePullPolicy",
        "livenessProbe",
        "ports",
        "readinessProbe",
        "startupProbe",
        "resources",
        "securityContext",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "volumeMounts",
        "workingDir",
    }
)
#: Container securityContext fields Knative accepts (SecurityContextMask).
KNATIVE_SECURITY_FIELDS = frozenset(
    {
        "allowPrivilegeEscalation",
        "capabilities",
        "readOnlyRootFilesystem",
        "runAsGroup",
        "runAsNonRoot",
        "runAsUser",
        "seccompProfile",
    }
)
#: Volume sources Knative accepts by default (``emptyDir``: ``kubernetes.podspec-volumes-emptydir``,
#: enabled in Knative's default config-features).
KNATIVE_VOLUME_SOURCES = frozenset({"secret", "configMap", "projected", "emptyDir"})
#: KServe's own (non-pod) fields of a component spec (ComponentExtensionSpec and the predictor's
#: framework / model slots); they are not copied into the Knative pod spec.
KSERVE_COMPONENT_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "scaleMetricType",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "logger",
        "batcher",
        "labels",
        "annotations",
        "deploymentStrategy",
        "autoScaling",
        "model",
        "workerSpec",
        "storageUris",
        "storageContainerName",
        "huggingface",
        "lightgbm",
        "onnx",
        "paddle",
        "pmml",
        "pytorch",
        "sklearn",
        "tensorflow",
        "triton",
        "xgboost",
    }
)
#: Knative's default user port (no port declared) and the container-port rules of its webhook
#: (knative.dev/serving pkg/apis/serving/k8s_validation.go): one port at most, named ``http1`` or ``h2c``
#: (or unnamed), TCP, none of the queue-proxy's reserved ports.
_PORT = 8080
KNATIVE_PORT_NAMES = frozenset({"", "http1", "h2c"})
KNATIVE_RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091})


def merged_ports(runtime: dict | None, model: dict) -> list[dict]:
    """The container ports KServe gives the predictor pod: the ServingRuntime container's, then the
    InferenceService model's merged in as a strategic merge patch does (keyed on ``containerPort``: a port
    of the same number is updated, another one appended; none is ever removed)."""
    base = [] if runtime is None else (runtime["spec"]["containers"][0].get("ports") or [])
    out = [dict(p) for p in base]
    for p in model.get("ports") or []:
        same = [q for q in out if q.get("containerPort") == p.get("containerPort")]
        if same:
            same[0].update(p)
        else:
            out.append(dict(p))
    return out


def knative_violations(isvc: dict, runtime: dict | None = None) -> list[str]:
    """What Knative's webhook would reject in a Serverless InferenceService's predictor ([] = none).

    ``runtime``: the ServingRuntime the predictor runs on; its container's ports are merged with the
    model's (:func:`merged_ports`) before the port rules are checked. RawDeployment InferenceServices
    become plain Deployments and are not subject to these rules.
    """
    from kfloop import deploy

    meta = isvc.get("metadata") or {}
    if (meta.get("annotations") or {}).get(deploy.MODE_ANNOTATION) in deploy.RAW_MODES:
        return []
    pred = (isvc.get("spec") or {}).get("predictor") or {}
    out = [
        f"predictor.{k}: not allowed in a Knative pod spec"
        for k in sorted(set(pred) - KSERVE_COMPONENT_FIELDS - KNATIVE_POD_FIELDS)
    ]
    containers = (
        [("predictor.model", {**pred["model"], "ports": merged_ports(runtime, pred["model"])})]
        if "model" in pred
        else []
    )
    containers += [(f"predictor.containers[{i}]", c) for i, c in enumerate(pred.get("containers") or [])]
    for where, c in containers:
        extra = (
            set(c) - KNATIVE_CONTAINER_FIELDS - {"modelFormat", "runtime", "storageUri", "protocolVersion"}
        )
        out += [f"{where}.{k}: not allowed in a Knative container" for k in sorted(extra)]
        sc = c.get("securityContext") or {}
        out += [
            f"{where}.securityContext.{k}: not allowed by Knative"
            for k in sorted(set(sc) - KNATIVE_SECURITY_FIELDS)
        ]
        added = set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        out += (
            [f"{where}.securityContext.capabilities.add {sorted(added)}: needs a Knative flag"]
            if added
            else []
        )
        ports = c.get("ports") or []
        if len(ports) > 1:
            out.append(f"{where}.ports: {len(ports)} ports; Knative routes exactly one container port")
        for i, p in enumerate(ports):
            if p.get("name", "") not in KNATIVE_PORT_NAMES:
                out.append(f"{where}.ports[{i}].name {p['name']!r}: Knative allows only http1 or h2c")
            if p.get("containerPort") in KNATIVE_RESERVED_PORTS:
                out.append(f"{where}.ports[{i}].containerPort {p['containerPort']}: reserved by Knative")
            if p.get("protocol", "TCP") != "TCP":
                out.append(f"{where}.ports[{i}].protocol {p['protocol']}: Knative allows only TCP")
        serving = ports[0].get("containerPort", _PORT) if len(ports) == 1 else _PORT
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            for action in ("httpGet", "tcpSocket"):
                port = ((c.get(probe) or {}).get(action) or {}).get("port")
                if port is not None and port != serving:
                    out.append(
                        f"{where}.{probe}.{action}.port {port}: Knative probes only the serving port {serving}"
                    )
    for i, v in enumerate(pred.get("volumes") or []):
        sources = set(v) - {"name"}
        out += [
            f"predictor.volumes[{i}].{s}: not an allowed Knative volume source"
            for s in sorted(sources - KNATIVE_VOLUME_SOURCES)
        ]
    return out


def kserve_raw_service(isvc: dict, runtime: dict | None = None) -> dict:
    """The predictor Service KServe creates for a RawDeployment InferenceService (its service reconciler,
    ``createDefaultSvc``, KServe >= 0.11: the first container port as port 80, every further one under its
    own number; >= 0.15: ``appProtocol: kubernetes.io/h2c`` on a port whose name holds ``grpc`` or ``h2c``).
    """
    name = isvc["metadata"]["name"]
    ports = merged_ports(runtime, isvc["spec"]["predictor"]["model"])
    out = []
    for i, p in enumerate(ports or [{"containerPort": _PORT, "name": f"{name}-predictor"}]):
        port = {
            "name": p.get("name") or ("http" if i == 0 else ""),
            "port": 80 if i == 0 else p["containerPort"],
            "targetPort": p["containerPort"],
            "protocol": p.get("protocol") or "TCP",
        }
        if "grpc" in port["name"] or "h2c" in port["name"]:
            port["appProtocol"] = "kubernetes.io/h2c"
        out.append(port)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-predictor", "namespace": isvc["metadata"]["namespace"]},
        "spec": {"selector": {"app": f"isvc.{name}-predictor"}, "ports": out},
    }
