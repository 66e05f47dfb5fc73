"""How a model version reaches KServe: deploy (canary), promote, rollback, reject a canary.

Two modes:

- ``local``: the local KServe server (``python -m serving``) polls the store's ``champion`` alias and
  hot-reloads, so deploy / promote / rollback only move aliases (audited compare-and-swap, see
  :mod:`kfloop.store`).
- ``cluster``: an ``InferenceService`` is rendered (:mod:`kfloop.isvc`) and server-side applied through the
  Kubernetes API (:mod:`kfloop.kube`), which waits until it is Ready on its new revision (or undoes it) before
  any alias moves. Each rollout pins one model version (``--model-ref``) and the serving image, so a canary
  revision and the previous one serve exactly what they say, and a rollback restores model and code
  together. A new version goes out with ``canaryTrafficPercent``; ``promote`` sends it 100 % and moves
  ``champion``; ``rollback`` re-pins the previous champion from the history.

Each operation here only reads the store, checks, and describes its step as a
:class:`~kfloop.transitions.Transition`; :func:`~kfloop.transitions.run_transition` carries out all four the
same way. The names callers use from the modules below are re-exported, so ``from kfloop.deploy import ...``
keeps working. Only the standard library is imported at module level.
"""

from __future__ import annotations

from kfloop import config, store
from kfloop.isvc import (  # noqa: F401 - the rendering, re-exported for callers of kfloop.deploy
    HTTP_PORT,
    KNATIVE_MODES,
    MODE_ANNOTATION,
    MODEL_FORMAT,
    RAW,
    RAW_MODES,
    RUNTIME_NAME,
    RUNTIME_VERSION,
    SERVERLESS,
    CanaryRefused,
    is_raw_deployment,
    render_inference_service,
    render_serving_runtime,
    to_yaml,
)
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
from kfloop.transitions import (  # noqa: F401 - the transition step, re-exported for callers of kfloop.deploy
    MODES,
    ClearCanary,
    Outcome,
    PartialApply,
    Transition,
    check_mode,
    outcome_json,
    run_transition,
)


def _verified(ms: store.ModelStore, name: str, version: str, action: str) -> None:
    """Checks the version's files against its manifest (present, sizes, sha256) before any rollout."""
    try:
        ms.verify(name, version)
    except store.CorruptStore as e:
        raise DeployError(f"refusing to {action} {name} {version}: {e}") from None


def _open(store_uri: str, mode: str) -> store.ModelStore:
    check_mode(mode)  # before anything is read
    return store.ModelStore(store_uri)


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
    notify_config: str = "",
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
        notify_config: Notification channels: a cluster rollout that is undone sends ``deploy.undone``.

    Raises:
        CanaryRefused: a canary in RawDeployment mode. DeployError, store.StoreError: anything else.
    """
    ms = _open(store_uri, mode)
    if version is None:
        version = ms.get_alias(name, store.CANARY) or ms.resolve(name, "latest")
    version = ms.resolve(name, version)
    _verified(ms, name, version, "deploy")
    percent = cfg.canary_percent if canary_percent is None else int(canary_percent)
    if not 0 <= percent <= 100:
        raise DeployError(f"canary percent {percent} is not within 0..100")
    champion = ms.get_alias(name, store.CHAMPION)
    full = champion is None or champion == version or percent in (0, 100)
    percent = 100 if full else percent
    t = Transition(
        "deploy",
        name,
        version,
        percent,
        alias=store.CHAMPION if full else store.CANARY,
        to=version,
        expected=champion if full else ms.get_alias(name, store.CANARY),
        reason=reason or f"deploy ({percent}%)",
        # a canary at the version now serving fully is done
        then=ClearCanary("rolled out fully", only_if=version) if full else None,
    )
    kw = dict(mode=mode, namespace=namespace, cfg=cfg, cluster=cluster, dry_run=dry_run, image=image)
    return run_transition(t, ms, actor=actor, notify_config=notify_config, **kw)


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
    notify_config: str = "",
) -> Outcome:
    """Moves the canary to 100 % of traffic and to ``champion`` (compare-and-swap), clearing ``canary``.

    Arguments as for :func:`deploy`.

    Raises:
        DeployError: there is no canary. store.AliasConflict: champion or canary moved meanwhile.
    """
    ms = _open(store_uri, mode)
    canary = ms.get_alias(name, store.CANARY)
    if canary is None:
        raise DeployError(f"model {name!r} has no canary to promote (deploy a new version first)")
    champion = ms.get_alias(name, store.CHAMPION)
    _verified(ms, name, canary, "promote")
    t = Transition(
        "promote",
        name,
        canary,
        100,
        alias=store.CHAMPION,
        to=canary,
        expected=champion,
        reason=reason or "promote canary",
        then=ClearCanary("promoted", expected=canary),
    )
    kw = dict(mode=mode, namespace=namespace, cfg=cfg, cluster=cluster, dry_run=dry_run, image=image)
    return run_transition(t, ms, actor=actor, notify_config=notify_config, **kw)


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
    notify_config: str = "",
) -> Outcome:
    """Restores the previous champion from the history (100 % of traffic) and clears any canary.

    Arguments as for :func:`deploy`.

    Raises:
        DeployError: no current or earlier champion. store.AliasConflict: champion moved meanwhile.
    """
    ms = _open(store_uri, mode)
    current = ms.get_alias(name, store.CHAMPION)
    if current is None:
        raise DeployError(f"model {name!r} has no champion to roll back")
    previous = ms.previous_champion(name)
    if previous is None:
        raise DeployError(f"model {name!r}: no earlier champion than {current} in the history")
    _verified(ms, name, previous, "roll back to")
    t = Transition(
        "rollback",
        name,
        previous,
        100,
        alias=store.CHAMPION,
        to=previous,
        expected=current,
        reason=reason or f"rollback from {current}",
        then=ClearCanary("rollback"),  # whatever canary is set after the move
    )
    kw = dict(mode=mode, namespace=namespace, cfg=cfg, cluster=cluster, dry_run=dry_run, image=image)
    return run_transition(t, ms, actor=actor, notify_config=notify_config, **kw)


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
    notify_config: str = "",
) -> Outcome:
    """Rolls a canary back: the champion serves 100 % again (cluster: re-pinned, ``canaryTrafficPercent``
    100 on the champion's version), and the ``canary`` alias is cleared (compare-and-swap, audited as
    ``reject``). The champion alias does not move.

    Arguments as for :func:`deploy`.

    Raises:
        DeployError: there is no canary or no champion. store.AliasConflict: the canary moved meanwhile.
    """
    ms = _open(store_uri, mode)
    canary = ms.get_alias(name, store.CANARY)
    if canary is None:
        raise DeployError(f"model {name!r} has no canary to roll back")
    champion = ms.get_alias(name, store.CHAMPION)
    if champion is None:
        raise DeployError(f"model {name!r} has no champion to return the canary's traffic to")
    t = Transition(
        "reject",
        name,
        champion,
        100,
        alias=store.CANARY,
        to=None,
        expected=canary,
        reason=reason or "canary rolled back",
    )
    kw = dict(mode=mode, namespace=namespace, cfg=cfg, cluster=cluster, dry_run=dry_run, image=image)
    return run_transition(t, ms, actor=actor, notify_config=notify_config, **kw)
