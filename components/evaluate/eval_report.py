"""Reports of an evaluation: the self-contained HTML page (verdict, reasons, champion vs challenger per slice,
ROC) and the plain-text comparison table."""

from __future__ import annotations

import html
import math

from components.evaluate.result import METRICS, OURS, TASK_METRICS, Evaluation, _fmt, _sub

#: Per task, the metrics of the per-slice table (multiclass adds the per-class recalls).
SLICE_METRICS = {
    "binary": ("auc", "pr_auc", "binary_accuracy", "calibration"),
    "regression": ("mae", "rmse", "r2", "mean_label", "mean_prediction", "calibration"),
    "multiclass": ("accuracy", "log_loss", "macro_f1"),
}
#: Per task, the per-slice metric of the plain-text table.
_TABLE_METRIC = {
    "binary": ("auc", "AUC"),
    "regression": ("rmse", "RMSE"),
    "multiclass": ("accuracy", "accuracy"),
}


def _task(result: Evaluation) -> str:
    return result.blessing.get("task", "binary")


def _recalls(result: Evaluation) -> tuple[str, ...]:
    return tuple(f"recall[{c}]" for c in result.blessing.get("classes") or ())


def overall_metrics(result: Evaluation) -> tuple[str, ...]:
    """The metric names of the overall table of the evaluation's task."""
    task = _task(result)
    return (tuple(METRICS) if task == "binary" else TASK_METRICS[task]) + _recalls(result)


def _source(task: str, metric: str) -> str:
    ours = OURS[task]
    return "ours" if metric in ours or (metric.startswith("recall[") and "recall[*]" in ours) else "TFMA"


def _unit(result: Evaluation, metric: str) -> str:
    units = result.blessing.get("units") or {}
    return units.get("recall[*]" if metric.startswith("recall[") else metric, "")


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
.pass{color:#176617}.fail{color:#b00020;font-weight:bold}.info{color:#666}
.verdict{font-size:1.4em;padding:.4em .8em;display:inline-block;border-radius:4px}
.yes{background:#e3f5e3}.no{background:#fde4e4}
td.neg{color:#b00020}td.pos{color:#176617}
"""


def _f(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and v.is_integer() and abs(v) > 1:
        return str(int(v))
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def _diff_cell(d) -> str:
    if d is None or (isinstance(d, float) and math.isnan(d)):
        return "<td>n/a</td>"
    cls = "neg" if d < 0 else "pos" if d > 0 else ""
    return f'<td class="{cls}">{d:+.4f}</td>'


def _roc_svg(curves: dict[str, dict], size: int = 260) -> str:
    pad = 30
    inner = size - 2 * pad
    colors = {"challenger": "#1f5fbf", "champion": "#d98200"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        'aria-label="ROC curve">',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#999"/>',
        f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#ccc" stroke-dasharray="4"/>',
        f'<text x="{size / 2}" y="{size - 6}" font-size="11" text-anchor="middle">false positive rate</text>',
        f'<text x="10" y="{size / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 10 {size / 2})">true positive rate</text>',
    ]
    for i, (name, roc) in enumerate(curves.items()):
        pts = sorted(zip(roc["fpr"], roc["tpr"], strict=True))
        path = " ".join(f"{pad + x * inner:.1f},{pad + (1 - y) * inner:.1f}" for x, y in pts)
        c = colors.get(name, "#444")
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        parts.append(f'<text x="{pad + 8}" y="{pad + 16 + 14 * i}" font-size="11" fill="{c}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(result: Evaluation) -> str:
    """Renders the evaluation as one HTML page with inline CSS and SVG (no external resources)."""
    b = result.blessing
    has_champ = b["champion_metrics"] is not None
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>kfloop evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Evaluation: challenger vs champion</h1>",
        f'<div class="verdict {"yes" if b["blessed"] else "no"}">'
        f"{'BLESSED' if b['blessed'] else 'NOT BLESSED'}</div>",
        "<p>Challenger: <code>{}</code><br>Champion: <code>{}</code>{}<br>Eval data: <code>{}</code> "
        "({} rows with a label, {} without)</p>".format(
            html.escape(str(b["model_uri"])),
            html.escape(str(b["champion_uri"] or "none (first model)")),
            f" (version {html.escape(str(b['champion_version']))})" if b["champion_version"] else "",
            html.escape(str(b["eval_uri"])),
            b["eval_rows"],
            b["rows_without_label"],
        ),
        "<h2>Reasons</h2><table><tr><th>check</th><th>metric</th><th>slice</th><th>threshold</th>"
        "<th>challenger</th><th>champion</th><th>message</th></tr>",
    ]
    for r in b["reasons"]:
        cls, word = ("pass", "passed") if r["passed"] else ("fail", "FAILED")
        if not r["judged"]:
            cls, word = "info", "reported"
        out.append(
            f'<tr><td class="{cls}">{word}</td><td>{html.escape(r["metric"])}</td>'
            f"<td>{html.escape(r['slice'])}</td><td>{_f(r['threshold'])}</td><td>{_f(r['challenger'])}</td>"
            f'<td>{_f(r["champion"])}</td><td style="text-align:left">{html.escape(r["message"])}</td></tr>'
        )
    out.append("</table>")

    task = _task(result)
    out.append(f"<p>Task: <b>{html.escape(task)}</b>")
    if b.get("classes"):
        out.append(f" (classes: {html.escape(', '.join(map(str, b['classes'])))})")
    out.append("</p>")
    out.append(_interval_html(b))
    out.append(
        "<h2>Overall (TFMA)</h2><table><tr><th>metric</th><th>unit</th><th>source</th><th>challenger</th>"
    )
    out.append("<th>champion</th><th>change</th></tr>" if has_champ else "</tr>")
    for m in overall_metrics(result):
        a = b["metrics"].get(m)
        row = f"<tr><td>{m}</td><td>{html.escape(_unit(result, m))}</td><td>{_source(task, m)}</td><td>{_f(a)}</td>"
        if has_champ:
            c = b["champion_metrics"].get(m)
            row += f"<td>{_f(c)}</td>" + _diff_cell(None if a is None or c is None else a - c)
        out.append(row + "</tr>")
    out.append("</table>")
    if b.get("eval_metrics"):
        out.append(
            "<h2>Metrics of the task (kfloop.metrics, on the rows both models scored)</h2><table><tr>"
            "<th>metric</th><th>unit</th><th>challenger</th>"
            + ("<th>champion</th>" if has_champ else "")
            + "</tr>"
        )
        champ_em = b.get("champion_eval_metrics") or {}
        for m, v in b["eval_metrics"].items():
            row = f"<tr><td>{html.escape(m)}</td><td>{html.escape(_unit(result, m))}</td><td>{_f(v)}</td>"
            out.append(row + (f"<td>{_f(champ_em.get(m))}</td>" if has_champ else "") + "</tr>")
        out.append("</table>")
        if b.get("class_prior"):
            pr = b["class_prior"]
            out.append(
                f"<p class='info'>Class prior ({html.escape(str(pr['source']))} class frequencies): log loss "
                f"{_f(pr['log_loss'])} nats.</p>"
            )

    cm = result.confusion_matrix
    if task == "binary":
        out.append(
            "<h2>Challenger at threshold 0.5</h2><table><tr><th>actual \\ predicted</th><th>0</th><th>1</th></tr>"
            f"<tr><td>0</td><td>{cm[0][0]}</td><td>{cm[0][1]}</td></tr>"
            f"<tr><td>1</td><td>{cm[1][0]}</td><td>{cm[1][1]}</td></tr></table>"
        )
        curves = {"challenger": result.roc}
        if result.champion_roc:
            curves["champion"] = result.champion_roc
        out.append("<h2>ROC (overall)</h2>" + _roc_svg(curves))
    elif task == "multiclass" and cm:
        names = [html.escape(str(c)) for c in b.get("classes") or range(len(cm))]
        out.append(
            "<h2>Challenger confusion matrix (arg-max class)</h2><table><tr><th>actual \\ predicted</th>"
        )
        out.append("".join(f"<th>{n}</th>" for n in names) + "</tr>")
        for n, r in zip(names, cm, strict=False):
            out.append(f"<tr><td>{n}</td>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>")
        out.append("</table>")

    metrics = SLICE_METRICS[task] + (_recalls(result) if task == "multiclass" else ())
    positives = task == "binary"
    out.append(
        "<h2>Per slice</h2><table><tr><th>slice</th><th>examples</th>"
        + ("<th>positives</th>" if positives else "")
    )
    for m in metrics:
        out.append(f"<th>{m}</th>" + (f"<th>champion {m}</th><th>change</th>" if has_champ else ""))
    out.append("</tr>")
    for s in result.slices:
        row = f"<tr><td>{html.escape(s.slice)}</td><td>{s.examples}</td>" + (
            f"<td>{s.positives}</td>" if positives else ""
        )
        for m in metrics:
            row += f"<td>{_f(s.challenger.get(m))}</td>"
            if has_champ:
                row += f"<td>{_f(s.champion.get(m))}</td>" + _diff_cell(s.diff(m))
        out.append(row + "</tr>")
    out.append("</table>")
    if task != "binary":
        out.append(
            "<p class='info'>Per-slice values are TFMA's except "
            + ", ".join(OURS[task])
            + " (ours: "
            + (
                "R² from the rows each model scored"
                if task == "regression"
                else "from TFMA's arg-max confusion matrix"
            )
            + ").</p>"
        )
    thr = b["thresholds"]
    out.append(
        "<h2>Thresholds</h2><ul>"
        + "".join(f"<li><code>{html.escape(k)}</code> = {html.escape(str(v))}</li>" for k, v in thr.items())
        + f"</ul><p class='info'>TFMA's own validator on the overall thresholds: "
        f"{'ok' if b['tfma_validation_ok'] else 'failed'}. Created {html.escape(b['created_at'])}.</p>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def _interval_html(b: dict) -> str:
    """The paired comparison's values, oriented difference and interval (with units), if any."""
    paired = b.get("paired")
    if not paired:
        return ""
    c = paired["comparison"]
    rows = [(c["metric"], c, c.get("units", "AUC"))]
    if c.get("secondary"):
        rows.append((c["secondary"]["metric"], c["secondary"], c["secondary"].get("units", "")))
    out = [
        "<h2>Paired comparison on the eval rows</h2><p>Differences are oriented: &gt; 0 means the challenger "
        f"is better. Verdict: <b>{html.escape(paired['verdict'])}</b> ({c['rows']} rows, "
        f"{_f(c['confidence'] * 100)}% interval, {html.escape(str(c['method']))}).</p>",
        "<table><tr><th>metric</th><th>unit</th><th>challenger</th><th>champion</th><th>diff</th><th>low</th>"
        "<th>high</th></tr>",
    ]
    for name, d, unit in rows:
        out.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(unit))}</td><td>{_f(d['challenger'])}</td>"
            f"<td>{_f(d['champion'])}</td>{_diff_cell(d['diff'])}{_diff_cell(d['low'])}{_diff_cell(d['high'])}</tr>"
        )
    out.append("</table>")
    return "".join(out)


def comparison_table(result: Evaluation) -> str:
    """A plain-text table: overall metrics, per slice the task's metric (binary AUC, regression RMSE,
    multiclass accuracy) for challenger / champion and the change; then the reasons.

    Binary prints exactly what it always did; regression and multiclass add the task line, units and the
    paired comparison's values and intervals.
    """
    if _task(result) == "binary":
        lines = _binary_table(result)
    else:
        lines = _task_table(result)
    lines.append("")
    verdict = "BLESSED" if result.blessed else "NOT BLESSED"
    lines.append(f"Verdict: {verdict}")
    for r in result.blessing["reasons"]:
        mark = "ok  " if r["passed"] else "FAIL"
        if not r["judged"]:
            mark = "info"
        lines.append(f"  [{mark}] {r['metric']} @ {r['slice']}: {r['message']}")
    return "\n".join(lines)


def _binary_table(result: Evaluation) -> list[str]:
    has_champ = result.blessing["champion_metrics"] is not None
    lines = []
    ov = result.slices[0]
    lines.append("Overall metrics" + (" (challenger vs champion)" if has_champ else " (challenger)"))
    for m in METRICS:
        a = ov.challenger.get(m)
        if has_champ:
            b = ov.champion.get(m)
            lines.append(f"  {m:<16} {_fmt(a):>10} {_fmt(b):>10} {_fmt(_sub(a, b)):>10}")
        else:
            lines.append(f"  {m:<16} {_fmt(a):>10}")
    lines.append("")
    head = f"  {'slice':<28} {'n':>6} {'pos':>5} {'AUC':>8}"
    if has_champ:
        head += f" {'champion':>9} {'change':>8}"
    lines.append("Per slice")
    lines.append(head)
    for s in result.slices:
        line = f"  {s.slice:<28} {s.examples:>6} {s.positives:>5} {_fmt(s.challenger.get('auc')):>8}"
        if has_champ:
            line += f" {_fmt(s.champion.get('auc')):>9} {_fmt(s.diff('auc')):>8}"
        lines.append(line)
    return lines


def _task_table(result: Evaluation) -> list[str]:
    has_champ = result.blessing["champion_metrics"] is not None
    task = _task(result)
    lines = [
        f"Task: {task}"
        + (
            f" (classes: {', '.join(map(str, result.blessing['classes']))})"
            if result.blessing.get("classes")
            else ""
        )
    ]
    ov = result.slices[0]
    lines.append("Overall metrics" + (" (challenger vs champion)" if has_champ else " (challenger)"))
    for m in overall_metrics(result):
        a = ov.challenger.get(m)
        unit = _unit(result, m)
        unit = f"  [{unit}]" if unit else ""
        if has_champ:
            b = ov.champion.get(m)
            lines.append(f"  {m:<16} {_fmt(a):>10} {_fmt(b):>10} {_fmt(_sub(a, b)):>10}{unit}")
        else:
            lines.append(f"  {m:<16} {_fmt(a):>10}{unit}")
    paired = result.blessing.get("paired")
    if paired:
        c = paired["comparison"]
        lines.append("")
        lines.append(
            f"Paired comparison ({c['rows']} rows; diff > 0 = challenger better): {paired['verdict']}"
        )
        for d in [c] + ([c["secondary"]] if c.get("secondary") else []):
            lo, hi = d.get("low"), d.get("high")
            interval = f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else "(no interval)"
            lines.append(
                f"  {d['metric']:<10} challenger {_fmt(d['challenger'])} champion {_fmt(d['champion'])} "
                f"diff {_fmt(d['diff'])} {interval} {d.get('units', '')}"
            )
    lines.append("")
    metric, title = _TABLE_METRIC[task]
    head = f"  {'slice':<28} {'n':>6} {title:>8}"
    if has_champ:
        head += f" {'champion':>9} {'change':>8}"
    lines.append("Per slice")
    lines.append(head)
    for s in result.slices:
        line = f"  {s.slice:<28} {s.examples:>6} {_fmt(s.challenger.get(metric)):>8}"
        if has_champ:
            line += f" {_fmt(s.champion.get(metric)):>9} {_fmt(s.diff(metric)):>8}"
        lines.append(line)
    return lines
