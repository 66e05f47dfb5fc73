"""Human approval of a promotion: the pending request, the decision and its expiry.

Under the ``approval`` policy (:class:`kfloop.config.ApprovalConfig`) the canary step does not move
``champion`` itself. When its verdict says promote it records a **request** with the evidence (the paired
interval, rows, blessing, drift) at ``approvals/<model>/<version>/request.json`` (:func:`kfloop.layout.approval`)
and notifies. ``kfloop approve|reject MODEL VERSION --by WHO --reason TEXT`` writes the **decision** beside it,
write-once (a second decision is refused, naming the first). The next monitoring run's canary step reads
both (:func:`state`) and applies the decision through the same deploy path as an automatic promotion, with
the approver and reason in the alias history. A request with no decision after ``expiry_hours`` (monitoring
clock) has expired and ``on_expiry`` decides.

On a cluster, who may approve is who may write the ``approvals/`` prefix of the bucket.
"""

from __future__ import annotations

import datetime as dt
import json

from kfloop import clock, config, fs, layout, store

PENDING, APPROVED, REJECTED, EXPIRED, NONE = "pending", "approved", "rejected", "expired", "none"
REQUEST, DECISION, OUTCOME = "request", "decision", "outcome"


class ApprovalError(ValueError):
    """A decision that cannot be recorded (no request, already decided, no approver); the message says why."""


def _read(uri: str) -> dict | None:
    try:
        return json.loads(fs.read_text(uri))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ApprovalError(f"{uri}: not a valid approval record ({e})") from None


def read_request(store_uri: str, model: str, version: str) -> dict | None:
    """The pending-approval request of ``version`` (None: none was made)."""
    return _read(layout.approval(store_uri, store.check_model_name(model), version, REQUEST))


def read_decision(store_uri: str, model: str, version: str) -> dict | None:
    """The recorded decision on ``version``'s request (None: not decided)."""
    return _read(layout.approval(store_uri, store.check_model_name(model), version, DECISION))


def read_outcome(store_uri: str, model: str, version: str) -> dict | None:
    """How the canary step closed ``version``'s request (None: still open)."""
    return _read(layout.approval(store_uri, store.check_model_name(model), version, OUTCOME))


def close(
    store_uri: str, model: str, version: str, *, outcome: str, now: dt.datetime, verdict_id: str
) -> dict:
    """Records that the canary step applied a decision (or an expiry): the request is closed for good."""
    uri = layout.approval(store_uri, store.check_model_name(model), version, OUTCOME)
    rec = {"version": version, "outcome": outcome, "closed_at": clock.iso(now), "verdict_id": verdict_id}
    try:
        fs.write_text(uri, json.dumps(rec, indent=1, sort_keys=True), if_generation_match=0)
    except FileExistsError:
        return read_outcome(store_uri, model, version) or rec
    return rec


def expires_at(request: dict) -> dt.datetime:
    """When a request expires (monitoring clock)."""
    return clock.parse(request["expires_at"])


def request(
    store_uri: str,
    model: str,
    version: str,
    *,
    champion: str | None,
    now: dt.datetime,
    evidence: dict,
    cfg: config.ApprovalConfig,
) -> tuple[dict, bool]:
    """Records that promoting ``version`` over ``champion`` waits for a human (once: a request already there
    is kept, with its first evidence and expiry).

    Returns:
        ``(request, created)``.
    """
    uri = layout.approval(store_uri, store.check_model_name(model), version, REQUEST)
    old = _read(uri)
    if old is not None:
        return old, False
    rec = {
        "model_name": model,
        "version": version,
        "champion_version": champion,
        "requested_at": clock.iso(now),
        "expires_at": clock.iso(now + dt.timedelta(hours=cfg.expiry_hours)),
        "on_expiry": cfg.on_expiry,
        "evidence": evidence,
        "uri": uri,
    }
    try:
        fs.write_text(uri, json.dumps(rec, indent=1, sort_keys=True), if_generation_match=0)
    except FileExistsError:  # another run made it first: that one stands
        return _read(uri) or rec, False
    return rec, True


def decide(
    store_uri: str,
    model: str,
    version: str,
    *,
    approve: bool,
    by: str,
    reason: str,
    now: dt.datetime | None = None,
) -> dict:
    """Records a human decision on ``version``'s pending request (write-once).

    Raises:
        ApprovalError: no approver, no reason, no request for that version, or a decision already recorded.
    """
    if not by.strip():
        raise ApprovalError(
            "--by: say who decides (a name or e-mail address; it goes into the alias history)"
        )
    if not reason.strip():
        raise ApprovalError("--reason: say why (it goes into the alias history)")
    req = read_request(store_uri, model, version)
    if req is None:
        pending = [r["version"] for r in list_requests(store_uri, model) if r.get("state") == PENDING]
        hint = f"pending: {', '.join(pending)}" if pending else "no approval is pending for this model"
        raise ApprovalError(f"model {model!r} version {version!r} has no approval request ({hint})")
    first = read_decision(store_uri, model, version)
    if first is not None:
        raise ApprovalError(
            f"model {model!r} version {version!r} was already {first['decision']} by {first['by']} at "
            f"{first['decided_at']}: a decision is final"
        )
    closed = read_outcome(store_uri, model, version)
    if closed is not None:
        raise ApprovalError(
            f"model {model!r} version {version!r}: the request is closed ({closed['outcome']} at "
            f"{closed['closed_at']}, monitoring clock): nothing to decide"
        )
    uri = layout.approval(store_uri, model, version, DECISION)
    rec = {
        "model_name": model,
        "version": version,
        "decision": APPROVED if approve else REJECTED,
        "by": by.strip(),
        "reason": reason.strip(),
        "decided_at": clock.iso(now or clock.utc_now()),
        "requested_at": req["requested_at"],
        "uri": uri,
    }
    try:
        fs.write_text(uri, json.dumps(rec, indent=1, sort_keys=True), if_generation_match=0)
    except FileExistsError:
        first = read_decision(store_uri, model, version) or {}
        raise ApprovalError(
            f"model {model!r} version {version!r} was already {first.get('decision', 'decided')} by "
            f"{first.get('by', '?')} at {first.get('decided_at', '?')}: a decision is final"
        ) from None
    return rec


def state(
    store_uri: str, model: str, version: str, now: dt.datetime | None = None
) -> tuple[str, dict | None, dict | None]:
    """Where ``version``'s approval stands: ``(state, request, decision)``.

    ``state`` is :data:`NONE` (no request), :data:`PENDING`, :data:`APPROVED`, :data:`REJECTED` or
    :data:`EXPIRED` (a request without a decision past its expiry at ``now``, the monitoring clock; None:
    expiry is not judged). A decision recorded before the run that reads it applies even past the expiry;
    once the canary step closed the request (:func:`close`), its outcome is the state.
    """
    req = read_request(store_uri, model, version)
    if req is None:
        return NONE, None, None
    dec = read_decision(store_uri, model, version)
    closed = read_outcome(store_uri, model, version)
    if closed is not None and closed["outcome"] == EXPIRED:
        return EXPIRED, req, dec
    if dec is not None:
        return dec["decision"], req, dec
    if now is not None and now >= expires_at(req):
        return EXPIRED, req, None
    return PENDING, req, None


def list_requests(store_uri: str, model: str, now: dt.datetime | None = None) -> list[dict]:
    """Every approval request of ``model``, oldest first, each with its ``state``, ``decision`` and
    ``outcome`` (expiry judged at ``now``; None: not judged)."""
    root = fs.join(store_uri, layout.APPROVALS, store.check_model_name(model))
    out = []
    for uri in fs.list_files(root):
        if not uri.endswith(f"/{REQUEST}.json"):
            continue
        try:
            req = json.loads(fs.read_text(uri))
        except ValueError:
            continue
        st, _, dec = state(store_uri, model, req["version"], now)
        out.append(dict(req, state=st, decision=dec, outcome=read_outcome(store_uri, model, req["version"])))
    return sorted(out, key=lambda r: r.get("requested_at", ""))
