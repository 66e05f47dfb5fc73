"""Ingest: read the raw taxi CSV, clean types, derive the label, split by time."""

from __future__ import annotations

import dataclasses
import hashlib

from kfloop import config, datasets, fs
from kfloop import features as F
from kfloop import row_checks as checks


class IngestError(ValueError):
    """Bad input data; the message names the column or value."""


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """Row counts of one ingest run, and the time bounds of each window (ISO, UTC)."""

    rows_read: int
    train_rows: int
    eval_rows: int
    live_rows: int
    train_window: tuple[str, str]
    live_window: tuple[str, str]

    def metrics(self) -> dict[str, float]:
        return {
            "rows_read": self.rows_read,
            "train_rows": self.train_rows,
            "eval_rows": self.eval_rows,
            "live_rows": self.live_rows,
        }


def parse_time(value: str, what: str) -> int:
    """Parses an ISO date / datetime (UTC) or epoch seconds into epoch seconds."""
    import pandas as pd

    value = str(value).strip()
    try:
        if value.lstrip("-").isdigit():
            return int(value)
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise IngestError(f"{what} {value!r} is not a date (use YYYY-MM-DD or epoch seconds)") from None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.timestamp())


def _iso(epoch: int) -> str:
    import pandas as pd

    return pd.Timestamp(int(epoch), unit="s", tz="UTC").isoformat()


def clean(raw, event_times: config.EventTimeRange = config.EventTimeRange()):
    """Types a raw taxi frame (all columns as strings) and derives the label; returns a DataFrame.

    Args:
        raw: The extract as strings, in file order (data row 0 = CSV line 2), e.g. from :func:`read_raw`.
        event_times: The event times accepted (:class:`kfloop.config.EventTimeRange`).

    Raises:
        IngestError: a column name is repeated, a required column is missing, a value cannot be read as its
            column's type, a number is not finite (``inf``, ``NaN`` written out) or an event time is outside
            ``event_times``; the message names the column and the CSV line.
    """
    import pandas as pd

    raw = raw.reset_index(drop=True)
    repeated = checks.duplicate_columns(raw.columns)
    if repeated:
        raise IngestError("; ".join(p.message for p in repeated))
    missing = [c for c in F.RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise IngestError(f"missing column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=raw.index)
    numeric_kinds = (F.Kind.NUMERIC, F.Kind.CATEGORICAL_INT, F.Kind.TIMESTAMP)
    for name in (F.EVENT_TIME.name, *(f.name for f in F.MODEL_FEATURES), F.TIPS):
        kind = F.Kind.NUMERIC if name == F.TIPS else F.feature(name).kind
        col = raw[name].str.strip()
        if kind not in numeric_kinds:
            out[name] = col.where(col != "", None)
            continue
        infinite = checks.non_finite(name, col)
        if infinite is not None:
            raise IngestError(infinite.message)
        values = pd.to_numeric(col, errors="coerce")
        bad = values.isna() & col.notna() & (col != "")
        if bad.any():
            row = int(bad.idxmax())
            raise IngestError(
                f"column {name!r}: non-numeric value {col[row]!r} (data row {row + 1}, CSV line {row + 2})"
            )
        if kind == F.Kind.NUMERIC:
            out[name] = values.astype("float64")
            continue
        frac = values.notna() & (values != values.round())
        if frac.any():
            row = int(frac.idxmax())
            raise IngestError(f"column {name!r}: non-integer value {col[row]!r} (CSV line {row + 2})")
        if kind == F.Kind.TIMESTAMP:
            outside = checks.event_time_out_of_range(name, values, event_times.bounds())
            if outside is not None:
                raise IngestError(outside.message)
        out[name] = values.astype("Int64")
    if out[F.EVENT_TIME.name].isna().any():
        row = int(out[F.EVENT_TIME.name].isna().idxmax())
        raise IngestError(f"column {F.EVENT_TIME.name!r}: empty event time (CSV line {row + 2})")
    label = (out[F.TIPS] > F.BIG_TIP_SHARE * out["fare"]).astype("Int64")
    out[F.LABEL.name] = label.where(out[F.TIPS].notna() & out["fare"].notna(), pd.NA)
    return out[list(F.DATASET_COLUMNS)]


def read_raw(source: str):
    """Reads a raw taxi CSV (local path or ``gs://``) as strings, one row per trip, in file order.

    A column name repeated in the header stays repeated (:func:`kfloop.row_checks.read_csv_text`), so
    that :func:`clean` refuses it instead of the second column being dropped.

    Raises:
        IngestError: the file does not exist, is empty, is not a readable CSV or has no rows.
    """
    import pandas as pd

    try:
        payload = fs.read_bytes(source)
    except FileNotFoundError:
        raise IngestError(f"input {source!r} does not exist") from None
    if not payload.strip():
        raise IngestError(f"input {source!r} is empty")
    try:
        raw = checks.read_csv_text(payload, empty_as_na=False)
    except pd.errors.EmptyDataError:
        raise IngestError(f"input {source!r} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise IngestError(f"input {source!r} is not a readable CSV: {e}") from None
    if raw.empty:
        raise IngestError(f"input {source!r} has a header but no rows")
    return raw


def is_raw(columns) -> bool:
    """Whether a header is the raw extract form: it has the ``tips`` column and no derived label."""
    names = set(columns)
    return F.TIPS in names and F.LABEL.name not in names


def _in_eval(frame, fraction: float):
    """Deterministic hold-out: a row goes to eval when the hash of its content falls below ``fraction``."""
    rows = frame.astype(str).agg("|".join, axis=1)
    hashes = rows.map(lambda r: int.from_bytes(hashlib.sha256(r.encode()).digest()[:8], "big"))
    return hashes < int(fraction * 2**64)


def ingest(
    source: str,
    cutoff: str,
    train_uri: str,
    eval_uri: str,
    live_uri: str,
    window_start: str = "",
    live_end: str = "",
    eval_fraction: float = 0.2,
    event_times: config.EventTimeRange = config.EventTimeRange(),
) -> IngestResult:
    """Reads ``source``, splits it by event time and writes the three Dataset CSVs.

    Rows with ``window_start <= t < cutoff`` form the training window, of which a deterministic
    ``eval_fraction`` (by row hash) becomes eval; rows with ``cutoff <= t < live_end`` are live.

    Args:
        source: Raw taxi CSV, a local path or ``gs://`` URI.
        cutoff: Start of the live window (ISO date/datetime, UTC, or epoch seconds).
        train_uri: Where to write the training split.
        eval_uri: Where to write the eval split.
        live_uri: Where to write the live window.
        window_start: Optional start of the training window (default: the first row).
        live_end: Optional end of the live window, exclusive (default: after the last row).
        eval_fraction: Share of the training window held out for eval, in (0, 1).
        event_times: The event times accepted; a row outside is refused (:func:`clean`).

    Raises:
        IngestError: bad input (repeated or missing column, non-numeric or non-finite value, event time out
            of range, empty file, cutoff outside the data); nothing is written then.
    """

    if not 0.0 < eval_fraction < 1.0:
        raise IngestError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    frame = (
        clean(read_raw(source), event_times)
        .sort_values(F.EVENT_TIME.name, kind="stable")
        .reset_index(drop=True)
    )

    t = frame[F.EVENT_TIME.name].astype("int64")
    first, last = int(t.min()), int(t.max())
    cut = parse_time(cutoff, "cutoff")
    if not first < cut <= last:
        raise IngestError(f"cutoff {cutoff!r} is outside the data, which spans {_iso(first)} .. {_iso(last)}")
    start = parse_time(window_start, "window_start") if window_start else first
    end = parse_time(live_end, "live_end") if live_end else last + 1
    if start >= cut:
        raise IngestError(f"window_start {window_start!r} is not before cutoff {cutoff!r}")
    if end <= cut:
        raise IngestError(f"live_end {live_end!r} is not after cutoff {cutoff!r}")

    history = frame[(t >= start) & (t < cut)]
    live = frame[(t >= cut) & (t < end)]
    held_out = _in_eval(history, eval_fraction)
    train, evals = history[~held_out], history[held_out]
    if train.empty or evals.empty:
        raise IngestError(f"the training window {_iso(start)} .. {_iso(cut)} has too few rows to split")
    for part, uri in ((train, train_uri), (evals, eval_uri), (live, live_uri)):
        datasets.write_dataset(part, uri)
    return IngestResult(
        rows_read=len(frame),
        train_rows=len(train),
        eval_rows=len(evals),
        live_rows=len(live),
        train_window=(_iso(start), _iso(cut)),
        live_window=(_iso(cut), _iso(min(end, last + 1))),
    )
