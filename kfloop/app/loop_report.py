"""The loop report: one self-contained HTML file (inline CSS and SVG charts, no script, no network).

Sections: the timeline of steps, drift score per feature over the monitoring windows (with thresholds),
metrics per model version, every decision with its reasons, every alias change of the store's history.
"""

from __future__ import annotations

import html
import json

_E = html.escape
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def line_chart(
    series: dict[str, list[float]],
    labels: list[str],
    *,
    threshold: float | None = None,
    width: int = 330,
    height: int = 150,
    title: str = "",
    y_max: float | None = None,
) -> str:
    """An inline SVG line chart: one line per series over the x ``labels``, a dashed threshold line."""
    pad_l, pad_r, pad_t, pad_b = 38, 8, 18, 22
    values = [v for vs in series.values() for v in vs if v is not None]
    top = max([*values, threshold or 0.0, 1e-6]) * 1.15 if y_max is None else y_max
    n = max(len(labels), 1)
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def x(i: int) -> float:
        return pad_l + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v: float) -> float:
        return pad_t + h - h * min(v, top) / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{pad_l}" y="12" font-size="11" font-weight="bold">{_E(title)}</text>',
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#999"/>',
        f'<text x="{pad_l - 3}" y="{pad_t + 4}" font-size="9" text-anchor="end">{top:.3g}</text>',
        f'<text x="{pad_l - 3}" y="{pad_t + h}" font-size="9" text-anchor="end">0</text>',
    ]
    for i, lab in enumerate(labels):
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        short = lab.split(" (")[0]
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 6}" font-size="9" text-anchor="{anchor}">{_E(short)}</text>'
        )
    if threshold is not None:
        ty = y(threshold)
        parts.append(
            f'<line x1="{pad_l}" y1="{ty:.1f}" x2="{pad_l + w}" y2="{ty:.1f}" stroke="#b00020" '
            'stroke-dasharray="4 3"><title>threshold</title></line>'
        )
    for k, (name, vs) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        pts = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for (px, py), v in zip(pts, [v for v in vs if v is not None], strict=True):
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"><title>{_E(name)}: {v:.4f}</title></circle>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_E(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:13px} td,th{border:1px solid #ccc;padding:3px 7px;
vertical-align:top} th{background:#f4f4f4} .retrain{color:#b00020;font-weight:bold}
.cooldown{color:#a86b00;font-weight:bold} .ok{color:#1b5e20} .charts{display:flex;flex-wrap:wrap;gap:8px}
.muted{color:#666;font-size:12px} .badge{padding:1px 6px;border-radius:8px;background:#eee}
"""


def tally(loop: dict) -> dict:
    """Retrainings, promotions and rejections of a loop record, and for each one the comparison that
    decided it (the evaluation's paired change check, or the canary step's live comparison).

    Returns:
        ``{"retrainings", "promotions", "rejections", "pending", "outcomes": [{"version", "outcome",
        "decided_by", "comparison"}]}``.
    """
    decisions = [w.get("decision") or {} for w in loop.get("windows", [])]
    out = {"retrainings": sum(1 for d in decisions if d.get("retrain")), "promotions": 0, "rejections": 0}
    out["pending"] = 0
    rows = []
    verdicts = {
        c.get("canary_version"): c
        for c in loop.get("canaries", [])
        if c.get("action") in ("promote", "reject")
    }
    for i, m in enumerate(loop.get("models", [])):
        if i == 0 and not m.get("champion_before"):
            continue  # the first champion: no comparison
        v = m.get("version")
        if not m.get("blessed"):
            out["rejections"] += 1
            rows.append(
                {
                    "version": v or "(not pushed)",
                    "outcome": "rejected",
                    "decided_by": "evaluation (paired comparison on the eval rows)",
                    "comparison": "; ".join(m.get("failed_reasons") or m.get("reasons") or []),
                }
            )
        elif v in verdicts:
            c = verdicts[v]
            promoted = c["action"] == "promote"
            out["promotions" if promoted else "rejections"] += 1
            rows.append(
                {
                    "version": v,
                    "outcome": "promoted" if promoted else "rolled back",
                    "decided_by": "canary step (live traffic)"
                    + (f", after evaluation: {m['eval_comparison']}" if m.get("eval_comparison") else ""),
                    "comparison": c.get("summary", ""),
                }
            )
        else:
            out["pending"] += 1
            rows.append(
                {
                    "version": v,
                    "outcome": "canary still waiting at the end of the replay",
                    "decided_by": "evaluation passed it to the canary: " + (m.get("eval_comparison") or ""),
                    "comparison": m.get("canary") or "not judged yet: no live traffic since its push",
                }
            )
    out["outcomes"] = rows
    return out


#: Per task: the live / eval metric the report shows, its label and units, and the chart's top.
_TASK_METRIC = {
    "binary": ("auc", "AUC", "", 1.0),
    "regression": ("rmse", "RMSE", " (label units)", None),
    "multiclass": ("accuracy", "accuracy", " (fraction of rows)", 1.0),
}
_CMP_NAMES = {"auc": "AUC", "mse": "MSE", "log_loss": "log loss"}


def _task(loop: dict) -> str:
    """The loop's task: its spec's, else its first monitoring summary's, else binary."""
    task = (loop.get("spec") or {}).get("task")
    for w in loop.get("windows", []):
        task = task or (w.get("summary") or {}).get("task")
    return task if task in _TASK_METRIC else "binary"


def _eval_value(m: dict, key: str, metric: str):
    """A model record's eval value of the task's metric (binary: its ``eval_auc`` fields)."""
    if metric == "auc":
        return m.get(key)
    return (m.get("eval_metrics" if key == "eval_auc" else "champion_eval_metrics") or {}).get(metric)


def _output_drift(window: dict) -> dict | None:
    """A window's output drift (the monitor's ``output_drift``) when it was computed, else None."""
    od = (window.get("summary") or {}).get("output_drift") or {}
    return od if od.get("available") else None


def _output_cell(od: dict | None) -> str:
    """The output drift of one window as a table cell: value, threshold, and whether it triggers."""
    if not od or od.get("value") is None:
        return "–"
    crossed = ">" if od.get("exceeded") else "<="
    mode = " (recorded only)" if od.get("ignored") else (" (trigger)" if od.get("exceeded") else "")
    return f"{od['value']:.3f} {crossed} {od.get('threshold')}{mode}"


def _title(loop: dict) -> str:
    """What the loop ran on, from its dataset spec: ``<name>: <description>`` (the name alone without one)."""
    spec = loop.get("spec") or {}
    name = spec.get("name") or loop.get("model_name") or "a dataset"
    return f"{name}: {spec['description']}" if spec.get("description") else str(name)


def render(loop: dict) -> str:
    """Renders a loop record (:func:`kfloop.app.loop.run_loop`'s JSON) as one self-contained HTML page."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kfloop loop report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>kfloop: the closed loop on {_E(_title(loop))}</h1>",
        f"<p class='muted'>model <b>{_E(loop.get('model_name', ''))}</b> · store <code>{_E(loop.get('store_uri', ''))}</code>"
        f" · started {_E(loop.get('started_at', ''))} · {_fmt(loop.get('seconds'), 1)} s on {loop.get('cpus', '?')} CPU(s)</p>",
        f"<p><b>Outcome:</b> {_E(loop.get('outcome', ''))}</p>",
    ]
    t = loop.get("decisions_by_comparison") or tally(loop)
    parts.append(
        f"<p><b>{t['retrainings']}</b> retraining(s), <b>{t['promotions']}</b> promotion(s), "
        f"<b>{t['rejections']}</b> rejection(s), {t['pending']} canary(ies) still waiting.</p>"
    )
    if t["outcomes"]:
        parts.append(
            _table(
                [
                    "challenger",
                    "outcome",
                    "decided by",
                    "the comparison (metric, both values, interval, rows)",
                ],
                [
                    [_E(o["version"]), f"<b>{_E(o['outcome'])}</b>", _E(o["decided_by"]), _E(o["comparison"])]
                    for o in t["outcomes"]
                ],
            )
        )
    parts.append("<h2>Timeline</h2>")
    rows = []
    for s in loop.get("steps", []):
        rows.append(
            [
                _E(s.get("at", "")),
                f"{_fmt(s.get('seconds'), 1)} s",
                f"<b>{_E(s['step'])}</b>",
                _E(s.get("detail", "")),
            ]
        )
    parts.append(_table(["at (s)", "took", "step", "what happened"], rows))

    task = _task(loop)
    metric, shown, units, top = _TASK_METRIC[task]
    live_key = f"live_{metric}"
    windows = loop.get("windows", [])
    # output drift (label-free) is shown for regression / multiclass; the binary report stays as it was
    with_output = task != "binary" and any(_output_drift(w) for w in windows)
    if windows:
        parts.append("<h2>Monitoring windows</h2>")
        rows = []
        for w in windows:
            s, d = w["summary"], w.get("decision") or {}
            cls = {"retrain": "retrain", "cooldown": "cooldown"}.get(d.get("decision"), "ok")
            crossed = [
                f"{x['feature']} {x['value']:.3f}"
                for x in s.get("drift", [])
                if x.get("exceeded") and not x.get("ignored")
            ]
            row = [
                _E(w["label"]),
                _E(w.get("replayed", "")),
                str(s.get("rows")),
                str(s.get("labelled_rows")),
                _E(", ".join(f"{k}: {v}" for k, v in (s.get("model_versions") or {}).items())),
                _fmt(s.get(live_key)),
                _E(", ".join(crossed) or "none"),
            ]
            if with_output:
                row.append(_E(_output_cell(_output_drift(w))))
            rows.append(row + [f"<span class='{cls}'>{_E(d.get('decision', ''))}</span>"])
        headers = ["window", "replayed rows", "predictions", "labels", "served by", f"live {shown}{units}"]
        headers += ["drift crossed"] + (["output drift (JSD vs eval predictions)"] if with_output else [])
        parts.append(_table(headers + ["decision"], rows))

        labels = [w["label"] for w in windows]
        feats: dict[str, list] = {}
        thresholds: dict[str, float] = {}
        ignored: set[str] = set()
        for i, w in enumerate(windows):
            for x in w["summary"].get("drift", []):
                feats.setdefault(x["feature"], [None] * len(windows))[i] = x.get("value")
                thresholds[x["feature"]] = x["threshold"]
                if x.get("ignored"):
                    ignored.add(x["feature"])
            od = _output_drift(w) if with_output else None
            if od:
                name = f"(output) {od.get('of') or 'model output'}"
                feats.setdefault(name, [None] * len(windows))[i] = od.get("value")
                thresholds[name] = od.get("threshold")
                if od.get("ignored"):
                    ignored.add(name)
        if feats:
            parts.append("<h2>Drift score per feature over time</h2>")
            parts.append(
                "<p class='muted'>TFDV L-infinity (categorical) / Jensen-Shannon (numeric, clipped) of each window "
                "against the serving champion's training data; dashed red = threshold. Recorded on every run, "
                "below threshold too."
                + (
                    " (output): Jensen-Shannon of the served outputs against the champion's own eval "
                    "predictions (label-free)."
                    if with_output
                    else ""
                )
                + "</p><div class='charts'>"
            )
            for name, vs in feats.items():
                if all(v is None for v in vs):
                    continue
                title = name + (" (recorded only: drift mode record)" if name in ignored else "")
                parts.append(line_chart({name: vs}, labels, threshold=thresholds.get(name), title=title))
            parts.append("</div>")

    models = loop.get("models", [])
    if models:
        parts.append("<h2>Models</h2>")
        rows = []
        for m in models:
            rows.append(
                [
                    _E(m.get("version") or "(not pushed)"),
                    _E(m.get("trained_on", "")),
                    _fmt(_eval_value(m, "eval_auc", metric)),
                    _fmt(_eval_value(m, "champion_eval_auc", metric)),
                    _E("blessed" if m.get("blessed") else "not blessed"),
                    _E("; ".join(m.get("reasons", [])[:4])),
                    _E(m.get("fate", "")),
                ]
            )
        parts.append(
            _table(
                [
                    "version",
                    "training window",
                    f"eval {shown}{units}",
                    f"champion's {shown} (same eval)",
                    "blessing",
                    "evaluation reasons",
                    "fate",
                ],
                rows,
            )
        )
        live = {}
        for w in windows:
            for v in w["summary"].get("model_versions") or {}:
                live.setdefault(v, []).append(w["summary"].get(live_key))
        if windows:
            series = {}
            for w_i, w in enumerate(windows):
                versions = w["summary"].get("model_versions") or {}
                main = max(versions, key=versions.get) if versions else None
                if main:
                    series.setdefault(main, [None] * len(windows))[w_i] = w["summary"].get(live_key)
            parts.append(
                line_chart(
                    series,
                    [w["label"] for w in windows],
                    title=f"live {shown} by serving version{units}",
                    width=520,
                    y_max=top,
                )
            )

    decisions = [w.get("decision") for w in windows if w.get("decision")]
    if decisions:
        parts.append("<h2>Decisions and their reasons</h2>")
        rows = []
        for d in decisions:
            reasons = "<br>".join(
                f"{_E(r['kind'])}: <b>{_E(str(r['feature']))}</b> {_E(str(r['measure']))} = {_E(_fmt(r['value']))} "
                f"(threshold {_E(_fmt(r['threshold']))})"
                for r in d["reasons"]
            )
            cls = {"retrain": "retrain", "cooldown": "cooldown", "backoff": "cooldown"}.get(
                d["decision"], "ok"
            )
            rows.append(
                [
                    _E(d["decided_at"]),
                    f"<span class='{cls}'>{_E(d['decision'])}</span>",
                    reasons,
                    _E(d["summary"]),
                ]
            )
        parts.append(_table(["decided at", "decision", "reasons", "summary"], rows))

    canaries = loop.get("canaries", [])
    if canaries:
        parts.append("<h2>Canary verdicts (monitoring pipeline)</h2>")
        rows = []
        first = next((c["comparison"] for c in canaries if c.get("comparison")), {})
        name = _CMP_NAMES.get(first.get("metric", "auc"), first.get("metric"))
        cmp_note = "" if name == "AUC" else f" ({first.get('units', '')}; > 0: canary better)"
        for c in canaries:
            cmp_ = c.get("comparison") or {}
            fmt = "+.4g" if cmp_.get("task") == "regression" else "+.4f"
            interval = (
                f"{cmp_['diff']:{fmt}} [{cmp_['low']:{fmt}}, {cmp_['high']:{fmt}}] ({cmp_['confidence'] * 100:g}%)"
                if cmp_.get("diff") is not None and cmp_.get("low") is not None
                else "n/a"
            )
            rows.append(
                [
                    _E(c.get("window", "")),
                    _E(f"{c.get('canary_version')} vs {c.get('champion_version')}"),
                    str(cmp_.get("rows", "")) + (" paired" if cmp_.get("paired") else ""),
                    _fmt(cmp_.get("challenger")),
                    _fmt(cmp_.get("champion")),
                    _E(interval),
                    f"<b>{_E(c.get('action', ''))}</b> ({_E(c.get('verdict', ''))})",
                    _E(c.get("summary", "")),
                ]
            )
        parts.append(
            _table(
                [
                    "window",
                    "canary vs champion",
                    "rows",
                    f"canary {name}",
                    f"champion {name}",
                    f"{name} diff, interval{cmp_note}",
                    "verdict",
                    "why",
                ],
                rows,
            )
        )

    history = loop.get("history", [])
    if history:
        parts.append("<h2>Store history (alias changes, publishes, rejections)</h2>")
        rows = []
        for h in history:
            if h.get("event") == "alias":
                what = f"{h.get('alias')}: {h.get('from') or '(unset)'} → {h.get('to') or '(unset)'} [{h.get('outcome', '')}]"
            elif h.get("version"):
                what = f"version {h['version']}"
            else:
                what = json.dumps(
                    {
                        k: v
                        for k, v in h.items()
                        if k not in ("time", "event", "reason", "reasons", "blessing")
                    }
                )[:200]
            reason = h.get("reason") or "; ".join(h.get("reasons") or [])
            rows.append(
                [
                    _E(str(h.get("time", ""))),
                    _E(
                        f"{h.get('event', '')} ({h['action']})"
                        if h.get("action")
                        else str(h.get("event", ""))
                    ),
                    _E(what),
                    _E(str(reason)),
                ]
            )
        parts.append(_table(["at", "event", "what", "reason"], rows))
    from kfloop.app import report_ops

    parts.append(report_ops.why_section(loop.get("why")))
    parts.append(report_ops.notifications_section(loop.get("notifications"), loop.get("events") or []))
    parts.append(
        "<p class='muted'>Self-contained: no scripts, no external resources. Generated by <code>kfloop run</code>.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
