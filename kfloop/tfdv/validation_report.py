"""A self-contained HTML report of a validation: verdict, anomalies, drift / skew, per-feature summaries.

No script, style sheet, font or image is fetched from anywhere: the CSS is inline and there is no
JavaScript, so the page renders offline and inside the KFP dashboard's sandboxed HTML viewer.
"""

from __future__ import annotations

import html
import math

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#1b1f24}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0} td,th{border:1px solid #ccd;padding:3px 7px;
text-align:left;vertical-align:top} th{background:#f0f2f5} td.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:.3em .8em;border-radius:4px;font-weight:600}
.pass{background:#dff5e1;color:#0b5d1e} .warn{background:#fff4d6;color:#7a5300} .fail{background:#fde2e1;color:#8a1c15}
tr.blocking td{background:#fde2e1} tr.crossed td{background:#fff4d6} .muted{color:#667}
.bar{display:inline-block;height:.7em;background:#5b8def;vertical-align:middle}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return _e(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def _table(headers: list[str], rows: list[tuple[str, list[str]]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{cls}">{"".join(cells)}</tr>' for cls, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _feature_rows(stats):
    """(numeric rows, categorical rows) for the per-feature tables."""
    ds = stats.datasets[0]
    n = max(int(ds.num_examples), 1)
    numeric, categorical = [], []
    for fs in ds.features:
        name = fs.path.step[-1] if fs.path.step else fs.name
        which = fs.WhichOneof("stats")
        if which is None:
            continue
        block = getattr(fs, which)
        common = block.common_stats
        present = common.num_non_missing / n
        presence = (
            f'<td class="n">{present:.1%} <span class="bar" style="width:{present * 40:.0f}px"></span></td>'
        )
        if which == "num_stats":
            median = None
            for h in block.histograms:
                if h.type == h.QUANTILES and h.buckets:
                    mid = len(h.buckets) // 2
                    median = h.buckets[mid].low_value
            cells = [
                f"<td>{_e(name)}</td>",
                presence,
                f'<td class="n">{_num(block.mean)}</td>',
                f'<td class="n">{_num(block.std_dev)}</td>',
                f'<td class="n">{_num(block.min)}</td>',
                f'<td class="n">{_num(median)}</td>',
                f'<td class="n">{_num(block.max)}</td>',
                f'<td class="n">{_num(block.num_zeros)}</td>',
            ]
            numeric.append(("", cells))
        elif which == "string_stats":
            total = max(common.num_non_missing, 1)
            top = ", ".join(f"{_e(v.value)} ({v.frequency / total:.1%})" for v in list(block.top_values)[:5])
            cells = [
                f"<td>{_e(name)}</td>",
                presence,
                f'<td class="n">{_num(block.unique)}</td>',
                f"<td>{top or '—'}</td>",
            ]
            categorical.append(("", cells))
    return numeric, categorical


def render(summary: dict, stats, *, title: str = "Data validation") -> str:
    """Renders the report.

    Args:
        summary: ``ValidationResult.summary()`` (environment, rows, anomalies, drift, skew).
        stats: The dataset's ``DatasetFeatureStatisticsList``.
        title: Page title (e.g. names the dataset).

    Returns:
        A complete HTML document (UTF-8 text).
    """
    findings = summary.get("anomalies", [])
    blocking = [f for f in findings if f["blocking"]]
    if blocking:
        verdict = f'<span class="verdict fail">BLOCKED: {len(blocking)} blocking anomal{"y" if len(blocking) == 1 else "ies"}</span>'
    elif findings:
        verdict = f'<span class="verdict warn">PASSED with {len(findings)} non-blocking finding(s)</span>'
    else:
        verdict = '<span class="verdict pass">PASSED: no anomalies</span>'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>{verdict}</p>",
        f'<p class="muted">Environment <b>{_e(summary.get("environment", ""))}</b> · '
        f"{_num(summary.get('rows', 0))} rows read · {_num(summary.get('num_examples', 0))} examples in the "
        "statistics</p>",
        '<h2 id="anomalies">Anomalies</h2>',
    ]
    if findings:
        rows = [
            (
                "blocking" if f["blocking"] else "",
                [
                    f"<td>{_e(f['feature'])}</td>",
                    f"<td>{_e(f['type'])}</td>",
                    f"<td>{_e(f['short_description'])}</td>",
                    f"<td>{_e(f['description'])}</td>",
                    f"<td>{'yes' if f['blocking'] else 'no'}</td>",
                ],
            )
            for f in findings
        ]
        parts.append(_table(["Feature", "Type", "Anomaly", "Description", "Blocking"], rows))
    else:
        parts.append("<p>No anomalies against the schema.</p>")
    for key, heading in (("skew", "Train / eval skew"), ("drift", "Drift against the reference")):
        scores = summary.get(key) or []
        if not scores:
            continue
        parts.append(f'<h2 id="{key}">{_e(heading)}</h2>')
        rows = [
            (
                "crossed" if s["crossed"] else "",
                [
                    f"<td>{_e(s['feature'])}</td>",
                    f"<td>{_e(s['metric'])}</td>",
                    f'<td class="n">{_num(s["score"])}</td>',
                    f'<td class="n">{_num(s["threshold"])}</td>',
                    f"<td>{'yes' if s['crossed'] else ('not checked' if not s.get('checked', True) else 'no')}</td>",
                ],
            )
            for s in scores
        ]
        parts.append(_table(["Feature", "Metric", "Score", "Threshold", "Crossed"], rows))
    numeric, categorical = _feature_rows(stats)
    parts.append('<h2 id="numeric">Numeric features</h2>')
    parts.append(_table(["Feature", "Present", "Mean", "Std dev", "Min", "Median", "Max", "Zeros"], numeric))
    parts.append('<h2 id="categorical">Categorical features</h2>')
    parts.append(_table(["Feature", "Present", "Unique", "Top values"], categorical))
    parts.append("</body></html>")
    return "\n".join(parts)
