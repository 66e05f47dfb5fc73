"""The promotion policy of the canary step: ``auto`` promotes; ``approval`` asks a human first.

:func:`apply_policy` takes the verdict the evidence gave (:func:`components.canary.canary.judge`) and, under
the ``approval`` policy (:class:`kfloop.config.ApprovalConfig`), turns it into what the step does now:

* the evidence says promote and nobody was asked → record a request with the evidence
  (:func:`kfloop.approvals.request`), keep waiting (verdict ``awaiting_approval``);
* a request is pending → keep waiting;
* approved → promote, with the approver as the alias history's actor and their reason;
* rejected → roll back, the same way;
* expired (monitoring clock) → ``on_expiry``: keep the champion (roll the canary back) or promote.

A canary the evidence rolls back (unhealthy or worse) is rolled back whatever was approved: an approval
is of the evidence it was given, not of a canary shown to be worse since. Every applied request is closed
(:func:`kfloop.approvals.close`), so a late ``kfloop approve`` is refused instead of acting on another canary.
"""

from __future__ import annotations

import datetime as dt

from components.canary.verdict import PROMOTE, REJECT, WAIT
from kfloop import approvals, config
from kfloop.notify.events import CANARY_EVENTS

AWAITING = "awaiting_approval"
EXPIRED = "approval_expired"


def _reason(measure: str, value, message: str) -> dict:
    return {"kind": "approval", "measure": measure, "value": value, "threshold": None, "message": message}


def evidence(base: dict, verdict: str, reasons: list[dict]) -> dict:
    """What an approver is shown: the comparison (paired interval, rows), the verdict and its reasons."""
    keep = ("canary_version", "champion_version", "task", "window_start", "window_end", "rows", "labelled")
    return {
        **{k: base.get(k) for k in keep},
        "verdict": verdict,
        "comparison": base.get("comparison"),
        "reasons": [r["message"] for r in reasons],
    }


def apply_policy(
    store_uri: str,
    model_name: str,
    base: dict,
    action: str,
    verdict: str,
    reasons: list[dict],
    *,
    now: dt.datetime,
    cfg: config.ApprovalConfig,
) -> dict:
    """What the canary step does under the promotion policy.

    Returns:
        ``{"action", "verdict", "reasons", "actor", "reason", "approval"}``: ``actor`` / ``reason`` ("" =
        the step's own) go into the alias history; ``approval`` (None under ``auto`` with nothing recorded)
        holds ``state``, the request and decision, and ``created`` (the request was made by this run).
    """
    out = {
        "action": action,
        "verdict": verdict,
        "reasons": reasons,
        "actor": "",
        "reason": "",
        "approval": None,
    }
    canary = base.get("canary_version")
    if cfg.policy == "auto" or canary is None:
        return out
    st, req, dec = approvals.state(store_uri, model_name, canary, now)
    info = {"state": st, "request": req, "decision": dec, "created": False, "policy": cfg.policy}
    out["approval"] = info
    if action == REJECT:  # the evidence rolls it back: whatever was approved
        if req is not None:
            why = f"approval {st}, but the canary is rolled back on the evidence: {verdict}"
            out["reasons"] = [*reasons, _reason("state", st, why)]
        return out
    if st == approvals.NONE:
        if action != PROMOTE:
            return out
        req, created = approvals.request(
            store_uri,
            model_name,
            canary,
            champion=base.get("champion_version"),
            now=now,
            evidence=evidence(base, verdict, reasons),
            cfg=cfg,
        )
        info.update(state=approvals.PENDING, request=req, created=created)
        st = approvals.PENDING
    if st == approvals.PENDING:
        msg = (
            f"the evidence says promote ({verdict}); promotion waits for a human decision until "
            f"{req['expires_at']} (then: {req['on_expiry']}): kfloop approve|reject {model_name} {canary} "
            "--by WHO --reason TEXT"
        )
        if action != PROMOTE:
            msg = f"approval pending since {req['requested_at']} (the evidence now: {verdict})"
        out.update(action=WAIT, verdict=AWAITING, reasons=[*reasons, _reason("state", st, msg)])
    elif st in (approvals.APPROVED, approvals.REJECTED):
        verb = "approved" if st == approvals.APPROVED else "rejected"
        msg = f"{verb} by {dec['by']} at {dec['decided_at']}: {dec['reason']}"
        out.update(
            action=PROMOTE if st == approvals.APPROVED else REJECT,
            verdict=verb,
            reasons=[*reasons, _reason("decision", st, msg)],
            actor=dec["by"],
            reason=f"{verb} by {dec['by']}: {dec['reason']}",
        )
    elif st == approvals.EXPIRED:
        promote = req["on_expiry"] == "promote"
        msg = f"no decision by {req['expires_at']}: the approval expired; on expiry: " + (
            "promote the canary" if promote else "keep the champion (the canary is rolled back)"
        )
        out.update(
            action=PROMOTE if promote else REJECT,
            verdict=EXPIRED,
            reasons=[*reasons, _reason("expiry", req["expires_at"], msg)],
            actor="kfloop-canary (approval expired)",
            reason=msg,
        )
    return out


def close_applied(
    store_uri: str, model_name: str, result: dict, *, now: dt.datetime, verdict_id: str
) -> None:
    """Closes the request of a canary that was promoted or rolled back (the decision is spent)."""
    info = result.get("approval")
    if not info or info.get("request") is None or result["action"] not in (PROMOTE, REJECT):
        return
    outcome = approvals.EXPIRED if result["verdict"] == EXPIRED else result["action"]
    info["outcome"] = approvals.close(
        store_uri, model_name, info["request"]["version"], outcome=outcome, now=now, verdict_id=verdict_id
    )


def events(result: dict) -> list[tuple[str, str]]:
    """The notification events of a recorded verdict: ``[(type, summary), ...]``."""
    out = []
    info = result.get("approval") or {}
    who = f"{result['model_name']} {result.get('canary_version')}"
    if info.get("created"):
        req = info["request"]
        out.append(("approval.requested", f"{who}: promotion awaits approval until {req['expires_at']}"))
    if result["verdict"] in ("approved", "rejected"):
        dec = info["decision"]
        kind = "approval.given" if result["verdict"] == "approved" else "approval.rejected"
        out.append((kind, f"{who}: {result['verdict']} by {dec['by']}: {dec['reason']}"))
    if result["verdict"] == EXPIRED:
        out.append(("approval.expired", f"{who}: the approval expired ({info['request']['on_expiry']})"))
    kind = CANARY_EVENTS.get(result["action"])
    if kind and result["verdict"] != AWAITING:  # awaiting: approval.requested said it, once
        out.append((kind, f"{who}: {result['summary']}"))
    return out


def notify(store_uri: str, result: dict, *, config: str = "") -> list[dict]:
    """Emits the verdict's events (:func:`events`) to the configured channels; never raises."""
    from kfloop.notify.send import send

    links = {"record": result.get("record_uri", "")}
    sent = []
    for kind, summary in events(result):
        sent.append(
            send(
                store_uri,
                config=config,
                type=kind,
                model=result["model_name"],
                version=result.get("canary_version"),
                summary=" ".join(summary.split())[:500],
                reasons=[r["message"] for r in result["reasons"]],
                links={k: v for k, v in links.items() if v},
                time=result["decided_at"],
                details={"verdict_id": result["verdict_id"], "comparison": result.get("comparison")},
            )
        )
    return sent
