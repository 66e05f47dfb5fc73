"""Ingest: a raw CSV cleaned (:mod:`kfloop.clean`) and split into the train / eval / live Dataset files.

The split is by event time (the spec's time column) or, without one, by row position; the eval hold-out is
a deterministic hash of each row's content. Every refusal is a :class:`kfloop.clean.IngestError` naming the
column, line or argument; nothing is written then.
"""

from __future__ import annotations

import dataclasses
import hashlib

from kfloop import config, datasets
from kfloop.clean import IngestError, clean, parse_time, read_raw
from kfloop.spec import DatasetSpec


def _iso(epoch: int) -> str:
    import pandas as pd

    return pd.Timestamp(int(epoch), unit="s", tz="UTC").isoformat()


# ------------------------------------------------------------------------------------------ raw or not


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """Row counts of one ingest run, and the bounds of each window (ISO times, UTC; row positions without a
    time column)."""

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


def _in_eval(frame, fraction: float):
    """Deterministic hold-out: a row goes to eval when the hash of its content falls below ``fraction``."""
    rows = frame.astype(str).agg("|".join, axis=1)
    hashes = rows.map(lambda r: int.from_bytes(hashlib.sha256(r.encode()).digest()[:8], "big"))
    return hashes < int(fraction * 2**64)


def _position(value: str, what: str, rows: int) -> int:
    """A row position (data without a time column): an integer, or a fraction of the rows in (0, 1)."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise IngestError(
            f"{what} {value!r} is not a row position (the spec has no time column: use a row number or a "
            "fraction of the rows such as 0.5)"
        ) from None
    if 0 < number < 1 and not text.isdigit():
        return int(number * rows)
    if number != int(number):
        raise IngestError(f"{what} {value!r} is not a whole row number or a fraction in (0, 1)")
    return int(number)


def ingest(
    source: str,
    spec: DatasetSpec,
    cutoff: str,
    train_uri: str,
    eval_uri: str,
    live_uri: str,
    window_start: str = "",
    live_end: str = "",
    eval_fraction: float = 0.2,
    event_times: config.EventTimeRange | None = None,
) -> IngestResult:
    """Reads ``source`` (raw or Dataset form), cleans it, splits it and writes the three Dataset CSVs.

    With a time column, rows with ``window_start <= t < cutoff`` form the training window, of which a
    deterministic ``eval_fraction`` (by row hash) becomes eval; rows with ``cutoff <= t < live_end`` are
    live. Without one, the file's row order stands in for time: ``cutoff``, ``window_start`` and
    ``live_end`` are row positions (0-based; an integer, or a fraction of the rows such as ``0.5``).

    Args:
        source: CSV, a local path or ``gs://`` URI.
        spec: The dataset spec.
        cutoff: Start of the live window (ISO date/datetime, UTC, or epoch seconds; a row position without a
            time column); ``""``: the middle row's time (or position).
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
    frame = clean(read_raw(source), spec, event_times)
    if spec.event_time is not None:
        name = spec.event_time.name
        frame = frame.sort_values(name, kind="stable").reset_index(drop=True)
        t = frame[name].astype("int64")
        first, last = int(t.min()), int(t.max())
        cut = parse_time(cutoff, "cutoff") if str(cutoff).strip() else int(t.iloc[len(t) // 2])
        if not first < cut <= last:
            raise IngestError(
                f"cutoff {cutoff!r} is outside the data, which spans {_iso(first)} .. {_iso(last)}"
            )
        start = parse_time(window_start, "window_start") if window_start else first
        end = parse_time(live_end, "live_end") if live_end else last + 1
        show = _iso
    else:
        import pandas as pd

        t = pd.Series(range(len(frame)), index=frame.index)
        first, last = 0, len(frame) - 1
        cut = _position(cutoff, "cutoff", len(frame)) if str(cutoff).strip() else len(frame) // 2
        if not first < cut <= last:
            raise IngestError(f"cutoff {cutoff!r} is outside the data, which has rows 0 .. {last}")
        start = _position(window_start, "window_start", len(frame)) if window_start else first
        end = _position(live_end, "live_end", len(frame)) if live_end else last + 1
        show = str
    if start >= cut:
        raise IngestError(f"window_start {window_start!r} is not before cutoff {cutoff!r}")
    if end <= cut:
        raise IngestError(f"live_end {live_end!r} is not after cutoff {cutoff!r}")

    history = frame[(t >= start) & (t < cut)]
    live = frame[(t >= cut) & (t < end)]
    held_out = _in_eval(history, eval_fraction)
    train, evals = history[~held_out], history[held_out]
    if train.empty or evals.empty:
        raise IngestError(f"the training window {show(start)} .. {show(cut)} has too few rows to split")
    for part, uri in ((train, train_uri), (evals, eval_uri), (live, live_uri)):
        datasets.write_dataset(part, uri)
    return IngestResult(
        rows_read=len(frame),
        train_rows=len(train),
        eval_rows=len(evals),
        live_rows=len(live),
        train_window=(show(start), show(cut)),
        live_window=(show(cut), show(min(end, last + 1))),
    )
