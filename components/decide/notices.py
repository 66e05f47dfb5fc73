"""What the decide step tells people and Prometheus: the decision as an event (``retrain.triggered``,
``retrain.held``), a monitoring gap as ``monitoring.stale``, and the run's metrics to a Pushgateway.

Every function here never raises: a channel or a gateway that fails is recorded (:mod:`kfloop.notify`,
:mod:`kfloop.ops_metrics`), never a failed step.
"""

from __future__ import annotations

from components.decide.decide import BACKOFF, COOLDOWN, RETRAIN
from kfloop import clock, layout, records
from kfloop.notify.events import CANARY_EVENTS

_EVENT = {RETRAIN: "retrain.triggered", COOLDOWN: "retrain.held", BACKOFF: "retrain.held"}


def notify_decision(store_uri: str, model_name: str, decision: dict, *, config: str = "") -> dict | None:
    """``retrain.triggered`` / ``retrain.held`` (cooldown or backoff) with the decision's reasons; other
    decisions send nothing."""
    kind = _EVENT.get(decision.get("decision"))
    if kind is None:
        return None
    from kfloop.notify.send import send

    return send(
        store_uri,
        config=config,
        type=kind,
        model=model_name,
        version=decision.get("champion_version"),
        summary=" ".join(f"{model_name}: {decision.get('summary', kind)}".split())[:500],
        reasons=[r["message"] for r in decision.get("reasons") or [] if isinstance(r.get("message"), str)],
        links={"record": layout.record(store_uri, model_name, layout.DECISIONS, decision["decision_id"])},
        time=decision["decided_at"],
        details={k: decision.get(k) for k in ("decision_id", "decision", "cooldown_until", "monitor_run_id")},
    )


def monitoring_gap_hours(store_uri: str, model_name: str, summary: dict) -> float | None:
    """Hours (wall clock, ``monitored_at``) between this monitoring run and the successful one before it
    (None: no earlier run)."""
    runs = records.read_all(
        store_uri, model_name, layout.RUNS, sort_key=lambda r: r.get("monitored_at") or ""
    )
    mine = summary.get("monitored_at")
    earlier = [r for r in runs if r.get("monitored_at") and mine and r["monitored_at"] < mine]
    earlier = [
        r for r in earlier if r.get("status", "ok") == "ok" and r.get("run_id") != summary.get("run_id")
    ]
    if not earlier or not mine:
        return None
    gap = clock.parse(mine) - clock.parse(earlier[-1]["monitored_at"])
    return gap.total_seconds() / 3600


def notify_stale(
    store_uri: str, model_name: str, summary: dict, *, stale_after_hours: float, config: str = ""
) -> dict | None:
    """``monitoring.stale`` when the previous successful run is older than ``stale_after_hours``: the
    schedule stopped (or failed) for that long. The alert rule ``KfloopMonitoringStale`` says it while
    nothing runs at all."""
    gap = monitoring_gap_hours(store_uri, model_name, summary)
    if gap is None or gap <= stale_after_hours:
        return None
    from kfloop.notify.send import send

    return send(
        store_uri,
        config=config,
        type="monitoring.stale",
        model=model_name,
        version=summary.get("champion_version"),
        summary=f"{model_name}: no successful monitoring run for {gap:.1f} h (limit {stale_after_hours:g} h)",
        reasons=[f"the previous successful run was {gap:.1f} h before this one"],
        links={"record": layout.record(store_uri, model_name, layout.RUNS, summary["run_id"])},
        time=summary["monitored_at"],
        details={"gap_hours": round(gap, 3), "stale_after_hours": stale_after_hours},
    )


def push_metrics(
    gateway: str, model_name: str, summary: dict, decision: dict, verdict: dict | None = None
) -> dict:
    """The run's drift scores, live metric, rows, decisions and success time to a Pushgateway
    (:func:`kfloop.ops_metrics.push_monitoring_metrics`; "" = ``$KFLOOP_PUSHGATEWAY``, unset: skipped).

    The run's decisions: the decide step's (``retrain``, ``cooldown``...) and the canary's as its event type
    (``canary.rolled_back``...: the alert rule ``KfloopCanaryRolledBack`` matches it).
    """
    from kfloop import ops_metrics

    decisions = [decision.get("decision")]
    action = (verdict or {}).get("action")
    kind = CANARY_EVENTS.get(action)
    if kind:
        decisions.append(kind)
    return ops_metrics.push_monitoring_metrics(
        gateway, model_name, summary, decision=[d for d in decisions if d]
    )
