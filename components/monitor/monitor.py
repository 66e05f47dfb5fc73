"""Monitor: the prediction log of a time window (+ arrived feedback) → live dataset, drift, skew, live AUC.

Reads contract-4 prediction records with ``window_start <= timestamp < window_end`` (prediction time, UTC)
and the feedback labels that have arrived for them, then, on the live features:

* TFDV statistics, validated against the training schema in the ``SERVING`` environment (anomalies);
* drift against the champion's *training* data and skew against its *eval* data: every feature's score is
  recorded (also below threshold), so the store keeps a per-feature time series;
* live AUC where labels arrived.

Each run is appended to the store as ``monitoring/<model>/runs/<window_end>-<run id>.json`` (one object
per run; a prefix of small immutable files works the same on a local disk and on GCS, where objects cannot
be appended to). :func:`read_runs` returns the series.

An empty window or a missing log directory is a ``no_traffic`` result, never an error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

from kfloop import config, fs, records
from kfloop import features as F
from kfloop.replay import iso_ms, parse_iso, utc_now

NO_TRAFFIC = "no_traffic"
TOO_FEW = "too_few"
OK = "ok"


class MonitorError(ValueError):
    """Bad monitoring input (a window bound, a reference); the message names it."""


def parse_instant(value, what: str) -> dt.datetime:
    """Parses an ISO date/datetime (UTC if naive) or epoch seconds into an aware UTC datetime.

    Raises:
        MonitorError: ``value`` is empty or not a time; the message names ``what``.
    """
    text = str(value).strip()
    if not text:
        raise MonitorError(f"{what} is empty (use an ISO date/datetime, UTC, or epoch seconds)")
    try:
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
        return parse_iso(text)
    except (ValueError, OverflowError):
        raise MonitorError(
            f"{what} {text!r} is not a time (use an ISO date/datetime, UTC, or epoch seconds)"
        ) from None


def _partition_date(uri: str) -> dt.date | None:
    for part in uri.split("/"):
        if part.startswith("date="):
            try:
                return dt.date.fromisoformat(part[len("date=") :])
            except ValueError:
                return None
    return None


def _jsonl(uri: str, bad: list[str]):
    for n, line in enumerate(fs.read_text(uri).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad.append(f"{uri}:{n}: not JSON")
            continue
        if not isinstance(rec, dict):
            bad.append(f"{uri}:{n}: not an object")
            continue
        yield n, rec


def _files_between(store_uri: str, kind: str, model_name: str, first: dt.date, last: dt.date) -> list[str]:
    prefix = fs.join(store_uri, kind, model_name)
    out = []
    for uri in fs.list_files(prefix):
        day = _partition_date(uri)
        if uri.endswith(".jsonl") and day is not None and first <= day <= last:
            out.append(uri)
    return out


def read_predictions(
    store_uri: str, model_name: str, window_start: dt.datetime, window_end: dt.datetime
) -> tuple[list[dict], list[str]]:
    """Contract-4 records with ``window_start <= timestamp < window_end``, in time order.

    Returns:
        ``(records, bad)``: ``bad`` lists unreadable lines as ``"<uri>:<line>: <why>"`` (skipped, counted).
    """
    bad: list[str] = []
    out = []
    last_day = (window_end - dt.timedelta(microseconds=1)).date()
    for uri in _files_between(store_uri, "predictions", model_name, window_start.date(), last_day):
        for n, rec in _jsonl(uri, bad):
            try:
                when = parse_iso(rec["timestamp"])
                prob = float(rec["probability"])
                feats = rec["features"]
                key = (str(rec["request_id"]), int(rec["row"]))
            except (KeyError, TypeError, ValueError) as e:
                bad.append(f"{uri}:{n}: {type(e).__name__} {e}")
                continue
            if not isinstance(feats, dict):
                bad.append(f"{uri}:{n}: 'features' is not an object")
                continue
            if window_start <= when < window_end:
                out.append({**rec, "_when": when, "_key": key, "probability": prob})
    out.sort(key=lambda r: (r["_when"], r["_key"]))
    return out, bad


def read_feedback(
    store_uri: str, model_name: str, since: dt.datetime, horizon_days: float
) -> tuple[dict[tuple[str, int], int], list[str]]:
    """Arrived labels ``{(request_id, row): label}`` from feedback partitions dated ``since`` .. ``since +
    horizon``. A later line for the same key wins (a corrected label)."""
    bad: list[str] = []
    labels: dict[tuple[str, int], int] = {}
    last = (since + dt.timedelta(days=horizon_days)).date()
    for uri in _files_between(store_uri, "feedback", model_name, since.date(), last):
        for n, rec in _jsonl(uri, bad):
            try:
                key = (str(rec["request_id"]), int(rec["row"]))
                label = int(rec["label"])
            except (KeyError, TypeError, ValueError) as e:
                bad.append(f"{uri}:{n}: {type(e).__name__} {e}")
                continue
            if label not in (0, 1):
                bad.append(f"{uri}:{n}: label {label} is not 0 or 1")
                continue
            labels[key] = label
    return labels, bad


def live_frame(records: list[dict], labels: dict[tuple[str, int], int]):
    """The live dataset: :data:`~kfloop.features.DATASET_COLUMNS` (event time = prediction time, label where
    arrived) plus ``probability``, ``model_version``, ``request_id``, ``row``."""
    import pandas as pd

    data: dict[str, list] = {F.EVENT_TIME.name: [int(r["_when"].timestamp()) for r in records]}
    for f in F.MODEL_FEATURES:
        data[f.name] = [r["features"].get(f.name) for r in records]
    data[F.LABEL.name] = [labels.get(r["_key"]) for r in records]
    frame = pd.DataFrame(data, columns=list(F.DATASET_COLUMNS))
    for f in (*F.MODEL_FEATURES, F.EVENT_TIME, F.LABEL):
        col = frame[f.name]
        if f.kind == F.Kind.NUMERIC:
            frame[f.name] = pd.to_numeric(col, errors="coerce").astype("float64")
        elif f.kind == F.Kind.CATEGORICAL_STR:
            frame[f.name] = col.where(col.notna() & (col.astype(str) != ""), None).astype(object)
        else:
            frame[f.name] = pd.to_numeric(col, errors="coerce").astype("Int64")
    frame["probability"] = [r["probability"] for r in records]
    frame["model_version"] = [str(r.get("model_version", "")) for r in records]
    frame["request_id"] = [r["_key"][0] for r in records]
    frame["row"] = [r["_key"][1] for r in records]
    return frame


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


def _read_reference(uri: str):
    from kfloop import datasets

    try:
        return datasets.read_dataset(uri)
    except FileNotFoundError:
        raise MonitorError(f"reference dataset {uri!r} does not exist") from None


def score(
    live,
    reference_train,
    reference_eval=None,
    *,
    cfg: config.MonitoringConfig,
    schema_path: str | None = None,
):
    """Anomalies of the live data (schema, ``SERVING`` env), and drift / skew scores of every feature.

    Returns:
        ``(anomalies, drift, skew)``: lists of dicts; each score dict is ``{"feature", "measure", "value",
        "threshold", "exceeded", "ignored"}`` (``ignored``: the feature is in ``cfg.drift_ignore``).
    """
    from components.monitor import scoring

    return scoring.score(live, reference_train, reference_eval, cfg=cfg, schema_path=schema_path)


def run_id(window_end: dt.datetime) -> str:
    return f"{window_end:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}"


def monitor(
    store_uri: str,
    model_name: str,
    window_start,
    window_end,
    reference_train: str,
    reference_eval: str = "",
    *,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    schema_path: str | None = None,
    record: bool = True,
    live_uri: str | None = None,
    champion_version: str | None = None,
) -> dict:
    """Monitors one window of prediction time and returns (and records) its summary.

    Args:
        store_uri: Store root holding ``predictions/`` and ``feedback/`` (local dir or ``gs://``).
        model_name: Model name.
        window_start: Inclusive start of the window (ISO, UTC, or epoch seconds).
        window_end: Exclusive end of the window.
        reference_train: Dataset CSV the champion was trained on (drift reference).
        reference_eval: Dataset CSV the champion was evaluated on (skew reference; "" = no skew).
        cfg: Thresholds.
        schema_path: TFDV schema (default: the project's training schema).
        record: Append the summary to ``monitoring/<model>/runs/`` in the store.
        live_uri: Also write the live dataset (CSV, with labels where arrived) there.
        champion_version: Recorded in the summary (which model the references belong to).

    Returns:
        A JSON-ready dict: ``status`` (``ok`` / ``no_traffic`` / ``too_few``), counts, ``live_auc``,
        ``anomalies``, ``drift``, ``skew`` (every feature), bad-record count.

    Raises:
        MonitorError: a window bound is not a time, the window is empty or reversed, or a reference is
            missing.
    """
    start = parse_instant(window_start, "window_start")
    end = parse_instant(window_end, "window_end")
    if end <= start:
        raise MonitorError(f"window_end {iso_ms(end)} is not after window_start {iso_ms(start)}")
    records, bad = read_predictions(store_uri, model_name, start, end)
    labels, bad_fb = read_feedback(store_uri, model_name, start, cfg.feedback_horizon_days)
    frame = live_frame(records, labels)
    labelled = frame[frame[F.LABEL.name].notna()]
    summary: dict = {
        "run_id": run_id(end),
        "model_name": model_name,
        "champion_version": champion_version,
        "window_start": iso_ms(start),
        "window_end": iso_ms(end),
        "monitored_at": iso_ms(utc_now()),
        "rows": len(frame),
        "labelled_rows": len(labelled),
        "bad_records": len(bad) + len(bad_fb),
        "bad_examples": (bad + bad_fb)[:5],
        "model_versions": {str(k): int(v) for k, v in frame["model_version"].value_counts().items()},
        "live_auc": None,
        "label_rate": float(labelled[F.LABEL.name].mean()) if len(labelled) else None,
        "mean_probability": float(frame["probability"].mean()) if len(frame) else None,
        "anomalies": [],
        "drift": [],
        "skew": [],
        "reference": {"train": reference_train, "eval": reference_eval},
    }
    if live_uri:
        from kfloop import datasets

        datasets.write_dataset(frame[list(F.DATASET_COLUMNS)], live_uri)
    if frame.empty:
        summary["status"] = NO_TRAFFIC
    else:
        summary["status"] = OK if len(frame) >= cfg.min_examples else TOO_FEW
        if len(labelled) >= cfg.min_labelled:
            summary["live_auc"] = auc(labelled[F.LABEL.name], labelled["probability"])
        train = _read_reference(reference_train)
        evals = _read_reference(reference_eval) if reference_eval else None
        anomalies, drift, skew = score(frame, train, evals, cfg=cfg, schema_path=schema_path)
        summary.update(anomalies=anomalies, drift=drift, skew=skew)
    if (
        record
    ):  # late labels of earlier windows: recompute their live metrics (components/monitor/backfill.py)
        from components.monitor import backfill

        summary["backfills"] = backfill.backfill_windows(store_uri, model_name, before=start, cfg=cfg)
        summary["record_uri"] = record_run(store_uri, model_name, summary)
    return summary


def record_run(store_uri: str, model_name: str, summary: dict) -> str:
    """Appends one monitoring summary to the store's series; returns its URI."""
    return records.write(store_uri, model_name, "runs", summary["run_id"], summary)


def read_runs(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded monitoring summary, oldest window first (the drift time series)."""
    return records.read_all(
        store_uri, model_name, "runs", sort_key=lambda r: (r.get("window_end", ""), r.get("monitored_at", ""))
    )


def drift_series(runs: list[dict], kind: str = "drift") -> dict[str, list[tuple[str, float]]]:
    """``{feature: [(window_end, value), ...]}`` over the runs (kind ``drift`` or ``skew``)."""
    series: dict[str, list[tuple[str, float]]] = {}
    for r in runs:
        for s in r.get(kind) or []:
            if s.get("value") is not None:
                series.setdefault(s["feature"], []).append((r["window_end"], float(s["value"])))
    return series


@dataclasses.dataclass(frozen=True)
class Window:
    """A monitoring window ``[start, end)`` in prediction time."""

    start: dt.datetime
    end: dt.datetime


def next_window(store_uri: str, model_name: str, end=None, *, lookback_hours: float = 24.0) -> Window:
    """The window since the previous recorded run (or ``lookback_hours`` before ``end``) up to ``end``."""
    end_t = parse_instant(end, "window_end") if end else utc_now()
    runs = read_runs(store_uri, model_name)
    previous = [parse_iso(r["window_end"]) for r in runs if r.get("window_end")]
    previous = [p for p in previous if p < end_t]
    start = max(previous) if previous else end_t - dt.timedelta(hours=lookback_hours)
    return Window(start, end_t)
