"""Row-level checks of the data gate that a TFDV schema cannot express, each naming the column and line.

TFDV validates statistics, so it cannot point at a line, and three defects pass it unseen:

* a column name repeated in the header (pandas renames the second ``fare`` to ``fare.1``, a "new column"
  that only warns, so the second column was silently dropped);
* a non-finite number (``inf``, ``-Infinity``, ``NaN`` in any case) in a numeric column: TFDV's float
  statistics take ``inf`` without an anomaly, and a ``NaN`` spelled out is not the missing-value token (an
  empty cell);
* an event time outside the accepted range (:class:`kfloop.config.EventTimeRange`; :data:`GENERIC_EVENT_TIMES`
  when the caller names none).

Which columns are numeric comes from the dataset spec (:class:`kfloop.spec.DatasetSpec`) the caller passes.

Both forms of data get them: a raw extract in :func:`kfloop.clean.clean` (``kfloop ingest``, the
ingest task, ``kfloop validate`` / batch prediction on raw files) and a Dataset CSV or DataFrame in
:func:`kfloop.tfdv.ops.run_validation` (the validate task, ``kfloop validate``).

Only the standard library is imported at module level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import re

from kfloop.spec import DatasetSpec, Kind

DUPLICATE_COLUMN = "DUPLICATE_COLUMN_NAME"
NON_FINITE = "NON_FINITE_VALUE"
EVENT_TIME_OUT_OF_RANGE = "EVENT_TIME_OUT_OF_RANGE"

_SHORT = {
    DUPLICATE_COLUMN: "Column name repeated in the header",
    NON_FINITE: "Non-finite number",
    EVENT_TIME_OUT_OF_RANGE: "Event time outside the accepted range",
}

#: What Python's ``float`` and pandas read as infinity or NaN, in any case, with an optional sign.
_NON_FINITE_TOKEN = re.compile(r"[+-]?(inf|infinity|nan)", re.IGNORECASE)

#: Kinds whose Dataset-form columns hold numbers (the label and booleans are 0/1 there; a Dataset CSV may come
#: from elsewhere than kfloop).
_NUMERIC_KINDS = (Kind.NUMERIC, Kind.CATEGORICAL_INT, Kind.BOOLEAN, Kind.TIMESTAMP, Kind.LABEL, Kind.TARGET)

#: The event times accepted when the caller configures none: from the Unix epoch to the wall clock plus a day.
#: Nothing dataset-specific: a negative time (a sentinel, a 1967 clock) or one far in the future (milliseconds
#: read as seconds land in the year 47,000; 2^63-1) is a broken clock or unit in any data set. Data from before
#: 1970 needs an explicit :class:`kfloop.config.EventTimeRange`.
GENERIC_EARLIEST = "1970-01-01"


def generic_event_times():
    """The :class:`kfloop.config.EventTimeRange` of :data:`GENERIC_EARLIEST` .. now + one day."""
    from kfloop import config

    return config.EventTimeRange(earliest=GENERIC_EARLIEST)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One refused defect: the column, what is wrong, and the first row that has it.

    Attributes:
        column: Column name.
        type: :data:`DUPLICATE_COLUMN`, :data:`NON_FINITE` or :data:`EVENT_TIME_OUT_OF_RANGE`.
        message: One line naming the column and the CSV line.
        data_row: 0-based data row of the first offending value (None for a header problem).
        value: That value as text (None for a header problem).
        count: How many rows (or, for a header problem, columns) have it.
    """

    column: str
    type: str
    message: str
    data_row: int | None = None
    value: str | None = None
    count: int = 1

    def finding(self) -> dict:
        """The problem as a blocking finding, in the shape of ``kfloop.tfdv.ops.summarize_anomalies``."""
        out = {
            "feature": self.column,
            "type": self.type,
            "short_description": _SHORT[self.type],
            "description": self.message,
            "blocking": True,
        }
        if self.data_row is not None:
            out["first_row"] = {
                "data_row": self.data_row + 1,
                "csv_line": self.data_row + 2,
                "value": self.value,
            }
        return out


def read_csv_text(payload: bytes, *, empty_as_na: bool):
    """Reads CSV bytes as strings with the header's names exactly as written (a repeated name stays repeated).

    pandas renames a repeated header name (``fare``, ``fare.1``), which hides it; here the header is read as
    a row and becomes the column names, so :func:`duplicate_columns` can see it. An empty header cell is
    named ``Unnamed: <position>`` as pandas does.

    Args:
        payload: The CSV file's bytes.
        empty_as_na: Read empty cells as NaN (else as ``""``).

    Returns:
        A DataFrame of strings with a 0-based RangeIndex (data row 0 is CSV line 2).

    Raises:
        pandas.errors.EmptyDataError, pandas.errors.ParserError, UnicodeDecodeError: as ``pd.read_csv``.
    """
    import pandas as pd

    kw = {"na_values": [""]} if empty_as_na else {}
    frame = pd.read_csv(io.BytesIO(payload), dtype=str, keep_default_na=False, header=None, **kw)
    names = [
        f"Unnamed: {i}" if (not isinstance(v, str) or v == "") else v for i, v in enumerate(frame.iloc[0])
    ]
    frame = frame.iloc[1:].reset_index(drop=True)
    frame.columns = names
    return frame


def duplicate_columns(columns) -> list[Problem]:
    """One problem per column name that the header holds more than once, naming every position (1-based)."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(columns, start=1):
        positions.setdefault(str(name), []).append(i)
    out = []
    for name, where in positions.items():
        if len(where) > 1:
            places = ", ".join(str(p) for p in where)
            out.append(
                Problem(
                    name,
                    DUPLICATE_COLUMN,
                    f"column name {name!r} appears {len(where)} times in the header (columns {places}); "
                    "rename or drop the extra column(s)",
                    count=len(where),
                )
            )
    return out


def _where(series, mask) -> tuple[int, str, int]:
    """``(first 0-based row, its value as text, count)`` of the rows where ``mask`` holds."""
    import numpy as np

    arr = np.asarray(mask, dtype=bool)
    row = int(arr.argmax())
    return row, str(series.iloc[row]).strip(), int(arr.sum())


def _rows(count: int) -> str:
    return f"{count} row{'s' if count != 1 else ''}"


def non_finite(name: str, series) -> Problem | None:
    """The non-finite numbers of one column (``inf``, ``-Infinity``, ``NaN`` written out, overflows).

    Args:
        name: Column name (for the message).
        series: The column, as text (empty / NaN = missing) or as numbers (NaN = missing, the DataFrame form's
            missing-value token).

    Returns:
        A :data:`NON_FINITE` problem naming the first offending CSV line, or None.
    """
    import numpy as np
    import pandas as pd

    series = series.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = pd.to_numeric(series).astype("float64").to_numpy()
        mask = np.isinf(values)
    else:
        text = series.where(series.notna(), "").astype(str).str.strip()
        mask = text.str.fullmatch(_NON_FINITE_TOKEN).to_numpy(dtype=bool)
        numbers = pd.to_numeric(text, errors="coerce")
        mask |= np.isinf(numbers.astype("float64").to_numpy())
        # Numbers too large for a float (1e400) read as NaN in pandas but as inf in Python.
        unparsed = (numbers.isna() & (text != "")).to_numpy() & ~mask
        for i in np.flatnonzero(unparsed):
            with contextlib.suppress(ValueError):
                mask[i] = not np.isfinite(float(text.iloc[i]))
    if not mask.any():
        return None
    row, value, count = _where(series, mask)
    return Problem(
        name,
        NON_FINITE,
        f"column {name!r}: non-finite value {value!r} ({_rows(count)}, first at data row {row + 1}, CSV line "
        f"{row + 2}); a number must be finite, and a missing value is an empty cell",
        row,
        value,
        count,
    )


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat()


def event_time_out_of_range(name: str, series, bounds: tuple[int, int]) -> Problem | None:
    """The event times of one column outside ``bounds`` (inclusive epoch seconds).

    Args:
        name: Column name (for the message).
        series: Epoch seconds as text or numbers; values that are not numbers are left to the type checks.
        bounds: ``(lo, hi)`` from :meth:`kfloop.config.EventTimeRange.bounds`.

    Returns:
        An :data:`EVENT_TIME_OUT_OF_RANGE` problem naming the first offending CSV line, or None.
    """
    import pandas as pd

    series = series.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        numbers = series
    else:
        numbers = pd.to_numeric(series.where(series.notna(), "").astype(str).str.strip(), errors="coerce")
    # Compare as Python numbers: 2^63 - 1 and uint64 values must not wrap or round into the range.
    lo, hi = bounds
    mask = [v is not None and not pd.isna(v) and not (lo <= v <= hi) for v in numbers.astype(object).tolist()]
    if not any(mask):
        return None
    row, value, count = _where(series, mask)
    return Problem(
        name,
        EVENT_TIME_OUT_OF_RANGE,
        f"column {name!r}: event time {value!r} is outside the accepted range {_iso(lo)} .. {_iso(hi)} "
        f"({_rows(count)}, first at data row {row + 1}, CSV line {row + 2}); the range is "
        "kfloop.config.EventTimeRange",
        row,
        value,
        count,
    )


def frame_problems(
    frame, spec: DatasetSpec, bounds: tuple[int, int], extra_numeric: tuple[str, ...] = ()
) -> list[Problem]:
    """Every check of this module on one Dataset-form frame: repeated names, non-finite numbers, event times.

    Args:
        frame: A DataFrame in file order (0-based rows, data row 0 = CSV line 2), as text or typed; a
            repeated column name may be present (:func:`read_csv_text`).
        spec: The dataset spec: which columns hold numbers in Dataset form (numeric, categorical int, boolean,
            the time column and the label) and which is the event time.
        bounds: Accepted event times, inclusive epoch seconds.
        extra_numeric: Numeric columns that are not Dataset columns (e.g. a raw column the label derives from).

    Returns:
        The problems, header first, then per column in frame order; empty when the frame passes.
    """
    out = duplicate_columns(frame.columns)
    time_name = spec.event_time.name if spec.event_time is not None else None
    for i, name in enumerate(frame.columns):
        name = str(name)
        try:
            numeric = spec.feature(name).kind in _NUMERIC_KINDS
        except KeyError:
            numeric = name in extra_numeric
        if not numeric:
            continue
        col = frame.iloc[:, i]
        found = non_finite(name, col)
        if found is None and name == time_name:
            found = event_time_out_of_range(name, col, bounds)
        if found is not None:
            out.append(found)
    return out
