"""Decide: retrain or not, always with reasons, and with a cooldown against retraining storms.

Input is one monitoring summary (:func:`components.monitor.monitor.monitor`). Triggers:

* ``drift``: a feature's drift score above its threshold (thresholds and modes from the model's dataset spec:
  a feature whose drift mode is ``record`` is marked ``ignored`` by the monitor and never triggers, an
  ``off`` one is not in the summary);
* ``anomaly``: a blocking schema anomaly of the live data (``SERVING`` environment), if enabled;
* ``performance``: the task's live metric (where labels arrived) against its rule: binary live AUC below
  ``min_live_auc``; regression and multiclass as the monitor judged them (its ``performance``: live RMSE
  above the champion's eval RMSE x (1 + ``max_live_rmse_increase``), live accuracy below the champion's
  eval accuracy - ``max_live_accuracy_drop``); the reason carries the metric's name and ``units``;
* ``drift`` of the model output (feature ``(output)``), when the monitor's ``output_drift`` crossed its
  threshold and its mode is ``trigger`` (``record``, the default, reports it only).

A window with no traffic, or fewer than ``min_examples`` predictions, is reported and never acted upon. When
triggers fire within ``cooldown_hours`` of the last decision that started a retraining, the decision is
``cooldown``: the reasons are kept, the retraining is not started. All times are the monitoring clock
(:mod:`kfloop.clock`, passed as ``now``): the replayed data's time in the replay, the scheduler's on a cluster.

Decisions remember outcomes (:func:`outcomes`, from the model's history in the store: a challenger
rejected by evaluation, a canary promoted or rolled back). While a canary is still being judged
(``canary_pending``), no new retraining starts. When the same drift persists, the last challenger(s)
retrained for it were rejected and no new data arrived since (fewer than ``new_data_rows`` labelled live
rows), the decision is ``backoff``: the wait grows as ``cooldown_hours * backoff_factor^k`` (k = rejections
in a row, at most ``max_backoff_hours``), stated in the reasons.

Every decision is appended to the store as ``monitoring/<model>/decisions/<time>-<id>.json``.
"""

from __future__ import annotations

import datetime as dt
import html
import uuid

from kfloop import clock, config, layout, records

RETRAIN = "retrain"
NO_RETRAIN = "no_retrain"
COOLDOWN = "cooldown"
NO_TRAFFIC = "no_traffic"
TOO_FEW = "too_few"
BACKOFF = "backoff"
CANARY_PENDING = "canary_pending"
CHAMPION_CHANGED = "champion_changed"
#: Outcome kinds of a retraining (see :func:`outcomes`).
REJECTED_BY_EVALUATION = "rejected_by_evaluation"
REJECTED_BY_CANARY = "rejected_by_canary"
PROMOTED = "promoted"
CANARY_STARTED = "canary_started"


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
        if s.get("exceeded") and not s.get("ignored"):
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
    od = summary.get("output_drift") or {}
    if od.get("exceeded") and not od.get("ignored"):
        out.append(
            _reason("drift", "(output)", od["measure"], od["value"], od["threshold"], od.get("message", ""))
        )
    task = summary.get("task") or "binary"
    if task != "binary":
        perf = summary.get("performance") or {}
        if perf.get("exceeded"):
            out.append(_performance(perf))
        return out
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


def _performance(perf: dict) -> dict:
    """The reason of a regression / multiclass ``performance`` record (metric name and units kept)."""
    r = _reason(
        "performance",
        "(model)",
        f"live_{perf['metric']}",
        perf["value"],
        perf["threshold"],
        perf["message"],
    )
    r["units"] = perf.get("units")
    return r


def last_retrain(decisions: list[dict]) -> dict | None:
    """The latest decision that started a retraining, or None."""
    started = [d for d in decisions if d.get("retrain")]
    return max(started, key=lambda d: d["decided_at"]) if started else None


def outcomes(model_history: list[dict]) -> list[dict]:
    """What became of retrained challengers, in order, from the model's history in the store.

    Returns:
        ``[{"kind", "version", "reason", "time"}]`` with kind ``rejected_by_evaluation`` (push refused an
        unblessed model), ``canary_started``, ``promoted`` or ``rejected_by_canary``.
    """
    out = []
    for rec in model_history:
        kind = None
        if rec.get("event") == "rejected":
            kind, version = REJECTED_BY_EVALUATION, None
            reason = "; ".join(rec.get("reasons") or [])
        elif rec.get("event") == "alias" and rec.get("outcome") == "success":
            alias, action = rec.get("alias"), rec.get("action")
            version, reason = rec.get("to") or rec.get("from"), rec.get("reason", "")
            if alias == "canary" and rec.get("to") and action in ("push", "deploy"):
                kind = CANARY_STARTED
            elif alias == "champion" and action == "promote":
                kind = PROMOTED
            elif alias == "canary" and action == "reject":
                kind = REJECTED_BY_CANARY
        if kind:
            out.append({"kind": kind, "version": version, "reason": reason, "time": rec.get("time")})
    return out


def _retrain_outcome(found: list[dict]) -> dict | None:
    """The terminal outcome among the outcomes that followed one retraining (None: none yet)."""
    for o in found:
        if o["kind"] in (REJECTED_BY_EVALUATION, REJECTED_BY_CANARY, PROMOTED):
            return o
    return None


def rejection_streak(decisions: list[dict], known: list[dict]) -> tuple[int, dict | None]:
    """Consecutive latest retrainings whose challenger was rejected, and the latest such outcome."""
    started = [d for d in decisions if d.get("retrain")]
    streak, last = 0, None
    for i in range(len(started) - 1, -1, -1):
        lo = started[i].get("outcomes_seen", 0)
        hi = started[i + 1].get("outcomes_seen", len(known)) if i + 1 < len(started) else len(known)
        o = _retrain_outcome(known[lo:hi])
        if o is None or o["kind"] == PROMOTED:
            break
        streak += 1
        last = last or o
    return streak, last


def decide(
    summary: dict,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    *,
    history: list[dict] = (),
    now: dt.datetime,
    known_outcomes: list[dict] = (),
    canary: dict | None = None,
) -> dict:
    """Decides whether a monitoring summary starts a retraining.

    Args:
        summary: One monitoring summary.
        cfg: Thresholds, the cooldown and the backoff.
        history: Earlier decisions (:func:`read_decisions`), for the cooldown and the backoff.
        now: The monitoring clock (:func:`kfloop.clock.resolve`); never read here.
        known_outcomes: :func:`outcomes` of the model's history (what became of earlier challengers).
        canary: This run's canary verdict (``components.canary``), if any.

    Returns:
        A JSON-ready decision: ``{"decision": retrain|no_retrain|cooldown|no_traffic|too_few,
        "retrain": bool, "reasons": [{"kind", "feature", "measure", "value", "threshold", "message"}],
        "cooldown_until": str|None, "decided_at", "window_start", "window_end", "monitor_run_id",
        "model_name", "summary": str}``. ``reasons`` always explains the outcome (for ``no_retrain``:
        the largest score of each kind against its threshold).
    """
    known_outcomes = list(known_outcomes)
    base = {
        "decision_id": f"{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}",
        "decided_at": clock.iso(now),
        "model_name": summary.get("model_name"),
        "champion_version": summary.get("champion_version"),
        "window_start": summary.get("window_start"),
        "window_end": summary.get("window_end"),
        "monitor_run_id": summary.get("run_id"),
        "rows": summary.get("rows", 0),
        "cooldown_until": None,
        "retrain": False,
        "labelled_rows": summary.get("labelled_rows", 0),
        "label_provenance": summary.get("label_provenance"),  # where the live metric's labels came from
        "task": summary.get("task") or "binary",
        "live_metrics": summary.get("live_metrics"),
        "outcomes_seen": len(known_outcomes),
    }
    history = list(history)
    streak, rejected = rejection_streak(history, known_outcomes)
    notes = []
    if rejected is not None:
        notes.append(
            _reason(
                "outcome",
                "(loop)",
                rejected["kind"],
                rejected.get("version"),
                None,
                f"the last retraining changed nothing: its challenger {rejected.get('version') or ''} was "
                f"{rejected['kind'].replace('_', ' ')} ({rejected.get('reason', '')[:300]}); the champion stays",
            )
        )
    base["rejections_in_a_row"] = streak
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
        return _finish(base, NO_RETRAIN, _closest(summary, cfg) + notes)
    if canary is not None and canary.get("action") == "promote":
        note = _reason(
            "canary",
            "(loop)",
            "promoted",
            canary.get("canary_version"),
            None,
            f"canary {canary.get('canary_version')} was just promoted ({canary.get('summary', '')[:300]}): "
            "this window was scored against the previous champion's data; the next one is judged against "
            "the new champion's",
        )
        return _finish(base, CHAMPION_CHANGED, [note, *found])
    if canary is not None and canary.get("action") == "wait":
        note = _reason(
            "canary",
            "(loop)",
            "pending",
            canary.get("canary_version"),
            None,
            f"canary {canary.get('canary_version')} is still being judged ({canary.get('summary', '')[:300]}): "
            "no new retraining until its verdict",
        )
        return _finish(base, CANARY_PENDING, [note, *found])
    previous = last_retrain(history)
    if previous is not None and streak:
        same = {r["feature"] for r in found} & {
            r["feature"]
            for r in previous.get("reasons", [])
            if r.get("kind") in ("drift", "anomaly", "performance")
        }
        later = [d for d in history if d.get("decided_at", "") > previous["decided_at"]]
        new_rows = sum(int(d.get("labelled_rows") or 0) for d in later) + int(
            summary.get("labelled_rows") or 0
        )
        if same and new_rows < cfg.new_data_rows:
            wait = min(cfg.cooldown_hours * cfg.backoff_factor**streak, cfg.max_backoff_hours)
            until = clock.parse(previous["decided_at"]) + dt.timedelta(hours=wait)
            if now < until:
                base["cooldown_until"] = clock.iso(until)
                note = _reason(
                    "backoff",
                    "(loop)",
                    "wait_hours",
                    round(wait, 3),
                    cfg.max_backoff_hours,
                    f"the same drift ({', '.join(sorted(same))}) persists, the last {streak} challenger(s) "
                    f"retrained for it were rejected and only {new_rows} new labelled rows arrived since "
                    f"(< {cfg.new_data_rows}): waiting {wait:g} h (cooldown {cfg.cooldown_hours:g} h x "
                    f"{cfg.backoff_factor:g}^{streak}) after {previous['decided_at']}, until {clock.iso(until)}",
                )
                return _finish(base, BACKOFF, [note, *notes, *found])
    if previous is not None:
        until = clock.parse(previous["decided_at"]) + dt.timedelta(hours=cfg.cooldown_hours)
        if now < until:
            base["cooldown_until"] = clock.iso(until)
            note = _reason(
                "cooldown",
                "(loop)",
                "hours_since_last_retrain",
                round((now - clock.parse(previous["decided_at"])).total_seconds() / 3600, 3),
                cfg.cooldown_hours,
                f"retraining {previous.get('decision_id')} started at {previous['decided_at']}; "
                f"no new retraining before {clock.iso(until)}",
            )
            return _finish(base, COOLDOWN, [note, *notes, *found])
    base["retrain"] = True
    return _finish(base, RETRAIN, found + notes)


def _closest(summary: dict, cfg: config.MonitoringConfig) -> list[dict]:
    """For a no-retrain decision: the highest drift score per measure, and the live AUC, vs thresholds."""
    out = []
    best: dict[str, dict] = {}
    for s in summary.get("drift") or []:
        if s.get("value") is None or s.get("ignored"):
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
    perf = summary.get("performance") or {}
    if (summary.get("task") or "binary") != "binary":
        if perf.get("value") is not None:
            out.append(_performance(perf))
    elif summary.get("live_auc") is not None:
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
    elif decision in (COOLDOWN, BACKOFF):
        text = f"no retrain ({decision} until {base['cooldown_until']}); triggers: " + "; ".join(
            r["message"] for r in firing
        )
    elif decision in (CANARY_PENDING, CHAMPION_CHANGED):
        text = f"no retrain ({decision.replace('_', ' ')}); triggers: " + "; ".join(
            r["message"] for r in firing
        )
    else:
        text = f"no retrain ({decision}): " + "; ".join(r["message"] for r in reasons)
    out["summary"] = text
    return out


def record_decision(store_uri: str, model_name: str, decision: dict) -> str:
    """Appends a decision to the store; returns its URI."""
    return records.write(store_uri, model_name, layout.DECISIONS, decision["decision_id"], decision)


def read_decisions(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded decision, oldest first."""
    return records.read_all(
        store_uri, model_name, layout.DECISIONS, sort_key=lambda d: d.get("decided_at", "")
    )


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
    perf = (summary or {}).get("performance") or {}
    if perf and perf.get("task") != "binary":
        lines += ["", f"Performance ({perf['rule']}): {perf['message']}."]
    od = (summary or {}).get("output_drift") or {}
    if od:
        lines += ["", f"Output drift: {od.get('message')}."]
    return "\n".join(lines) + "\n"


RED = ' style="color:#b00020"'


def to_html(decision: dict, summary: dict | None = None) -> str:
    """The decision as a small self-contained HTML page (KFP HTML visualization)."""
    e = html.escape
    color = {"retrain": "#b00020", "cooldown": "#a86b00", "backoff": "#a86b00"}.get(
        decision["decision"], "#1b5e20"
    )
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
