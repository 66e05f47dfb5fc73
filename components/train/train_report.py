"""Self-contained HTML training-curves report (inline SVG, no scripts, no external assets)."""

from __future__ import annotations

import html
import json
import math

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _svg_chart(title: str, series: dict[str, list[float]], width: int = 520, height: int = 260) -> str:
    """One line chart (epochs on x) as an inline SVG element."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return f"<p>{html.escape(title)}: no data</p>"
    values = [y for ys in series.values() for y in ys if math.isfinite(y)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad_l, pad_r, pad_t, pad_b = 56, 16, 28, 36
    n = max(len(v) for v in series.values())
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def px(i: int) -> float:
        return pad_l + (w * i / (n - 1) if n > 1 else w / 2)

    def py(y: float) -> float:
        return pad_t + h * (1 - (y - lo) / (hi - lo))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
    ]
    for k in range(5):
        y = lo + (hi - lo) * k / 4
        out.append(
            f'<text x="{pad_l - 6}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{y:.3f}</text>'
        )
        out.append(f'<line x1="{pad_l}" x2="{pad_l + w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>')
    for i in range(n):
        out.append(
            f'<text x="{px(i):.1f}" y="{pad_t + h + 16}" text-anchor="middle" font-size="11">{i + 1}</text>'
        )
    out.append(f'<text x="{pad_l + w / 2}" y="{height - 4}" text-anchor="middle" font-size="11">epoch</text>')
    for j, (name, ys) in enumerate(series.items()):
        color = _COLORS[j % len(_COLORS)]
        pts = " ".join(f"{px(i):.1f},{py(y):.1f}" for i, y in enumerate(ys) if math.isfinite(y))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        out.append(
            f'<text x="{pad_l + 8}" y="{pad_t + 16 + 14 * j}" fill="{color}" font-size="12">{html.escape(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def render_report(history: dict[str, list[float]], metrics: dict, metadata: dict | None = None) -> str:
    """The training report: the task's curves (train vs eval), final metrics, hyperparameters, data.

    Curves per task (``metadata["task"]``, binary when absent): binary loss and AUC; regression loss
    (standardised label), RMSE and MAE (label units); multiclass log loss and accuracy.

    Args:
        history: Keras history (``loss``, ``val_loss``, ``auc``, ``val_auc``, ...), one value per epoch.
        metrics: Final metrics of the task (binary ``auc``, ``loss``, ...; regression ``rmse``, ``mae``,
            ``r2``; multiclass ``accuracy``, ``log_loss``).
        metadata: The model's ``kfloop_metadata.json`` content (task, hyperparameters, data, libraries).

    Returns:
        A complete HTML document.
    """
    metadata = metadata or {}
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(f'{v:.4f}' if isinstance(v, float) else str(v))}</td></tr>"
        for k, v in metrics.items()
    )
    task = metadata.get("task", "binary")
    loss_name = (metadata.get("hyperparameters") or {}).get("loss")
    if task == "regression":
        units = "label units"
        loss_title = f"Loss ({'Huber' if loss_name == 'huber' else 'mean squared error'}, standardised label)"
        curves = [("RMSE (" + units + ")", "rmse"), ("MAE (" + units + ")", "mae")]
    elif task == "multiclass":
        loss_title = "Log loss (sparse categorical cross-entropy)"
        curves = [("Accuracy", "accuracy")]
    else:
        loss_title = "Loss (binary cross-entropy)"
        curves = [("AUC", "auc")]
    sections = [
        _svg_chart(loss_title, {"train": history.get("loss", []), "eval": history.get("val_loss", [])}),
        *(
            _svg_chart(title, {"train": history.get(key, []), "eval": history.get(f"val_{key}", [])})
            for title, key in curves
        ),
    ]
    keys = ("task", "classes", "label_scaling", "hyperparameters", "data", "training", "libraries")
    details = {k: metadata[k] for k in keys if metadata.get(k) not in (None, [])}
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>kfloop training report</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}pre{background:#f6f6f6;padding:8px}</style>"
        "</head><body>\n<h1>Training report</h1>\n"
        f"<h2>Final eval metrics ({html.escape(str(task))})</h2><table>{rows}</table>\n<h2>Curves</h2>\n"
        + "\n".join(sections)
        + "\n<h2>Run</h2><pre>"
        + html.escape(json.dumps(details, indent=2, default=str))
        + "</pre>\n</body></html>\n"
    )
