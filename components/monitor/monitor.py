"""Monitor: the prediction log of a time window (+ arrived feedback) → live statistics, drift, skew, live AUC.

Streams the Parquet prediction log (:mod:`kfloop.predlog`) rows with ``window_start <= timestamp <
window_end`` (prediction time, UTC) and joins the feedback labels that have arrived for them on
``(request_id, row)`` (:mod:`components.monitor.stream`, bounded memory), then, on the live features:

* TFDV statistics, validated against the training schema in the ``SERVING`` environment (anomalies);
* drift against the champion's *training* statistics and skew against its *eval* statistics, stored with
  its version at push time (:mod:`kfloop.reference`): every feature's score is recorded (also
  below threshold), so the store keeps a per-feature time series;
* the task's live metric where labels arrived (binary AUC; regression RMSE and MAE; multiclass accuracy
  and log loss) and its retrain rule, stated (``performance``, :mod:`components.monitor.live`);
* the drift of the model's output (label-free, every task) vs the champion's eval predictions kept with
  its reference (``output_drift``; unavailable for a reference without them).

Each run is appended to the store as ``monitoring/<model>/runs/<window_end>-<run id>.json`` (one object
per run; a prefix of small immutable files works the same on a local disk and on GCS, where objects cannot
be appended to). :func:`read_runs` returns the series.

An empty window or a missing log directory is a ``no_traffic`` result, never an error. A bad row (empty
id, an output that is not the task's, a non-finite feature, a duplicate ``(request_id, row)``, a timestamp
outside its date partition, a label that is not the task's) is skipped and counted by reason; a corrupt or truncated file is
skipped and named in the summary. Neither reaches the statistics.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid

from components.monitor.runs import drift_series, read_runs, record_run  # noqa: F401 (re-exported)
from kfloop import clock, config, fs

NO_TRAFFIC = "no_traffic"
TOO_FEW = "too_few"
OK = "ok"


class MonitorError(ValueError):
    """Bad monitoring input (a window bound, a reference); the message names it."""


def _instant(value, what: str) -> dt.datetime:
    """:func:`kfloop.clock.parse_instant`, raising :class:`MonitorError`."""
    try:
        return clock.parse_instant(value, what)
    except clock.ClockError as e:
        raise MonitorError(str(e)) from None


def _live_frame(table, labels, spec):
    """A bucket's rows as the live dataset: the spec's ``dataset_columns`` (event time = prediction time,
    label where arrived) plus the output column (``probability`` / ``prediction`` / ``probabilities``, a
    list per row), ``model_version``, ``request_id``, ``row``."""
    import numpy as np
    import pandas as pd

    from components.monitor import stream

    frame = table.select(list(spec.input_names)).to_pandas()
    if spec.event_time is not None:
        secs = table.column("timestamp").combine_chunks().cast("int64").to_numpy() // 1_000_000
        frame.insert(0, spec.event_time.name, pd.array(secs, dtype="Int64"))
    for f in spec.model_features:
        if f.kind == "numeric":
            frame[f.name] = frame[f.name].astype("float64")
        elif f.kind in ("categorical_int", "boolean"):
            frame[f.name] = frame[f.name].astype("Int64")
    has = ~np.isnan(labels)
    if spec.task.value == "regression":
        frame[spec.label.name] = pd.array(labels, dtype="Float64")
    else:
        label = pd.array(np.where(has, labels, 0).astype("int64"), dtype="Int64")
        label[~has] = pd.NA
        frame[spec.label.name] = label
    out = stream.outputs_of(table, spec)
    frame[stream.output_column(spec)] = list(out) if out.ndim == 2 else out
    frame["model_version"] = table.column("model_version").to_pandas()
    frame["request_id"] = table.column("request_id").to_pandas()
    frame["row"] = table.column("row").combine_chunks().to_numpy()
    return frame


def read_live(store_uri: str, model_name: str, window_start, window_end, horizon_days: float = 30.0, *, spec):
    """The live dataset of a window as one DataFrame (small windows, tests), in time order, through the
    same streaming path as :func:`monitor`; ``spec`` is the model's :class:`kfloop.spec.DatasetSpec`.

    Returns:
        ``(frame, stats)``: see :func:`_live_frame`; ``stats`` the
        :class:`~components.monitor.stream.WindowStats` (bad rows by reason, corrupt files).
    """
    import tempfile

    import pandas as pd

    from components.monitor import stream

    start = _instant(window_start, "window_start")
    end = _instant(window_end, "window_end")
    parts = []
    with tempfile.TemporaryDirectory(prefix="kfloop-live-") as tmp:
        ws, _ = stream.process_window(
            store_uri,
            model_name,
            start,
            end,
            start + dt.timedelta(days=horizon_days),
            spec=spec,
            bounds={},
            stage_dir=tmp,
            on_rows=lambda t, lab: parts.append(_live_frame(t, lab, spec)),
        )
    if not parts:
        cols = [*spec.dataset_columns, stream.output_column(spec), "model_version", "request_id", "row"]
        return pd.DataFrame(columns=cols), ws
    frame = pd.concat(parts, ignore_index=True)
    order = [spec.event_time.name] if spec.event_time is not None else []
    frame = frame.sort_values([*order, "request_id", "row"], kind="stable").reset_index(drop=True)
    return frame, ws


def auc(labels, scores) -> float | None:
    """ROC AUC (Mann-Whitney, ties count half); ``None`` unless both classes are present."""
    import pandas as pd

    y = pd.Series(list(labels), dtype="float64")
    s = pd.Series(list(scores), dtype="float64")
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos == 0 or neg == 0:
        return None
    ranks = s.rank(method="average")
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def closed_end(
    end: dt.datetime, close_after_seconds: float, scan_time: dt.datetime | None = None
) -> dt.datetime:
    """The end of a window that a scan at ``scan_time`` (default: now) may close: ``end``, or the watermark.

    A predictor stamps a row when it answers and publishes it with its next log flush, so rows stamped up
    to a flush interval (plus the write) before the scan may not be in the log yet. A window is closed only
    up to ``scan_time - close_after_seconds``; the next run starts at the recorded (closed) end
    (:func:`next_window`), so a row that arrives late falls in the next window, never in none.
    """
    watermark = (scan_time or clock.utc_now()) - dt.timedelta(seconds=close_after_seconds)
    return min(end, watermark)


def run_id(window_end: dt.datetime) -> str:
    return f"{window_end:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}"


def monitor(
    store_uri: str,
    model_name: str,
    window_start,
    window_end,
    reference_train: str = "",
    reference_eval: str = "",
    *,
    spec,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    schema_path: str | None = None,
    record: bool = True,
    live_uri: str | None = None,
    champion_version: str | None = None,
    reference=None,
    beam_pipeline_args=(),
    staging_dir: str | None = None,
) -> dict:
    """Monitors one window of prediction time and returns (and records) its summary.

    The window is streamed (:mod:`components.monitor.stream`): only its date partitions are listed, rows
    are filtered on their timestamp, bad rows and corrupt files are skipped and counted with their reason,
    and the rows go as record batches into the TFDV statistics pipeline (Beam; ``beam_pipeline_args``
    passes through). Memory does not grow with the window beyond the statistics sketches.

    Args:
        store_uri: Store root holding ``predictions/`` and ``feedback/`` (local dir or ``gs://``).
        model_name: Model name.
        window_start: Inclusive start of the window (ISO, UTC, or epoch seconds).
        window_end: Exclusive end of the window.
        reference_train: The champion's stored reference folder (:mod:`kfloop.reference`), or
            the Dataset CSV it was trained on (the reference is then computed from it).
        reference_eval: With a training CSV: the eval CSV (skew reference; "" = no skew).
        spec: The champion's :class:`kfloop.spec.DatasetSpec` (stored with its version): features, label,
            time column and per-feature drift thresholds and modes.
        cfg: Window, label and skew settings.
        schema_path: The champion's TFDV schema (stored with its version).
        record: Append the summary to ``monitoring/<model>/runs/`` in the store.
        live_uri: Also write the live dataset (CSV, with labels where arrived) there.
        champion_version: Recorded in the summary (which model the reference belongs to).
        reference: A loaded :class:`~kfloop.reference.Reference` (instead of
            ``reference_train``).
        beam_pipeline_args: Beam options for the statistics pipeline (e.g. ``--runner=DataflowRunner``).
        staging_dir: Where the record batches are staged for the Beam workers (``gs://`` for a remote
            runner; default: a temporary local folder).

    Returns:
        A JSON-ready dict: ``status`` (``ok`` / ``no_traffic`` / ``too_few``), ``task``, counts, the live
        metrics (``live_metrics``; top level ``live_auc``, regression ``live_rmse`` / ``live_mae``,
        multiclass ``live_accuracy`` / ``live_log_loss``), ``performance`` (the task's retrain rule,
        stated), ``output_drift``, ``anomalies``, ``drift``, ``skew`` (every feature), bad records by
        reason, corrupt files by name.

    Raises:
        MonitorError: a window bound is not a time, the window is empty or reversed, or a reference is
            missing.
    """
    import tempfile

    from components.monitor import live as LV
    from components.monitor import scoring, stream
    from kfloop import reference as R
    from kfloop.tfdv import ops as V

    start = _instant(window_start, "window_start")
    requested_end = _instant(window_end, "window_end")
    if requested_end <= start:
        raise MonitorError(
            f"window_end {clock.iso(requested_end)} is not after window_start {clock.iso(start)}"
        )
    end = closed_end(requested_end, cfg.close_after_seconds)
    if end <= start:
        raise MonitorError(
            f"window {clock.iso(start)} .. {clock.iso(requested_end)} is not closed yet: rows stamped in it may still "
            f"reach the log for {cfg.close_after_seconds:g} s (close_after_seconds); run again after "
            f"{clock.iso(start + dt.timedelta(seconds=cfg.close_after_seconds))}"
        )
    if schema_path is None:  # no stored schema: the one the spec alone implies
        schema_path = _spec_schema_file(spec)
    if reference is None:
        if not reference_train:
            raise MonitorError("no reference: give the champion's reference folder or training CSV")
        try:
            reference = R.reference_for(
                reference_train,
                reference_eval,
                spec=spec,
                cfg=cfg,
                schema_path=schema_path,
                beam_pipeline_args=beam_pipeline_args,
            )
        except R.ReferenceError_ as e:
            raise MonitorError(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="kfloop-monitor-stage-") as tmp:
        live = _LiveCsv(os.path.join(tmp, "live.csv"), spec) if live_uri else None
        try:
            ws, paths = stream.process_window(
                store_uri,
                model_name,
                start,
                end,
                start + dt.timedelta(days=cfg.feedback_horizon_days),
                spec=spec,
                bounds=reference.bounds,
                stage_dir=staging_dir or tmp,
                on_rows=live.add if live else None,
                output_ref=reference.output,
            )
        finally:
            if live:
                live.close()
        if live:
            with open(live.path, "rb") as f:
                fs.write_bytes(live_uri, f.read())
        bad = [f"{r}: {n}" for r, n in ws.bad_predictions.most_common()]
        bad += [f"feedback {r}: {n}" for r, n in ws.bad_feedback.most_common()]
        bad += [f"corrupt file {u}: {why}" for u, why in ws.corrupt_files]
        task = spec.task.value
        summary: dict = {
            "task": task,
            "run_id": run_id(end),
            "model_name": model_name,
            "champion_version": champion_version or reference.version,
            "spec_name": spec.name,
            "spec_sha256": spec.digest(),
            "window_start": clock.iso(start),
            "window_end": clock.iso(end),
            "requested_window_end": clock.iso(requested_end),
            "close_after_seconds": cfg.close_after_seconds,
            "monitored_at": clock.iso(clock.utc_now()),
            "rows": ws.rows,
            "labelled_rows": ws.labelled_rows,
            "label_provenance": dataclasses.replace(ws.labels, labelled_rows=ws.labelled_rows).as_dict(),
            "bad_records": ws.bad_total(),
            "bad_examples": bad[:5],
            "bad_reasons": {"predictions": dict(ws.bad_predictions), "feedback": dict(ws.bad_feedback)},
            "corrupt_files": [{"uri": u, "reason": why} for u, why in ws.corrupt_files],
            "log_files": {"predictions": ws.files, "feedback": ws.feedback_files},
            "model_versions": dict(ws.model_versions),
            "live_auc": None,
            "label_rate": ws.positives / ws.labelled_rows if ws.labelled_rows and task == "binary" else None,
            "mean_probability": ws.probability_sum / ws.rows if ws.rows and task == "binary" else None,
            "anomalies": [],
            "drift": [],
            "skew": [],
            "reference": {
                "uri": reference.uri,
                "train": reference.meta.get("train", ""),
                "eval": reference.meta.get("eval", ""),
            },
        }
        if ws.rows == 0:
            summary["status"] = NO_TRAFFIC
        else:
            summary["status"] = OK if ws.rows >= cfg.min_examples else TOO_FEW
            enough = ws.labelled_rows >= cfg.min_labelled
            metrics = {k: v if enough or k == "n" else None for k, v in LV.live_metrics(ws).items()}
            summary["live_metrics"] = metrics
            for k in ("auc", "rmse", "mae", "accuracy", "log_loss"):
                if k in metrics:
                    summary[f"live_{k}"] = metrics[k]
            version = champion_version or reference.version
            champ = LV.champion_metrics(store_uri, model_name, version, reference) if task != "binary" else {}
            summary["champion_eval_metrics"] = champ or None
            summary["performance"] = LV.performance(task, metrics, champ, cfg, enough)
            summary["output_drift"] = LV.output_drift(reference.output, ws.output_counts, cfg, ws)
            if task == "regression":
                summary["mean_prediction"] = metrics["mean_prediction"] if enough else ws.output_sum / ws.rows
            elif task == "multiclass":
                summary["mean_probabilities"] = [float(v) / ws.rows for v in ws.probability_sums]
            schema = V.load_schema(schema_path)
            raw_stats, clipped_stats = scoring.statistics(
                paths, spec=spec, schema=schema, beam_pipeline_args=beam_pipeline_args
            )
            V.check_count(raw_stats, ws.rows)
            anomalies, drift, skew = scoring.score_statistics(
                raw_stats, clipped_stats, reference, spec=spec, cfg=cfg, schema=schema
            )
            summary.update(anomalies=anomalies, drift=drift, skew=skew)
    if record:
        # late labels of earlier windows: recompute their live metrics (components/monitor/backfill.py)
        from components.monitor import backfill

        summary["backfills"] = backfill.backfill_windows(
            store_uri, model_name, before=start, cfg=cfg, spec=spec
        )
        summary["record_uri"] = record_run(store_uri, model_name, summary)
    return summary


def _spec_schema_file(spec) -> str:
    """A temporary file holding the TFDV schema the spec alone implies (:func:`kfloop.tfdv.ops.spec_schema`)."""
    import tempfile

    from kfloop.tfdv import ops as V
    from kfloop.tfdv import schema as S

    fd, path = tempfile.mkstemp(prefix="kfloop-spec-schema-", suffix=".pbtxt")
    with os.fdopen(fd, "w") as f:
        f.write(S.to_text(V.spec_schema(spec), spec))
    return path


class _LiveCsv:
    """The live dataset CSV, appended one bucket at a time (bounded memory)."""

    def __init__(self, path: str, spec):
        self.path, self.spec = path, spec
        self._f = open(path, "w", newline="")  # noqa: SIM115 - closed in close()
        self._header = True

    def add(self, table, labels) -> None:
        _live_frame(table, labels, self.spec)[list(self.spec.dataset_columns)].to_csv(
            self._f, index=False, header=self._header, na_rep="", lineterminator="\r\n"
        )  # CRLF, as kfloop.datasets.write_dataset (a value holding a carriage return stays quoted)
        self._header = False

    def close(self) -> None:
        if self._header:
            self._f.write(",".join(self.spec.dataset_columns) + "\r\n")
        self._f.close()


def version_spec(store_uri: str, model_name: str, ref: str = "champion"):
    """The dataset spec and TFDV schema stored with a model version (the model contract).

    Returns:
        ``(version, spec, schema_path)``: ``schema_path`` is a local copy of the version's
        ``schema.pbtxt``, or None when the version has none.

    Raises:
        MonitorError: no such version, or it has no spec (names the version and the file).
    """
    from kfloop import contract
    from kfloop import store as kstore
    from kfloop.spec import SpecError

    st = kstore.ModelStore(store_uri)
    try:
        version = st.resolve(model_name, ref)
    except kstore.StoreError as e:
        raise MonitorError(f"no {ref} of model {model_name!r} to monitor: {e}") from None
    model_dir = st.model_uri(model_name, version)
    try:
        spec = contract.read_spec(model_dir)
    except (FileNotFoundError, SpecError) as e:
        raise MonitorError(f"model {model_name!r} {version}: {e}") from None
    schema_uri = contract.schema_uri(model_dir)
    schema_path = fs.local_copy(schema_uri) if fs.exists(schema_uri) else None
    return version, spec, schema_path


@dataclasses.dataclass(frozen=True)
class Window:
    """A monitoring window ``[start, end)`` in prediction time."""

    start: dt.datetime
    end: dt.datetime


def next_window(store_uri: str, model_name: str, end=None, *, lookback_hours: float = 24.0) -> Window:
    """The window since the previous recorded run (or ``lookback_hours`` before ``end``) up to ``end``."""
    end_t = _instant(end, "window_end") if end else clock.utc_now()
    runs = read_runs(store_uri, model_name)
    previous = [clock.parse(r["window_end"]) for r in runs if r.get("window_end")]
    previous = [p for p in previous if p < end_t]
    start = max(previous) if previous else end_t - dt.timedelta(hours=lookback_hours)
    return Window(start, end_t)
