"""Decide: retrain or not, always with reasons, and with a cooldown against retraining storms.

Input is one monitoring summary (:func:`components.monitor.monitor.monitor`). Triggers:

* ``drift``: a feature's drift score above its threshold (features in ``drift_ignore`` never trigger);
* ``anomaly``: a blocking schema anomaly of the live data (``SERVING`` environment), if enabled;
* ``performance``: live AUC (where labels arrived) below ``min_live_auc``.

A window with no traffic, or fewer than ``min_examples`` predictions, is reported and never acted upon. When
triggers fire within ``cooldown_hours`` of the last decision that started a retraining, the decision is
``cooldown``: the reasons are kept, the retraining is not started.

Every decision is appended to the store as ``monitoring/<model>/decisions/<time>-<id>.json``.
"""

from __future__ import annotations

import datetime as dt
import html
import uuid

from kfloop import config, records
from kfloop.replay import iso_ms, parse_iso, utc_now

RETRAIN = "retrain"
NO_RETRAIN = "no_retrain"
COOLDOWN = "cooldown"
NO_TRAFFIC = "no_traffic"
TOO_FEW = "too_few"


def _reason(kind: str, feature: str, measure: str, value, threshold, message: str) -> dict:
    return {
        "kind": kind,
        "feature": feature,
        "measure": measure,
        "value": value,
        "threshold": threshold,
        "message": message,
    }


def triggers(summary: dict, cfg: config.MonitoringConfig) -> list[dict]:
    """The reasons to retrain found in one monitoring summary (empty: nothing crossed a threshold)."""
    out = []
    for s in summary.get("drift") or []:
        if s.get("exceeded") and not s.get("ignored") and s["feature"] not in cfg.drift_ignore:
            out.append(
                _reason(
                    "drift",
                    s["feature"],
                    s["measure"],
                    s["value"],
                    s["threshold"],
                    f"{s['feature']}: {s['measure']} {s['value']:.4f} > {s['threshold']}",
                )
            )
    if cfg.retrain_on_anomalies:
        for a in summary.get("anomalies") or []:
            if a.get("blocking"):
                out.append(
                    _reason(
                        "anomaly",
                        a["feature"],
                        a["type"],
                        a.get("short_description") or a.get("description", ""),
                        "schema (SERVING)",
                        f"{a['feature']}: {a['type']}: {a.get('description', '')}",
                    )
                )
    live_auc = summary.get("live_auc")
    if live_auc is not None and live_auc < cfg.min_live_auc:
        out.append(
            _reason(
                "performance",
                "(model)",
                "live_auc",
                live_auc,
                cfg.min_live_auc,
                f"live AUC {live_auc:.4f} < {cfg.min_live_auc} on {summary.get('labelled_rows')} labelled rows",
            )
        )
    return out


def last_retrain(decisions: list[dict]) -> dict | None:
    """The latest decision that started a retraining, or None."""
    started = [d for d in decisions if d.get("retrain")]
    return max(started, key=lambda d: d["decided_at"]) if started else None


def decide(
    summary: dict,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    *,
    history: list[dict] = (),
    now: dt.datetime | None = None,
) -> dict:
    """Decides whether a monitoring summary starts a retraining.

    Args:
        summary: One monitoring summary.
        cfg: Thresholds and the cooldown.
        history: Earlier decisions (:func:`read_decisions`), for the cooldown.
        now: Decision time (default: now, UTC).

    Returns:
        A JSON-ready decision: ``{"decision": retrain|no_retrain|cooldown|no_traffic|too_few,
        "retrain": bool, "reasons": [{"kind", "feature", "measure", "value", "threshold", "message"}],
        "cooldown_until": str|None, "decided_at", "window_start", "window_end", "monitor_run_id",
        "model_name", "summary": str}``. ``reasons`` always explains the outcome (for ``no_retrain``:
        the largest score of each kind against its threshold).
    """
    now = now or utc_now()
    base = {
        "decision_id": f"{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}",
        "decided_at": iso_ms(now),
        "model_name": summary.get("model_name"),
        "champion_version": summary.get("champion_version"),
        "window_start": summary.get("window_start"),
        "window_end": summary.get("window_end"),
        "monitor_run_id": summary.get("run_id"),
        "rows": summary.get("rows", 0),
        "cooldown_until": None,
        "retrain": False,
    }
    status = summary.get("status")
    if status == NO_TRAFFIC or not summary.get("rows"):
        reason = _reason("traffic", "(window)", "rows", 0, 1, "no traffic in the window: nothing to judge")
        return _finish(base, NO_TRAFFIC, [reason])
    found = triggers(summary, cfg)
    if status == TOO_FEW or summary["rows"] < cfg.min_examples:
        reason = _reason(
            "traffic",
            "(window)",
            "rows",
            summary["rows"],
            cfg.min_examples,
            f"only {summary['rows']} predictions (< {cfg.min_examples}): reported, not acted upon",
        )
        return _finish(base, TOO_FEW, [reason, *found])
    if not found:
        return _finish(base, NO_RETRAIN, _closest(summary, cfg))
    previous = last_retrain(list(history))
    if previous is not None:
        until = parse_iso(previous["decided_at"]) + dt.timedelta(hours=cfg.cooldown_hours)
        if now < until:
            base["cooldown_until"] = iso_ms(until)
            note = _reason(
                "cooldown",
                "(loop)",
                "hours_since_last_retrain",
                round((now - parse_iso(previous["decided_at"])).total_seconds() / 3600, 3),
                cfg.cooldown_hours,
                f"retraining {previous.get('decision_id')} started at {previous['decided_at']}; "
                f"no new retraining before {iso_ms(until)}",
            )
            return _finish(base, COOLDOWN, [note, *found])
    base["retrain"] = True
    return _finish(base, RETRAIN, found)


def _closest(summary: dict, cfg: config.MonitoringConfig) -> list[dict]:
    """For a no-retrain decision: the highest drift score per measure, and the live AUC, vs thresholds."""
    out = []
    best: dict[str, dict] = {}
    for s in summary.get("drift") or []:
        if s.get("value") is None or s["feature"] in cfg.drift_ignore:
            continue
        m = s["measure"]
        if m not in best or s["value"] > best[m]["value"]:
            best[m] = s
    for m, s in sorted(best.items()):
        out.append(
            _reason(
                "drift",
                s["feature"],
                m,
                s["value"],
                s["threshold"],
                f"highest {m}: {s['feature']} {s['value']:.4f} <= {s['threshold']}",
            )
        )
    if summary.get("live_auc") is not None:
        auc = summary["live_auc"]
        out.append(
            _reason(
                "performance",
                "(model)",
                "live_auc",
                auc,
                cfg.min_live_auc,
                f"live AUC {auc:.4f} >= {cfg.min_live_auc}",
            )
        )
    return out


def _finish(base: dict, decision: str, reasons: list[dict]) -> dict:
    out = dict(base, decision=decision, reasons=reasons)
    firing = [r for r in reasons if r["kind"] in ("drift", "anomaly", "performance")]
    if decision == RETRAIN:
        text = f"retrain: {len(firing)} trigger(s): " + "; ".join(r["message"] for r in firing)
    elif decision == COOLDOWN:
        text = f"no retrain (cooldown until {base['cooldown_until']}); triggers: " + "; ".join(
            r["message"] for r in firing
        )
    else:
        text = f"no retrain ({decision}): " + "; ".join(r["message"] for r in reasons)
    out["summary"] = text
    return out


def record_decision(store_uri: str, model_name: str, decision: dict) -> str:
    """Appends a decision to the store; returns its URI."""
    return records.write(store_uri, model_name, "decisions", decision["decision_id"], decision)


def read_decisions(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded decision, oldest first."""
    return records.read_all(store_uri, model_name, "decisions", sort_key=lambda d: d.get("decided_at", ""))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def to_markdown(decision: dict, summary: dict | None = None) -> str:
    """The decision as Markdown (KFP dashboard): outcome, reasons table, every feature's drift score."""
    lines = [
        f"# Decision: **{decision['decision'].upper()}**",
        "",
        f"Model `{decision.get('model_name')}` (champion `{decision.get('champion_version')}`), window "
        f"{decision.get('window_start')} .. {decision.get('window_end')}, {decision.get('rows', 0)} predictions.",
        "",
        decision["summary"],
        "",
        "| kind | feature | measure | value | threshold | |",
        "|---|---|---|---|---|---|",
    ]
    for r in decision["reasons"]:
        lines.append(
            f"| {r['kind']} | {r['feature']} | {r['measure']} | {_fmt(r['value'])} | {_fmt(r['threshold'])} "
            f"| {r['message']} |"
        )
    if summary and summary.get("drift"):
        lines += ["", "## Drift per feature (live vs champion's training data)", ""]
        lines += ["| feature | measure | score | threshold | crossed |", "|---|---|---|---|---|"]
        for s in summary["drift"]:
            flag = "ignored" if s.get("ignored") else ("**yes**" if s["exceeded"] else "no")
            lines.append(
                f"| {s['feature']} | {s['measure']} | {_fmt(s['value'])} | {s['threshold']} | {flag} |"
            )
    if summary and summary.get("live_auc") is not None:
        lines += ["", f"Live AUC: {summary['live_auc']:.4f} on {summary['labelled_rows']} labelled rows."]
    return "\n".join(lines) + "\n"


RED = ' style="color:#b00020"'


def to_html(decision: dict, summary: dict | None = None) -> str:
    """The decision as a small self-contained HTML page (KFP HTML visualization)."""
    e = html.escape
    color = {"retrain": "#b00020", "cooldown": "#a86b00"}.get(decision["decision"], "#1b5e20")
    rows = "".join(
        f"<tr><td>{e(r['kind'])}</td><td>{e(str(r['feature']))}</td><td>{e(str(r['measure']))}</td>"
        f"<td>{e(_fmt(r['value']))}</td><td>{e(_fmt(r['threshold']))}</td><td>{e(r['message'])}</td></tr>"
        for r in decision["reasons"]
    )
    drift = ""
    if summary and summary.get("drift"):
        body = "".join(
            f"<tr{RED if s['exceeded'] and not s.get('ignored') else ''}>"
            f"<td>{e(s['feature'])}</td><td>{e(s['measure'])}</td><td>{e(_fmt(s['value']))}</td>"
            f"<td>{s['threshold']}</td><td>{'ignored' if s.get('ignored') else ('yes' if s['exceeded'] else 'no')}</td></tr>"
            for s in summary["drift"]
        )
        drift = (
            "<h3>Drift per feature</h3><table><tr><th>feature</th><th>measure</th><th>score</th>"
            f"<th>threshold</th><th>crossed</th></tr>{body}</table>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><style>body{font-family:sans-serif}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style>"
        f"</head><body><h2 style='color:{color}'>Decision: {e(decision['decision'])}</h2>"
        f"<p>{e(decision['summary'])}</p><p>window {e(str(decision.get('window_start')))} .. "
        f"{e(str(decision.get('window_end')))}, {decision.get('rows', 0)} predictions</p>"
        "<table><tr><th>kind</th><th>feature</th><th>measure</th><th>value</th><th>threshold</th>"
        f"<th>message</th></tr>{rows}</table>{drift}</body></html>"
    )
