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


def window_labels(store_uri: str, model_name: str, start: dt.datetime, end: dt.datetime, horizon_days: float):
    """Labels and probabilities of a window's predictions joined with the feedback arrived so far.

    Duplicate predictions of one ``(request_id, row)`` count once; the first label to arrive for a key is
    kept, later contradicting ones are ignored (:func:`kfloop.labels.first_labels`, the policy
    of the monitor's own join). Rows without a label are left out.

    Returns:
        ``(labels, probabilities, delays)`` numpy arrays (``delays``: seconds from prediction to label, NaN
        when the writer did not record the prediction time).
    """
    import numpy as np
    import pandas as pd

    preds = _key_table(
        P.scan(store_uri, model_name, P.PREDICTIONS, start, end, ["request_id", "row", "probability"]),
        ["request_id", "row", "probability"],
    )
    fb = _key_table(
        P.scan(
            store_uri,
            model_name,
            P.FEEDBACK,
            start,
            start + dt.timedelta(days=horizon_days),
            ["request_id", "row", "label", "timestamp", "delay_s"],
        ),
        ["request_id", "row", "label", "timestamp", "delay_s"],
    )
    empty = (np.array([], dtype=np.int8), np.array([], dtype=np.float32), np.array([], dtype=np.float64))
    if preds is None or fb is None:
        return empty
    p = preds.to_pandas().drop_duplicates(["request_id", "row"], keep="first")
    f = L.first_labels(fb.to_pandas().rename(columns={"timestamp": "ts"}))
    joined = p.merge(f, on=["request_id", "row"], how="inner")
    joined = joined[joined["label"].isin([0, 1])]
    delays = pd.to_numeric(joined["delay_s"], errors="coerce").to_numpy(dtype=np.float64)
    return joined["label"].to_numpy(np.int8), joined["probability"].to_numpy(np.float32), delays


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
        labels, probs, delays = window_labels(store_uri, model_name, start, end, cfg.feedback_horizon_days)
        before_n = int(last.get("labelled_rows") or 0)
        if len(labels) <= before_n:
            continue
        import numpy as np

        live_auc = auc(labels, probs) if len(labels) >= cfg.min_labelled else None
        rec = {
            "backfill": True,
            "of_run": last.get("of_run"),
            "model_name": model_name,
            "window_start": ws,
            "window_end": we,
            "labelled_rows_before": before_n,
            "labelled_rows": len(labels),
            "live_auc_before": last.get("live_auc"),
            "live_auc": live_auc,
            "label_rate": float(labels.mean()),
            "mean_delay_s": float(np.nanmean(delays)) if np.isfinite(delays).any() else None,
            "backfilled_at": clock.iso(now),
        }
        if record:
            rid = f"{end:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}"
            rec["record_uri"] = records.write(store_uri, model_name, KIND, rid, rec)
        out.append(rec)
    return out


def read_backfills(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded backfill, oldest first."""
    return records.read_all(
        store_uri, model_name, KIND, sort_key=lambda r: (r.get("backfilled_at", ""), r.get("window_end", ""))
    )


def latest_live_metrics(store_uri: str, model_name: str) -> list[dict]:
    """Per window (oldest first): ``window_start``, ``window_end``, ``labelled_rows``, ``live_auc`` and
    ``backfilled`` (whether late labels changed them since the window was monitored)."""
    rows = []
    for (ws, we), last in sorted(_latest_by_window(store_uri, model_name).items()):
        rows.append(
            {
                "window_start": ws,
                "window_end": we,
                "labelled_rows": last.get("labelled_rows"),
                "live_auc": last.get("live_auc"),
                "backfilled": bool(last.get("backfill")),
            }
        )
    return rows
