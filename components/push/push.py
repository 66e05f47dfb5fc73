"""Push: publish the model to the store only when the evaluation blessed it.

kfp 2.13's local runner has no ``dsl.If``, so the gate lives here (as in TFX's Pusher): a model that is
not blessed is not published; the reasons are returned and recorded in the model's history
(``event: "rejected"``). The first blessed model becomes ``champion``; later ones become ``canary``, which
``kfloop promote`` (or the deploy step) moves to champion.

A version already in the store without an alias (``kfloop models publish``: a model trained elsewhere)
takes the same gate through :func:`push_version`: it needs a blessing of that very version (the evaluation
of its store directory as challenger) to become champion or canary.

The version's metadata records ``spec_sha256`` / ``schema_sha256`` of the ``spec.yaml`` / ``schema.pbtxt``
the model directory carries (:mod:`kfloop.contract`).
"""

from __future__ import annotations

import dataclasses

from kfloop import blessing as kblessing
from kfloop import contract, fs, layout, store
from kfloop import reference as kreference


class PushError(ValueError):
    """Bad push input (blessing file, model directory, store); the message names it."""


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What the push did.

    Attributes:
        pushed: Whether a version was published.
        version: The published version (None when not pushed).
        alias: ``champion`` or ``canary`` (None when not pushed).
        model_uri: URI of the published SavedModel (None when not pushed).
        reasons: Why not pushed: the failed blessing checks' messages (empty when pushed).
        champion: The champion after the push.
    """

    pushed: bool
    version: str | None
    alias: str | None
    model_uri: str | None
    reasons: tuple[str, ...]
    champion: str | None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "reasons": list(self.reasons)}

    def markdown(self, model_name: str, store_uri: str) -> str:
        if self.pushed:
            return (
                f"# Push: {model_name} {self.version} published\n\n"
                f"- store: `{store_uri}`\n- model: `{self.model_uri}`\n- alias: **{self.alias}**\n"
                f"- champion now: {self.champion}\n"
            )
        lines = "\n".join(f"- {r}" for r in self.reasons) or "- (no reason given)"
        return f"# Push: {model_name} NOT published (not blessed)\n\n{lines}\n\nchampion stays: {self.champion}\n"


def read_blessing(path: str) -> dict:
    """Reads the evaluation's blessing (contract: :func:`kfloop.blessing.read_blessing`).

    Raises:
        PushError: missing file, not JSON, ``blessed`` not a boolean, or a contract key missing.
    """
    try:
        return kblessing.read_blessing(path)
    except kblessing.BlessingError as e:
        raise PushError(str(e)) from None


def contract_hashes(model_dir: str) -> dict:
    """``spec_sha256`` / ``schema_sha256`` (and ``spec_name``) of the files a model directory carries
    (None for a file it lacks)."""
    out: dict = {"spec_sha256": None, "schema_sha256": None}
    if fs.exists(contract.spec_uri(model_dir)):
        out["spec_sha256"] = contract.sha256_of(contract.spec_uri(model_dir))
        try:
            out["spec_name"] = contract.read_spec(model_dir).name
        except ValueError as e:  # kfloop.spec.SpecError
            raise PushError(f"model {model_dir!r}: {e}") from None
    if fs.exists(contract.schema_uri(model_dir)):
        out["schema_sha256"] = contract.sha256_of(contract.schema_uri(model_dir))
    return out


def _failed_reasons(blessing: dict) -> tuple[str, ...]:
    out = []
    for r in blessing.get("reasons", []):
        if isinstance(r, dict) and r.get("passed") is False:
            out.append(str(r.get("message") or f"{r.get('metric')} on {r.get('slice')} failed"))
        elif isinstance(r, str):
            out.append(r)
    return tuple(out)


def push(
    model_dir: str,
    blessing_path: str,
    store_uri: str,
    model_name: str,
    metadata: dict | None = None,
    actor: str = "",
    reference_dir: str | None = None,
) -> PushResult:
    """Publishes ``model_dir`` when the blessing says blessed; otherwise records why and publishes nothing.

    Args:
        model_dir: The SavedModel directory (local or ``gs://``).
        blessing_path: The blessing JSON written by evaluate.
        store_uri: Model store root (local directory or ``gs://bucket/prefix``).
        model_name: Name of the model in the store.
        metadata: Facts kept with the version (data window, schema hash, run id, code version, ...);
            the blessing and its metrics are added.
        actor: Who pushes (default: the pipeline's user / ``$KFLOOP_ACTOR``).
        reference_dir: The monitoring reference (:func:`kfloop.reference.build_reference`), published
            with the version (the store's write-once artifact ``reference``, before the commit marker).

    Raises:
        PushError: unreadable blessing, or a reference folder without ``reference.json``.
        store.StoreError: bad model directory or name.
    """
    blessing = read_blessing(blessing_path)
    ms = store.ModelStore(store_uri)
    champion = ms.get_alias(model_name, store.CHAMPION)
    meta = dict(metadata or {})
    if not blessing["blessed"]:
        reasons = _failed_reasons(blessing) or ("the evaluation did not bless the model",)
        ms.record(
            model_name,
            "rejected",
            actor=actor,
            reasons=list(reasons),
            champion=champion,
            run_id=meta.get("run_id"),
            blessing=blessing,
        )
        return PushResult(False, None, None, None, reasons, champion)

    meta["blessing"] = blessing
    meta.setdefault("metrics", blessing.get("metrics", {}))
    meta.update(contract_hashes(model_dir))
    if reference_dir and not kreference.is_reference(reference_dir):
        raise PushError(f"reference {reference_dir!r} has no reference.json (not a monitoring reference)")
    # Idempotent per run id: a KFP retry of this task finds the version its first attempt published
    # (ModelStore.publish with the same run_id) and finishes the alias step instead of publishing again.
    version = ms.publish(
        model_name,
        model_dir,
        meta,
        actor=actor,
        run_id=meta.get("run_id") or None,
        artifacts={layout.REFERENCE: reference_dir} if reference_dir else None,
    )
    return _take_alias(ms, model_name, version, actor)


def _take_alias(ms: store.ModelStore, model_name: str, version: str, actor: str) -> PushResult:
    """A blessed version becomes champion (the first) or canary (later ones)."""
    champion = ms.get_alias(model_name, store.CHAMPION)
    if champion == version:  # a retried push that made this version champion already
        return PushResult(True, version, store.CHAMPION, ms.model_uri(model_name, version), (), champion)
    alias = store.CANARY
    if champion is None:
        try:
            ms.set_alias(
                model_name,
                store.CHAMPION,
                version,
                expected=None,
                reason="first blessed model",
                actor=actor,
                action="push",
            )
            alias = store.CHAMPION
        except store.AliasConflict:
            pass  # another push became the first champion meanwhile: this one is a canary
    if alias == store.CANARY and ms.get_alias(model_name, store.CANARY) != version:
        champion = ms.get_alias(model_name, store.CHAMPION)
        ms.set_alias(
            model_name,
            store.CANARY,
            version,
            reason=f"blessed challenger of champion {champion}",
            actor=actor,
            action="push",
        )
    return PushResult(
        True, version, alias, ms.model_uri(model_name, version), (), ms.get_alias(model_name, store.CHAMPION)
    )


def push_version(
    store_uri: str, model_name: str, version: str, blessing_path: str, actor: str = ""
) -> PushResult:
    """The push gate for a version already in the store (``kfloop models publish``): champion or canary
    only with a blessing of that version.

    The blessing must be the evaluation of this version's store directory as challenger
    (``blessing["model_uri"]`` is its ``model_uri``), so a blessing of another model cannot promote it.
    Not blessed: nothing changes and the refusal is recorded (``event: "rejected"``), as for :func:`push`.

    Raises:
        PushError: unreadable blessing, an unknown version, or a blessing of another model.
        store.StoreError: bad store or name.
    """
    blessing = read_blessing(blessing_path)
    ms = store.ModelStore(store_uri)
    if version not in ms.versions(model_name):
        raise PushError(f"version {version!r}: no committed version of {model_name!r} in {store_uri}")
    uri = ms.model_uri(model_name, version)
    judged = str(blessing.get("model_uri") or "")
    if judged.rstrip("/") != uri.rstrip("/"):
        raise PushError(
            f"blessing {blessing_path!r} judged model {judged or '(unknown)'!r}, not version {version} "
            f"({uri}): evaluate the version itself (kfloop evaluate --store ... --version {version})"
        )
    champion = ms.get_alias(model_name, store.CHAMPION)
    if not blessing["blessed"]:
        reasons = _failed_reasons(blessing) or ("the evaluation did not bless the model",)
        ms.record(
            model_name,
            "rejected",
            actor=actor,
            reasons=list(reasons),
            champion=champion,
            version=version,
            blessing=blessing,
        )
        return PushResult(False, None, None, None, reasons, champion)
    return _take_alias(ms, model_name, version, actor)


def notify_push(
    store_uri: str, model_name: str, result: PushResult, *, run_id: str = "", config: str = ""
) -> dict:
    """The push as a notification event: ``challenger.blessed`` (published, with its alias) or
    ``challenger.refused`` (with the blessing's failed checks). Never raises (:func:`kfloop.notify.emit`)."""
    from kfloop import clock
    from kfloop.notify.send import send

    if result.pushed:
        kind = "challenger.blessed"
        summary = f"{model_name} {result.version}: blessed and published as {result.alias}"
    else:
        kind, summary = (
            "challenger.refused",
            f"{model_name}: the challenger was not blessed; the champion stays",
        )
    return send(
        store_uri,
        config=config,
        type=kind,
        model=model_name,
        version=result.version,
        summary=summary,
        reasons=list(result.reasons),
        links={k: v for k, v in {"model": result.model_uri or "", "run": run_id}.items() if v},
        time=clock.iso(clock.utc_now()),
        details=result.to_dict(),
    )
