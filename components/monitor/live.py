"""The live metric of the task, its retrain rule, and the drift of the model's output (label-free).

From the counters of one window (:class:`components.monitor.stream.WindowStats`):

* :func:`live_metrics`: binary ``auc``; regression ``rmse`` and ``mae`` (label units), ``mean_label``,
  ``mean_prediction``; multiclass ``accuracy`` (fraction of rows) and ``log_loss`` (nats); ``n`` labelled rows.
* :func:`performance`: the task's retrain rule on them, with the threshold it used and a stated reason
  (:class:`kfloop.config.MonitoringConfig`): binary live AUC below ``min_live_auc``; regression live RMSE
  above the champion's eval RMSE x (1 + ``max_live_rmse_increase``); multiclass live accuracy below the
  champion's eval accuracy - ``max_live_accuracy_drop``. The champion's eval metrics come from its version
  (:func:`champion_metrics`: the blessing's ``eval_metrics`` / the version's ``metrics``, else the
  reference's own eval metrics).
* :func:`output_drift`: Jensen-Shannon divergence of the live outputs vs the champion's eval predictions
  in the same bins (:func:`kfloop.reference.output_counts`), against ``output_drift_threshold``; mode
  ``record`` (reported only) or ``trigger``. A reference without eval predictions: ``available`` False.
"""

from __future__ import annotations

from kfloop import config
from kfloop import reference as R

#: The live metric that judges each task, its direction and units (the first of :func:`live_metrics`).
JUDGED = {
    "binary": ("auc", "AUC"),
    "regression": ("rmse", "label units"),
    "multiclass": ("accuracy", "fraction of rows"),
}
UNITS = {
    "auc": "AUC",
    "rmse": "label units",
    "mae": "label units",
    "accuracy": "fraction of rows",
    "log_loss": "nats",
}


def live_metrics(ws) -> dict:
    """The task's live metrics of a window's labelled rows (None where there are none)."""
    n = ws.labelled_rows
    if ws.task == "binary":
        return {"auc": ws.live_auc(), "n": n}
    if ws.task == "regression":
        return {
            "rmse": (ws.sq_err_sum / n) ** 0.5 if n else None,
            "mae": ws.abs_err_sum / n if n else None,
            "mean_label": ws.label_sum / n if n else None,
            "mean_prediction": ws.output_sum / ws.rows if ws.rows else None,
            "n": n,
        }
    return {
        "accuracy": ws.correct / n if n else None,
        "log_loss": ws.log_loss_sum / n if n else None,
        "n": n,
    }


def champion_metrics(store_uri: str, model_name: str, version: str | None, reference=None) -> dict:
    """The champion's eval metrics: its blessing's ``eval_metrics``, else the version's ``metrics``, else
    the metrics of its reference's eval predictions; ``{}`` when none is known."""
    found: dict = {}
    if version:
        from kfloop import store as kstore

        try:
            meta = kstore.ModelStore(store_uri).metadata(model_name, version)
        except kstore.StoreError:
            meta = {}
        blessing = meta.get("blessing") or {}
        found = dict(blessing.get("eval_metrics") or meta.get("eval_metrics") or meta.get("metrics") or {})
    out = (getattr(reference, "output", None) or {}).get("eval_metrics") or {}
    return {**out, **{k: v for k, v in found.items() if v is not None}}


def performance(task: str, live: dict, champion: dict, cfg: config.MonitoringConfig, enough: bool) -> dict:
    """The task's retrain rule on the live metrics, stated.

    Args:
        task: ``binary``, ``regression`` or ``multiclass``.
        live: :func:`live_metrics`.
        champion: The champion's eval metrics (:func:`champion_metrics`).
        cfg: The thresholds.
        enough: At least ``cfg.min_labelled`` labelled rows (else the rule is not applied).

    Returns:
        ``{"task", "metric", "value", "units", "champion_value", "threshold", "exceeded", "rule",
        "message"}``: ``exceeded`` True when the rule says retrain; ``value`` None without enough labels,
        ``threshold`` None when the champion's eval value is unknown (the rule cannot be applied).
    """
    metric, units = JUDGED[task]
    value = live.get(metric) if enough else None
    base = champion.get(metric)
    if task == "binary":
        threshold, rule = cfg.min_live_auc, f"live AUC < min_live_auc {cfg.min_live_auc}"
        exceeded = value is not None and value < threshold
    elif task == "regression":
        threshold = None if base is None else base * (1 + cfg.max_live_rmse_increase)
        rule = f"live RMSE > the champion's eval RMSE x (1 + max_live_rmse_increase {cfg.max_live_rmse_increase})"
        exceeded = value is not None and threshold is not None and value > threshold
    else:
        threshold = None if base is None else base - cfg.max_live_accuracy_drop
        rule = f"live accuracy < the champion's eval accuracy - max_live_accuracy_drop {cfg.max_live_accuracy_drop}"
        exceeded = value is not None and threshold is not None and value < threshold
    name = {"auc": "live AUC", "rmse": "live RMSE", "accuracy": "live accuracy"}[metric]
    n = live.get("n", 0)
    if value is None:
        message = f"{name}: not judged ({n} labelled rows < min_labelled {cfg.min_labelled})"
    elif threshold is None:
        message = f"{name} {value:.4g} ({units}) on {n} labelled rows: the champion's eval {metric} is unknown, not judged"
    else:
        ref = "" if task == "binary" else f" (champion's eval {metric} {base:.4g})"
        sign = {"binary": "<", "regression": ">", "multiclass": "<"}[task]
        sign = sign if exceeded else {"<": ">=", ">": "<="}[sign]
        message = f"{name} {value:.4g} {sign} {threshold:.4g} {units}{ref} on {n} labelled rows"
    return {
        "task": task,
        "metric": metric,
        "value": value,
        "units": units,
        "champion_value": base,
        "threshold": threshold,
        "exceeded": bool(exceeded),
        "rule": rule,
        "message": message,
    }


def output_drift(output_ref: dict | None, counts, cfg: config.MonitoringConfig, ws=None) -> dict:
    """Drift of the live model output vs the champion's eval predictions (label-free, every task).

    Args:
        output_ref: The reference's eval-output distribution (:attr:`kfloop.reference.Reference.output`).
        counts: The live outputs in its bins (``WindowStats.output_counts``).
        cfg: ``output_drift_threshold``, ``output_drift_mode``.
        ws: The window's counters (multiclass: the live mean probabilities are recorded).

    Returns:
        ``{"available", "measure", "value", "threshold", "exceeded", "mode", "ignored", "of", "message"}``;
        ``available`` False (value None) for a reference without eval predictions (an older version).
    """
    base = {
        "measure": "jensen_shannon_divergence",
        "threshold": cfg.output_drift_threshold,
        "mode": cfg.output_drift_mode,
        "ignored": cfg.output_drift_mode != "trigger",
    }
    if output_ref is None:
        return {
            **base,
            "available": False,
            "value": None,
            "exceeded": False,
            "of": None,
            "message": "output drift unavailable: the champion's reference keeps no eval predictions",
        }
    of = {"binary": "probability", "regression": "prediction", "multiclass": "predicted class"}[
        output_ref["task"]
    ]
    value = R.jensen_shannon(counts, output_ref["counts"]) if counts is not None else None
    value = None if value is None else round(value, 6)
    exceeded = value is not None and value > cfg.output_drift_threshold
    out = {**base, "available": True, "value": value, "exceeded": bool(exceeded), "of": of}
    if output_ref.get("kind") == "classes":
        out["eval_mean_probabilities"] = output_ref.get("mean_probabilities")
        if ws is not None and ws.probability_sums is not None and ws.rows:
            out["live_mean_probabilities"] = [round(float(v) / ws.rows, 6) for v in ws.probability_sums]
        out["eval_class_counts"], out["live_class_counts"] = output_ref["counts"], [int(c) for c in counts]
    shown = "n/a (no rows)" if value is None else f"{value:.4f}"
    crossed = "> " if exceeded else "<= "
    out["message"] = (
        f"output drift ({of}, live vs the champion's eval predictions): {base['measure']} {shown} "
        f"{crossed if value is not None else ''}{cfg.output_drift_threshold}"
        + (" (recorded only)" if base["ignored"] else "")
    )
    return out
