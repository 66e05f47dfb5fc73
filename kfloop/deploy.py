"""How a model version reaches KServe: render, apply, canary, promote, rollback.

Two modes:

- ``local``: the local KServe server (``python -m serving``) polls the store's ``champion`` alias and
  hot-reloads, so deploy / promote / rollback only move aliases (audited compare-and-swap, see
  :mod:`kfloop.store`).
- ``cluster``: an ``InferenceService`` is rendered and server-side applied through the Kubernetes API
  (:mod:`kfloop.kube`), which waits until it is Ready on its new revision (or undoes it) before any alias
  moves. Each rollout pins one model version (``--model-ref``) and the serving image, so a canary revision and the previous one serve exactly what they say, and a rollback
  restores model and code together. A new version goes out with ``canaryTrafficPercent``; ``promote``
  sends it 100 % and moves ``champion``; ``rollback`` re-pins the previous champion from the history.

KServe ignores ``canaryTrafficPercent`` in RawDeployment mode (kserve#5335): the rollout would silently send
all traffic to the new version. We refuse a canary there (:class:`CanaryRefused`) instead of pretending;
``--canary-percent 0`` rolls out directly.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import dataclasses
import json

from kfloop import config, store
from kfloop.kube import (  # noqa: F401 - the Kubernetes side, re-exported for callers of kfloop.deploy
    FIELD_MANAGER,
    GROUP,
    ISVC_PLURAL,
    ISVC_VERSION,
    Cluster,
    DeployError,
    _restorable,
    rollout_state,
)

RUNTIME_VERSION = "v1alpha1"
RUNTIME_NAME = "kfloop-serving"
MODEL_FORMAT = "kfloop-savedmodel"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
RAW = "RawDeployment"
SERVERLESS = "Serverless"
HTTP_PORT = 8080
MODES = ("local", "cluster")
#: Values of the deployment-mode annotation / ``status.deploymentMode`` that mean a plain Deployment
#: (KServe >= 0.16 also says ``Standard``) and those that mean Knative (``Knative`` is the new name).
RAW_MODES = (RAW, "Standard")
KNATIVE_MODES = (SERVERLESS, "Knative")


class CanaryRefused(DeployError):
    """A canary was asked for where KServe would ignore it (RawDeployment mode)."""


class PartialApply(DeployError):
    """A multi-alias change stopped half-way; ``applied`` lists exactly the alias moves that were made."""

    def __init__(self, message: str, applied: list[str]):
        self.applied = list(applied)
        super().__init__(message)


# ------------------------------------------------------------------------------------------ rendering
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


def _probes(name: str, raw: bool) -> dict:
    # Ready only once the model is loaded (KServe's RawDeployment default is a bare TCP check). Knative
    # probes the user container's port itself and rejects any other port: name one only in RawDeployment,
    # where Kubernetes requires it.
    port = {"port": HTTP_PORT} if raw else {}
    return {
        "readinessProbe": {
            "httpGet": {"path": f"/v2/models/{name}/ready", **port},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", **port},
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
    container in both modes. The predictor downloads the pinned version itself (``--store-uri`` +
    ``--model-ref``), so there is no ``storageUri`` (KServe's
    storage initializer would download the same model a second time).

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
        raise CanaryRefused(_raw_message(name))
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
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "feedback-tokens", "mountPath": feedback.tokens_mount, "readOnly": True},
        ],
        **_probes(name, raw),
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
                    "args": ["--model-name={{.Name}}", f"--http_port={HTTP_PORT}"],
                    "ports": [{"containerPort": HTTP_PORT, "name": "http1", "protocol": "TCP"}],
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


def _raw_message(name: str) -> str:
    return (
        f"refusing a canary for {name!r}: the InferenceService runs in RawDeployment mode, where KServe "
        "ignores canaryTrafficPercent and would send all traffic to the new version (kserve#5335). "
        "Roll out fully with --canary-percent 0, or use Serverless mode for canaries."
    )


def is_raw_deployment(cfg: config.DeployConfig, live: dict | None = None) -> bool:
    """Whether the config, the live InferenceService's annotation or its ``status.deploymentMode`` says
    RawDeployment / Standard."""
    if cfg.deployment_mode in RAW_MODES:
        return True
    live = live or {}
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    status_mode = (live.get("status") or {}).get("deploymentMode")
    return annotations.get(MODE_ANNOTATION) in RAW_MODES or status_mode in RAW_MODES


# ------------------------------------------------------------------------------------------ operations
@dataclasses.dataclass
class Outcome:
    """What a deploy / promote / rollback did (or, with ``dry_run``, would do).

    Attributes:
        action: ``deploy``, ``promote`` or ``rollback``.
        mode: ``local`` or ``cluster``.
        version: The version rolled out.
        alias: The alias moved (``champion`` or ``canary``).
        canary_percent: Traffic share of ``version`` (100 = all).
        previous: What the alias pointed to before.
        manifest: The rendered InferenceService (cluster mode).
        dry_run: Nothing was changed.
        moves: The alias moves made, in order (``"champion v0001 -> v0002"``), and notes on any step
            left out because another writer moved that alias meanwhile.
    """

    action: str
    mode: str
    version: str
    alias: str
    canary_percent: int
    previous: str | None = None
    manifest: dict | None = None
    dry_run: bool = False
    moves: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        traffic = f"{self.canary_percent}% of traffic" if self.mode == "cluster" else "local server"
        more = "".join(f"; {m}" for m in self.moves[1:])
        return (
            f"{self.action}: {verb} {self.alias} {self.previous or '(unset)'} -> {self.version} "
            f"[{self.mode}: {traffic}]{more}"
        )


def _verified(ms: store.ModelStore, name: str, version: str, action: str) -> None:
    """Checks the version's files against its manifest (present, sizes, sha256) before any rollout."""
    try:
        ms.verify(name, version)
    except store.CorruptStore as e:
        raise DeployError(f"refusing to {action} {name} {version}: {e}") from None


def _move(out: Outcome, ms: store.ModelStore, name: str, alias: str, version, expected, **kw) -> None:
    """One alias move of a multi-alias change; the first failing one raises :class:`PartialApply`
    (or, when nothing was applied yet, the store's own error), naming what was applied before it."""
    try:
        ms.set_alias(name, alias, version, expected=expected, **kw)
    except store.StoreError as e:
        if not out.moves:
            raise
        raise PartialApply(
            f"{out.action} applied only: {'; '.join(out.moves)}; NOT applied: {alias} "
            f"{expected or '(unset)'} -> {version or '(unset)'}: {e}",
            out.moves,
        ) from None
    out.moves.append(f"{alias} {expected or '(unset)'} -> {version or '(unset)'}")


def _alias_after(out: Outcome, ms: store.ModelStore, name: str, alias: str) -> str | None:
    """Reads an alias after a first move; a failure says what was already applied."""
    try:
        return ms.get_alias(name, alias)
    except store.StoreError as e:
        raise PartialApply(
            f"{out.action} applied only: {'; '.join(out.moves)}; then: {e}", out.moves
        ) from None


def _clear_canary(out: Outcome, ms: store.ModelStore, name: str, canary: str, **kw) -> None:
    """Clears ``canary`` (compare-and-swap); if someone moved it meanwhile it is theirs: left, and said."""
    try:
        _move(out, ms, name, store.CANARY, None, canary, **kw)
    except PartialApply as e:
        if not isinstance(e.__context__, store.AliasConflict):
            raise
        actual = e.__context__.actual
        out.moves.append(f"canary left at {actual or '(unset)'} (moved by another writer, not cleared)")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise DeployError(f"mode {mode!r}: use one of {', '.join(MODES)}")


def _cluster_rollout(
    name, store_uri, version, percent, *, cfg, namespace, cluster, dry_run, image
) -> tuple[dict, Cluster | None]:
    ns = namespace or cfg.namespace
    live = None
    if cluster is None and not dry_run:
        cluster = Cluster(ready_timeout_s=cfg.ready_timeout_s, poll_s=cfg.ready_poll_s)
    if cluster is not None:
        live = cluster.get_isvc(ns, name)
    if 0 < percent < 100 and is_raw_deployment(cfg, live):
        raise CanaryRefused(_raw_message(name))
    if live is None and 0 < percent < 100:
        raise DeployError(
            f"InferenceService {ns}/{name} does not exist yet: a canary needs a running version to split "
            "traffic with; deploy the champion first (--canary-percent 0)"
        )
    manifest = render_inference_service(
        name, store_uri, version, cfg=cfg, namespace=ns, canary_percent=percent, image=image
    )
    return manifest, cluster


def deploy(
    store_uri: str,
    name: str,
    *,
    version: str | None = None,
    mode: str = "local",
    namespace: str | None = None,
    canary_percent: int | None = None,
    cfg: config.DeployConfig = config.DeployConfig(),
    cluster: Cluster | None = None,
    dry_run: bool = False,
    image: str = config.SERVING_IMAGE,
    reason: str = "",
    actor: str = "",
) -> Outcome:
    """Rolls out a version: as ``canary`` when a champion exists (and percent > 0), else as ``champion``.

    Args:
        store_uri: Model store root.
        name: Model name.
        version: Version or alias to roll out (default: the ``canary`` alias, else ``latest``).
        mode: ``local`` (aliases only) or ``cluster`` (also apply the InferenceService).
        namespace: Kubernetes namespace (default ``cfg.namespace``).
        canary_percent: Canary traffic share (default ``cfg.canary_percent``); 0 = full rollout.
        cfg: Deployment settings.
        cluster: Kubernetes access (default: from in-cluster config / kubeconfig).
        dry_run: Render and report, change nothing.
        image: Predictor image.
        reason: Kept in the alias history.
        actor: Who (default: the OS user / ``$KFLOOP_ACTOR``).

    Raises:
        CanaryRefused: a canary in RawDeployment mode. DeployError, store.StoreError: anything else.
    """
    _check_mode(mode)
    ms = store.ModelStore(store_uri)
    if version is None:
        version = ms.get_alias(name, store.CANARY) or ms.resolve(name, "latest")
    version = ms.resolve(name, version)
    _verified(ms, name, version, "deploy")
    percent = cfg.canary_percent if canary_percent is None else int(canary_percent)
    if not 0 <= percent <= 100:
        raise DeployError(f"canary percent {percent} is not within 0..100")
    champion = ms.get_alias(name, store.CHAMPION)
    full = champion is None or champion == version or percent in (0, 100)
    alias = store.CHAMPION if full else store.CANARY
    percent = 100 if full else percent
    manifest = None
    if mode == "cluster":
        manifest, cluster = _cluster_rollout(
            name,
            store_uri,
            version,
            percent,
            cfg=cfg,
            namespace=namespace,
            cluster=cluster,
            dry_run=dry_run,
            image=image,
        )
    elif not full and is_raw_deployment(cfg):
        raise CanaryRefused(_raw_message(name))
    previous = ms.get_alias(name, alias)
    out = Outcome("deploy", mode, version, alias, percent, previous, manifest, dry_run)
    if dry_run:
        return out
    if manifest is not None:
        cluster.apply(manifest)
    _move(
        out,
        ms,
        name,
        alias,
        version,
        previous,
        reason=reason or f"deploy ({percent}%)",
        actor=actor,
        action="deploy",
    )
    if full and _alias_after(out, ms, name, store.CANARY) == version:
        _clear_canary(out, ms, name, version, reason="rolled out fully", actor=actor, action="deploy")
    return out


def promote(
    store_uri: str,
    name: str,
    *,
    mode: str = "local",
    namespace: str | None = None,
    cfg: config.DeployConfig = config.DeployConfig(),
    cluster: Cluster | None = None,
    dry_run: bool = False,
    image: str = config.SERVING_IMAGE,
    reason: str = "",
    actor: str = "",
) -> Outcome:
    """Moves the canary to 100 % of traffic and to ``champion`` (compare-and-swap), clearing ``canary``.

    Raises:
        DeployError: there is no canary. store.AliasConflict: champion or canary moved meanwhile.
    """
    _check_mode(mode)
    ms = store.ModelStore(store_uri)
    canary = ms.get_alias(name, store.CANARY)
    if canary is None:
        raise DeployError(f"model {name!r} has no canary to promote (deploy a new version first)")
    champion = ms.get_alias(name, store.CHAMPION)
    _verified(ms, name, canary, "promote")
    manifest = None
    if mode == "cluster":
        manifest, cluster = _cluster_rollout(
            name,
            store_uri,
            canary,
            100,
            cfg=cfg,
            namespace=namespace,
            cluster=cluster,
            dry_run=dry_run,
            image=image,
        )
    out = Outcome("promote", mode, canary, store.CHAMPION, 100, champion, manifest, dry_run)
    if dry_run:
        return out
    if manifest is not None:
        cluster.apply(manifest)
    _move(
        out,
        ms,
        name,
        store.CHAMPION,
        canary,
        champion,
        reason=reason or "promote canary",
        actor=actor,
        action="promote",
    )
    _clear_canary(out, ms, name, canary, reason="promoted", actor=actor, action="promote")
    return out


def rollback(
    store_uri: str,
    name: str,
    *,
    mode: str = "local",
    namespace: str | None = None,
    cfg: config.DeployConfig = config.DeployConfig(),
    cluster: Cluster | None = None,
    dry_run: bool = False,
    image: str = config.SERVING_IMAGE,
    reason: str = "",
    actor: str = "",
) -> Outcome:
    """Restores the previous champion from the history (100 % of traffic) and clears any canary.

    Raises:
        store.ModelNotFound: no current or earlier champion. store.AliasConflict: champion moved meanwhile.
    """
    _check_mode(mode)
    ms = store.ModelStore(store_uri)
    current = ms.get_alias(name, store.CHAMPION)
    if current is None:
        raise DeployError(f"model {name!r} has no champion to roll back")
    previous = ms.previous_champion(name)
    if previous is None:
        raise DeployError(f"model {name!r}: no earlier champion than {current} in the history")
    _verified(ms, name, previous, "roll back to")
    manifest = None
    if mode == "cluster":
        manifest, cluster = _cluster_rollout(
            name,
            store_uri,
            previous,
            100,
            cfg=cfg,
            namespace=namespace,
            cluster=cluster,
            dry_run=dry_run,
            image=image,
        )
    out = Outcome("rollback", mode, previous, store.CHAMPION, 100, current, manifest, dry_run)
    if dry_run:
        return out
    if manifest is not None:
        cluster.apply(manifest)
    reason = reason or f"rollback from {current}"
    _move(out, ms, name, store.CHAMPION, previous, current, reason=reason, actor=actor, action="rollback")
    canary = _alias_after(out, ms, name, store.CANARY)
    if canary is not None:
        _clear_canary(out, ms, name, canary, reason="rollback", actor=actor, action="rollback")
    return out


def reject_canary(
    store_uri: str,
    name: str,
    *,
    mode: str = "local",
    namespace: str | None = None,
    cfg: config.DeployConfig = config.DeployConfig(),
    cluster: Cluster | None = None,
    dry_run: bool = False,
    image: str = config.SERVING_IMAGE,
    reason: str = "",
    actor: str = "",
) -> Outcome:
    """Rolls a canary back: the champion serves 100 % again (cluster: re-pinned, ``canaryTrafficPercent``
    100 on the champion's version), and the ``canary`` alias is cleared (compare-and-swap, audited as
    ``reject``). The champion alias does not move.

    Raises:
        DeployError: there is no canary or no champion. store.AliasConflict: the canary moved meanwhile.
    """
    _check_mode(mode)
    ms = store.ModelStore(store_uri)
    canary = ms.get_alias(name, store.CANARY)
    if canary is None:
        raise DeployError(f"model {name!r} has no canary to roll back")
    champion = ms.get_alias(name, store.CHAMPION)
    if champion is None:
        raise DeployError(f"model {name!r} has no champion to return the canary's traffic to")
    manifest = None
    if mode == "cluster":
        manifest, cluster = _cluster_rollout(
            name,
            store_uri,
            champion,
            100,
            cfg=cfg,
            namespace=namespace,
            cluster=cluster,
            dry_run=dry_run,
            image=image,
        )
    out = Outcome("reject", mode, champion, store.CANARY, 100, canary, manifest, dry_run)
    if dry_run:
        return out
    if manifest is not None:
        cluster.apply(manifest)
    _move(
        out,
        ms,
        name,
        store.CANARY,
        None,
        canary,
        reason=reason or "canary rolled back",
        actor=actor,
        action="reject",
    )
    return out


def outcome_json(out: Outcome) -> str:
    """An outcome as JSON (without the manifest)."""
    d = dataclasses.asdict(out)
    d.pop("manifest")
    return json.dumps(d, sort_keys=True)
