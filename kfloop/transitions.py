"""One rollout transition, carried out: the step every deploy / promote / rollback / reject goes through.

The operations in :mod:`kfloop.deploy` read the store, check, and describe what they want as a
:class:`Transition` (which version serves at which traffic share, which alias moves from where to where, what
happens to ``canary`` after). :func:`run_transition` then does the same thing for all of them, in this order:

1. cluster mode: read the live ``InferenceService`` (``get``), refuse a canary KServe would ignore
   (RawDeployment) or one with nothing to split traffic with, render the desired object; local mode: refuse a
   canary in RawDeployment mode;
2. dry run: report what would happen, change nothing;
3. cluster mode: server-side apply and wait until Ready (:meth:`kfloop.kube.Cluster.apply`, which applies
   the previous spec again when the rollout does not get there), so no alias moves for a rollout that does
   not serve;
4. move the alias (audited compare-and-swap, recorded in the store's history under the transition's action),
   then clear ``canary`` when the transition says so. A second move that fails raises :class:`PartialApply`
   naming exactly what was applied; a canary another writer moved meanwhile is left, and said.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import dataclasses
import json

from kfloop import config, store
from kfloop.isvc import CanaryRefused, is_raw_deployment, render_inference_service
from kfloop.kube import Cluster, DeployError, RolloutUndone

MODES = ("local", "cluster")


class PartialApply(DeployError):
    """A multi-alias change stopped half-way; ``applied`` lists exactly the alias moves that were made."""

    def __init__(self, message: str, applied: list[str]):
        self.applied = list(applied)
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class ClearCanary:
    """Clearing the ``canary`` alias after a transition's move (compare-and-swap).

    Attributes:
        reason: History reason of the clear.
        expected: The canary as read before the move: it is cleared by compare-and-swap on that version
            without reading it again. None: it is read after the move and cleared when set.
        only_if: With that read, clear the canary only when it points at this version.
    """

    reason: str
    expected: str | None = None
    only_if: str | None = None


@dataclasses.dataclass(frozen=True)
class Transition:
    """What one deploy / promote / rollback / reject does, as decided from the store.

    Attributes:
        action: ``deploy``, ``promote``, ``rollback`` or ``reject`` (the outcome's and the history's action).
        name: Model name.
        serve: The version served afterwards: pinned by the InferenceService (cluster mode), reported as
            the outcome's ``version``.
        percent: Its traffic share (100 = all; 1..99 = a canary beside the live revision).
        alias: The alias moved.
        to: Where it moves (None: it is cleared).
        expected: Where it points now (the compare-and-swap's expectation, the outcome's ``previous``).
        reason: History reason of the move.
        then: What to do with ``canary`` after the move (None: leave it).
    """

    action: str
    name: str
    serve: str
    percent: int
    alias: str
    to: str | None
    expected: str | None
    reason: str
    then: ClearCanary | None = None


@dataclasses.dataclass
class Outcome:
    """What a deploy / promote / rollback did (or, with ``dry_run``, would do).

    Attributes:
        action: ``deploy``, ``promote``, ``rollback`` or ``reject``.
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


def outcome_json(out: Outcome) -> str:
    """An outcome as JSON (without the manifest)."""
    d = dataclasses.asdict(out)
    d.pop("manifest")
    return json.dumps(d, sort_keys=True)


def check_mode(mode: str) -> None:
    """Raises :class:`DeployError` for a mode other than ``local`` / ``cluster``."""
    if mode not in MODES:
        raise DeployError(f"mode {mode!r}: use one of {', '.join(MODES)}")


def run_transition(
    t: Transition,
    ms: store.ModelStore,
    *,
    mode: str = "local",
    namespace: str | None = None,
    cfg: config.DeployConfig = config.DeployConfig(),
    cluster: Cluster | None = None,
    dry_run: bool = False,
    image: str = config.SERVING_IMAGE,
    actor: str = "",
    notify_config: str = "",
) -> Outcome:
    """Carries out ``t`` (see the module docstring for the steps and their order).

    Args:
        t: The transition.
        ms: The model store its versions and aliases are in.
        mode: ``local`` (aliases only) or ``cluster`` (also apply the InferenceService).
        namespace: Kubernetes namespace (default ``cfg.namespace``).
        cfg: Deployment settings.
        cluster: Kubernetes access (default: from in-cluster config / kubeconfig; none for a dry run).
        dry_run: Render and report, change nothing.
        image: Predictor image.
        actor: Who (default: the OS user / ``$KFLOOP_ACTOR``).
        notify_config: Notification channels (:mod:`kfloop.notify`): an undone rollout is recorded in
            the store's history and sent as ``deploy.undone``.

    Raises:
        CanaryRefused: a canary in RawDeployment mode. PartialApply: a second alias move failed.
        DeployError, store.StoreError: anything else (nothing moved).
    """
    check_mode(mode)
    manifest = None
    if mode == "cluster":
        manifest, cluster = _desired(
            t, ms, cfg=cfg, namespace=namespace, cluster=cluster, dry_run=dry_run, image=image
        )
    elif 0 < t.percent < 100 and is_raw_deployment(cfg):
        raise CanaryRefused.raw(t.name)
    out = Outcome(t.action, mode, t.serve, t.alias, t.percent, t.expected, manifest, dry_run)
    if dry_run:
        return out
    if manifest is not None:
        try:
            cluster.apply(manifest)
        except RolloutUndone as e:
            _undone(ms, t, str(e), actor=actor, notify_config=notify_config)
            raise
    history = {"actor": actor, "action": t.action}
    _move(out, ms, t.name, t.alias, t.to, t.expected, reason=t.reason, **history)
    if t.then is not None:
        canary = t.then.expected
        if canary is None:
            canary = _alias_after(out, ms, t.name, store.CANARY)
        if canary is not None and t.then.only_if in (None, canary):
            _clear_canary(out, ms, t.name, canary, reason=t.then.reason, **history)
    return out


def _undone(ms: store.ModelStore, t: Transition, error: str, *, actor: str, notify_config: str) -> None:
    """An undone rollout on the record: a history record and a ``deploy.undone`` event (never raises)."""
    from kfloop import clock
    from kfloop.notify.send import send

    try:
        rec = ms.record(
            t.name, "rollout_undone", action=t.action, version=t.serve, error=error[:1000], actor=actor
        )
    except Exception:  # the error is what matters; the record is best effort
        rec = {"time": clock.iso(clock.utc_now())}
    send(
        ms.root,
        config=notify_config,
        type="deploy.undone",
        model=t.name,
        version=t.serve,
        summary=f"{t.name} {t.serve}: the {t.action} rollout did not become Ready and was undone",
        reasons=[" ".join(error.split())[:500]],
        time=rec.get("time") or clock.iso(clock.utc_now()),
        details={"action": t.action, "percent": t.percent},
    )


def _desired(t, ms, *, cfg, namespace, cluster, dry_run, image) -> tuple[dict, Cluster | None]:
    """The InferenceService ``t`` rolls out, after the checks against the live one (and the cluster)."""
    ns = namespace or cfg.namespace
    live = None
    if cluster is None and not dry_run:
        cluster = Cluster(ready_timeout_s=cfg.ready_timeout_s, poll_s=cfg.ready_poll_s)
    if cluster is not None:
        live = cluster.get_isvc(ns, t.name)
    canary = 0 < t.percent < 100
    if canary and is_raw_deployment(cfg, live):
        raise CanaryRefused.raw(t.name)
    if live is None and canary:
        raise DeployError(
            f"InferenceService {ns}/{t.name} does not exist yet: a canary needs a running version to split "
            "traffic with; deploy the champion first (--canary-percent 0)"
        )
    manifest = render_inference_service(
        t.name, ms.root, t.serve, cfg=cfg, namespace=ns, canary_percent=t.percent, image=image
    )
    return manifest, cluster


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
