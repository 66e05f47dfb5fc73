"""The KServe objects kfloop serves with: the ``InferenceService`` pinning one model version and the
``ServingRuntime`` for the predictor image, rendered as plain dicts (server-side applied by
:mod:`kfloop.kube`, printed by ``kfloop deploy --dry-run``).

KServe ignores ``canaryTrafficPercent`` in RawDeployment mode (kserve#5335): the rollout would silently send
all traffic to the new version. A canary there is refused (:class:`CanaryRefused`) instead of pretended;
``--canary-percent 0`` rolls out directly.

Only the standard library is imported at module level (``yaml`` when :func:`to_yaml` runs).
"""

from __future__ import annotations

from kfloop import config, store
from kfloop.kube import GROUP, ISVC_VERSION, DeployError

RUNTIME_VERSION = "v1alpha1"
RUNTIME_NAME = "kfloop-serving"
MODEL_FORMAT = "kfloop-savedmodel"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
RAW = "RawDeployment"
SERVERLESS = "Serverless"
HTTP_PORT = 8080
#: The predictor's gRPC (Open Inference Protocol v2) port: KServe's ``h2c`` port.
GRPC_PORT = 8081
#: The container ports, by the names Knative and KServe read: ``http1`` (HTTP/1.1) and ``h2c`` (HTTP/2
#: cleartext: gRPC). KServe >= 0.15 also gives a RawDeployment Service port named ``h2c`` / ``grpc*`` the
#: ``appProtocol: kubernetes.io/h2c``.
PORTS = {
    "http1": {"containerPort": HTTP_PORT, "name": "http1", "protocol": "TCP"},
    "h2c": {"containerPort": GRPC_PORT, "name": "h2c", "protocol": "TCP"},
}
#: Values of the deployment-mode annotation / ``status.deploymentMode`` that mean a plain Deployment
#: (KServe >= 0.16 also says ``Standard``) and those that mean Knative (``Knative`` is the new name).
RAW_MODES = (RAW, "Standard")
KNATIVE_MODES = (SERVERLESS, "Knative")


class CanaryRefused(DeployError):
    """A canary was asked for where KServe would ignore it (RawDeployment mode)."""

    @classmethod
    def raw(cls, name: str) -> CanaryRefused:
        """The refusal of a canary for model ``name`` in RawDeployment mode, saying what to do instead."""
        return cls(
            f"refusing a canary for {name!r}: the InferenceService runs in RawDeployment mode, where KServe "
            "ignores canaryTrafficPercent and would send all traffic to the new version (kserve#5335). "
            "Roll out fully with --canary-percent 0, or use Serverless mode for canaries."
        )


def _security_context(cfg: config.DeployConfig) -> dict:
    """Container-level hardening (Knative allows these on the container, not on the pod)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": cfg.run_as_user,
        "runAsGroup": cfg.run_as_user,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_ports(cfg: config.DeployConfig) -> list[dict]:
    """The predictor container's ports: both in RawDeployment (KServe's Service maps the first to port 80
    and every further one to its own number, so gRPC is ``<name>-predictor:8081``); in Serverless the one
    Knative routes (it refuses more than one), ``cfg.serverless_port``.

    They are declared on the InferenceService, not in the ServingRuntime: KServe merges the two containers
    by strategic merge patch keyed on ``containerPort``, which adds ports and never removes one, and the
    one runtime serves both modes.
    """
    if cfg.deployment_mode in RAW_MODES:
        return [dict(PORTS["http1"]), dict(PORTS["h2c"])]
    return [dict(PORTS[cfg.serverless_port])]


def _probes(name: str, raw: bool, h2c: bool = False) -> dict:
    # Ready only once the model is loaded (KServe's RawDeployment default is a bare TCP check). Knative
    # probes the user container's port itself and rejects any other port: name one only in RawDeployment,
    # where Kubernetes requires it. When Knative routes the gRPC port (h2c), the REST paths are not there to
    # probe: a TCP check of the gRPC listener, which opens only once the model is loaded.
    port = {"port": HTTP_PORT} if raw else {}
    ready = {"httpGet": {"path": f"/v2/models/{name}/ready", **port}}
    live = {"httpGet": {"path": "/v2/health/live", **port}}
    if h2c:
        ready = live = {"tcpSocket": {}}
    return {
        "readinessProbe": {**ready, "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 2},
        "livenessProbe": {
            **live,
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
            "timeoutSeconds": 2,
        },
    }


def _resources(cfg: config.DeployConfig) -> dict:
    return {
        "requests": {"cpu": cfg.cpu_request, "memory": cfg.memory_request},
        "limits": {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit},
    }


def render_inference_service(
    name: str,
    store_uri: str,
    version: str,
    *,
    cfg: config.DeployConfig = config.DeployConfig(),
    namespace: str | None = None,
    canary_percent: int | None = None,
    image: str = config.SERVING_IMAGE,
) -> dict:
    """The ``InferenceService`` serving ``version`` of model ``name`` from the store at ``store_uri``.

    Serverless (Knative) and RawDeployment get different pod specs: Knative's webhook rejects
    ``containers[].lifecycle``, ``terminationGracePeriodSeconds`` and a pod-level ``securityContext``
    (feature flags off by default), so those appear only in RawDeployment; user and group are set on the
    container in both modes. Ports (:func:`container_ports`): RawDeployment declares REST (``http1`` 8080)
    and gRPC (``h2c`` 8081); Serverless the one Knative routes, ``cfg.serverless_port``. The predictor
    downloads the pinned version itself (``--store-uri`` + ``--model-ref``), so there is no ``storageUri``
    (KServe's storage initializer would download the same model a second time).

    Args:
        name: Model name (also the InferenceService name and the KServe model name).
        store_uri: Model store root (``gs://`` on a cluster).
        version: The version this rollout pins (``--model-ref``).
        cfg: Namespace, service account, resources, replicas, deployment mode, drain time.
        namespace: Overrides ``cfg.namespace``.
        canary_percent: Traffic share of this version while earlier revisions keep the rest (1..99), or
            None / 100 for a full rollout.
        image: Predictor image (the one the running pipeline was compiled with).

    Raises:
        DeployError: a percentage outside 0..100 or an unknown deployment mode.
        CanaryRefused: a canary (1..99) in RawDeployment mode.
    """
    if cfg.deployment_mode not in KNATIVE_MODES + RAW_MODES:
        raise DeployError(
            f"deployment_mode {cfg.deployment_mode!r}: use one of {', '.join(KNATIVE_MODES + RAW_MODES)}"
        )
    if canary_percent is not None and not 0 <= int(canary_percent) <= 100:
        raise DeployError(f"canary percent {canary_percent} is not within 0..100")
    canary = canary_percent is not None and 0 < int(canary_percent) < 100
    raw = cfg.deployment_mode in RAW_MODES
    if canary and raw:
        raise CanaryRefused.raw(name)
    feedback = config.FeedbackConfig()  # labels only from labelers whose token is in this Secret
    model = {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtime": RUNTIME_NAME,
        "image": image,
        "args": [
            f"--store-uri={store.ModelStore(store_uri).root}",
            f"--model-ref={version}",
            f"--feedback-tokens={feedback.tokens_mount}",
        ],
        "resources": _resources(cfg),
        "securityContext": _security_context(cfg),
        "ports": container_ports(cfg),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "feedback-tokens", "mountPath": feedback.tokens_mount, "readOnly": True},
        ],
        **_probes(name, raw, h2c=not raw and cfg.serverless_port == "h2c"),
    }
    predictor: dict = {
        "serviceAccountName": cfg.service_account,
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            # Not optional: without the Secret the pod does not start (feedback never runs unauthenticated).
            # 0444: Serverless pods have no fsGroup, and the files are root-owned; only this container mounts it.
            {
                "name": "feedback-tokens",
                "secret": {"secretName": feedback.tokens_secret, "defaultMode": 0o444},
            },
        ],
        "model": model,
    }
    if raw:
        # Keep serving while endpoint removal propagates, so in-flight and late-routed requests finish
        # (Knative's queue-proxy drains by itself in Serverless).
        model["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(int(cfg.drain_seconds))]}}}
        predictor["terminationGracePeriodSeconds"] = int(cfg.drain_seconds) + 30
        predictor["securityContext"] = {"fsGroup": cfg.run_as_user}
    if canary_percent is not None and not raw:
        predictor["canaryTrafficPercent"] = int(canary_percent) if canary else 100
    if cfg.image_pull_secret:
        predictor["imagePullSecrets"] = [{"name": cfg.image_pull_secret}]
    return {
        "apiVersion": f"{GROUP}/{ISVC_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace or cfg.namespace,
            "labels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/part-of": "kfloop",
                "kfloop.dev/model-version": version,
            },
            "annotations": {MODE_ANNOTATION: cfg.deployment_mode},
        },
        "spec": {"predictor": predictor},
    }


def render_serving_runtime(
    *,
    namespace: str | None = None,
    image: str = config.SERVING_IMAGE,
    cfg: config.DeployConfig = config.DeployConfig(),
) -> dict:
    """The ``ServingRuntime`` for our predictor image (``python -m serving``, kserve's model-server args)."""
    return {
        "apiVersion": f"{GROUP}/{RUNTIME_VERSION}",
        "kind": "ServingRuntime",
        "metadata": {
            "name": RUNTIME_NAME,
            "namespace": namespace or cfg.namespace,
            "labels": {"app.kubernetes.io/part-of": "kfloop"},
        },
        "spec": {
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2", "v1"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    "command": ["python", "-m", "serving"],
                    # REST on 8080 and gRPC (V2) on KServe's h2c port 8081 in every mode. No ports here: each
                    # InferenceService declares its own (container_ports: both in RawDeployment, the one
                    # Knative routes in Serverless), as KServe's built-in runtimes leave them to it.
                    "args": [
                        "--model-name={{.Name}}",
                        f"--http_port={HTTP_PORT}",
                        f"--grpc_port={GRPC_PORT}",
                    ],
                    "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
                    "resources": _resources(cfg),
                    "securityContext": _security_context(cfg),
                }
            ],
        },
    }


def to_yaml(*objs: dict) -> str:
    """Kubernetes objects as one multi-document YAML string."""
    import yaml

    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)


def is_raw_deployment(cfg: config.DeployConfig, live: dict | None = None) -> bool:
    """Whether the config, the live InferenceService's annotation or its ``status.deploymentMode`` says
    RawDeployment / Standard."""
    if cfg.deployment_mode in RAW_MODES:
        return True
    live = live or {}
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    status_mode = (live.get("status") or {}).get("deploymentMode")
    return annotations.get(MODE_ANNOTATION) in RAW_MODES or status_mode in RAW_MODES
