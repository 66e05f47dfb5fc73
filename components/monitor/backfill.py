"""Late labels: recompute the live metrics of earlier monitoring windows whose labels grew (a backfill).

A window is monitored once, with the labels that had arrived by then. Ground truth keeps arriving (over
``POST /v1/models/<name>:feedback`` or batch feedback files) for up to
:attr:`~kfloop.config.MonitoringConfig.feedback_horizon_days` after a window's start. Each monitoring run
calls :func:`backfill_windows`: for every recorded run whose window is still inside the label horizon, it
joins the window's predictions with the feedback that has arrived *now*, and when more rows are labelled
than the latest figures of that window (its run, or its last backfill), it records a backfill::

    monitoring/<model>/backfills/<window_end>-<id>.json
    {"backfill": true, "of_run": ..., "window_start", "window_end", "labelled_rows_before", "labelled_rows",
     "live_auc_before", "live_auc", "label_rate", "mean_delay_s", "backfilled_at"}

(regression and multiclass windows: ``live_metrics`` and the task's ``live_<metric>`` keys instead of the
AUC, with the ``_before`` figures of the metric the task is judged on, :mod:`components.monitor.live`).

:func:`latest_live_metrics` gives, per window, the newest figures (run or backfill): the live AUC series
with late labels counted. The join reads three columns of the predictions (key, probability) and the
feedback of the horizon: memory grows with the window's rows, not with the width of the log.
"""

from __future__ import annotations

import datetime as dt
import uuid

from components.monitor.runs import read_runs
from kfloop import clock, config, layout, records
from kfloop import labels as L
from kfloop import predlog as P
from kfloop.paired import auc

KIND = layout.BACKFILLS


def _key_table(batches, names):
    import pyarrow as pa

    batches = list(batches)
    if not batches:
        return None
    return pa.Table.from_batches(batches).select(names)


def window_labels(
    store_uri: str, model_name: str, start: dt.datetime, end: dt.datetime, horizon_days: float, spec=None
):
    """Labels and outputs of a window's predictions joined with the feedback arrived so far.

    Duplicate predictions of one ``(request_id, row)`` count once; the first label to arrive for a key is
    kept, later contradicting ones are ignored (:func:`kfloop.labels.first_labels`, the policy
    of the monitor's own join). Rows without a label are left out.

    Returns:
        ``(labels, outputs, delays)`` numpy arrays (binary: 0/1 labels and probabilities; ``spec``'s other
        tasks: labels and outputs [n] or [n, K]; ``delays``: seconds from prediction to label, NaN when
        the writer did not record the prediction time).
    """
    import numpy as np
    import pandas as pd

    from components.monitor.stream import output_column

    out = output_column(spec)
    preds = _key_table(
        P.scan(store_uri, model_name, P.PREDICTIONS, start, end, ["request_id", "row", out]),
        ["request_id", "row", out],
    )
    fb = _key_table(
        P.scan(
            store_uri,
            model_name,
            P.FEEDBACK,
            start,
            start + dt.timedelta(days=horizon_days),
            ["request_id", "row", "label", "timestamp", "delay_s"],
            schema=P.feedback_schema(spec),
        ),
        ["request_id", "row", "label", "timestamp", "delay_s"],
    )
    empty = (np.array([], dtype=np.int8), np.array([], dtype=np.float32), np.array([], dtype=np.float64))
    if preds is None or fb is None:
        return empty
    p = preds.to_pandas().drop_duplicates(["request_id", "row"], keep="first")
    f = L.first_labels(fb.to_pandas().rename(columns={"timestamp": "ts"}))
    joined = p.merge(f, on=["request_id", "row"], how="inner")
    task = spec.task.value if spec is not None else "binary"
    y = pd.to_numeric(joined["label"], errors="coerce")
    if task == "binary":
        joined = joined[y.isin([0, 1]).to_numpy()]
    elif task == "multiclass":
        joined = joined[y.isin(range(spec.n_classes)).to_numpy()]
    else:
        joined = joined[np.isfinite(y.to_numpy(dtype=np.float64, na_value=np.nan))]
    delays = pd.to_numeric(joined["delay_s"], errors="coerce").to_numpy(dtype=np.float64)
    if task == "binary":
        return joined["label"].to_numpy(np.int8), joined[out].to_numpy(np.float32), delays
    outputs = np.asarray(joined[out].tolist(), dtype=np.float64)
    if task == "multiclass":
        outputs = outputs.reshape(-1, spec.n_classes)
    return joined["label"].to_numpy(np.float64), outputs, delays


def _latest_by_window(store_uri: str, model_name: str) -> dict[tuple[str, str], dict]:
    """Newest figures per window: its monitoring run, overridden by later backfills of it."""
    out: dict[tuple[str, str], dict] = {}
    for run in read_runs(store_uri, model_name):
        if run.get("window_start") and run.get("window_end") and not run.get("backfill"):
            out[(run["window_start"], run["window_end"])] = {**run, "of_run": run.get("run_id")}
    for bf in read_backfills(store_uri, model_name):
        key = (bf["window_start"], bf["window_end"])
        if key in out:
            out[key] = {**out[key], **bf}
    return out


def backfill_windows(
    store_uri: str,
    model_name: str,
    *,
    now: dt.datetime | None = None,
    before: dt.datetime | None = None,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    record: bool = True,
    spec=None,
) -> list[dict]:
    """Recomputes the live metrics of recorded windows whose labels grew since they were last computed.

    Args:
        store_uri: Store root (prediction / feedback log and monitoring records).
        model_name: Model name.
        now: The monitoring clock (default: the current time); windows that started more than the label
            horizon before it are final and skipped.
        before: Only windows ending at or before this instant (the window being monitored now is not a
            backfill).
        cfg: ``feedback_horizon_days`` and ``min_labelled`` (the live AUC needs that many labels).
        record: Write each backfill to ``monitoring/<model>/backfills/``.
        spec: The model's dataset spec (its task and classes; None: binary).

    Returns:
        The backfill records written (empty when no window's labels grew).
    """
    now = now or clock.utc_now()
    out = []
    for (ws, we), last in sorted(_latest_by_window(store_uri, model_name).items()):
        start, end = clock.parse(ws), clock.parse(we)
        if before is not None and end > before:
            continue
        if start + dt.timedelta(days=cfg.feedback_horizon_days) < now:
            continue  # past the label horizon: its figures are final
        labels, probs, delays = window_labels(
            store_uri, model_name, start, end, cfg.feedback_horizon_days, spec
        )
        before_n = int(last.get("labelled_rows") or 0)
        if len(labels) <= before_n:
            continue
        import numpy as np

        task = spec.task.value if spec is not None else "binary"
        if task != "binary":
            rec = _task_backfill(task, labels, probs, last, spec, cfg)
        else:
            live_auc = auc(labels, probs) if len(labels) >= cfg.min_labelled else None
            rec = {"live_auc_before": last.get("live_auc"), "live_auc": live_auc}
            rec["label_rate"] = float(labels.mean())
        rec = {
            "backfill": True,
            "of_run": last.get("of_run"),
            "model_name": model_name,
            "window_start": ws,
            "window_end": we,
            "labelled_rows_before": before_n,
            "labelled_rows": len(labels),
            **rec,
            "mean_delay_s": float(np.nanmean(delays)) if np.isfinite(delays).any() else None,
            "backfilled_at": clock.iso(now),
        }
        if record:
            rid = f"{end:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}"
            rec["record_uri"] = records.write(store_uri, model_name, KIND, rid, rec)
        out.append(rec)
    return out


def _task_backfill(task: str, labels, outputs, last: dict, spec, cfg) -> dict:
    """A regression / multiclass window's live metrics recomputed (:func:`kfloop.metrics.task_metrics`)."""
    from components.monitor.live import JUDGED
    from kfloop import metrics as KM

    enough = len(labels) >= cfg.min_labelled
    m = KM.task_metrics(task, labels, outputs, spec.classes)
    keys = (
        ("rmse", "mae", "mean_label", "mean_prediction") if task == "regression" else ("accuracy", "log_loss")
    )
    live = {k: (m.get(k) if enough else None) for k in keys}
    judged = JUDGED[task][0]
    out = {
        "task": task,
        "live_metrics": {**live, "n": len(labels)},
        f"live_{judged}_before": last.get(f"live_{judged}"),
    }
    out.update({f"live_{k}": v for k, v in live.items() if k in ("rmse", "mae", "accuracy", "log_loss")})
    return out


def read_backfills(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded backfill, oldest first."""
    return records.read_all(
        store_uri, model_name, KIND, sort_key=lambda r: (r.get("backfilled_at", ""), r.get("window_end", ""))
    )


def latest_live_metrics(store_uri: str, model_name: str) -> list[dict]:
    """Per window (oldest first): ``window_start``, ``window_end``, ``labelled_rows``, ``live_auc`` (and the
    task's other ``live_<metric>`` keys where recorded) and ``backfilled`` (whether late labels changed
    them since the window was monitored)."""
    rows = []
    for (ws, we), last in sorted(_latest_by_window(store_uri, model_name).items()):
        rows.append(
            {
                "window_start": ws,
                "window_end": we,
                "labelled_rows": last.get("labelled_rows"),
                "live_auc": last.get("live_auc"),
                **{
                    k: last[k]
                    for k in ("live_rmse", "live_mae", "live_accuracy", "live_log_loss")
                    if k in last
                },
                "backfilled": bool(last.get("backfill")),
            }
        )
    return rows
