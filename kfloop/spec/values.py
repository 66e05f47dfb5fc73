"""Vectorised value conversions behind :class:`kfloop.spec.DatasetSpec` (missing tokens, booleans, times).

pandas and numpy are imported inside the functions (this module is imported by ``kfloop.spec``, which must
import without them). Every function works with pandas 1.5 and 2.x.

Line numbers: a value at position ``i`` of a series is reported on CSV line ``first_line + i`` (by default
2: the header is line 1, the first row line 2). This assumes the series holds the CSV rows in order, from
the first one on, with no quoted newlines; pass ``first_line`` for a later chunk.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import math
from collections.abc import Iterable

#: Raw values of a boolean column (compared case-insensitively, after stripping blanks).
TRUE_TOKENS = frozenset({"true", "yes", "1", "t"})
FALSE_TOKENS = frozenset({"false", "no", "0", "f"})


class SpecDataError(ValueError):
    """Data does not fit its dataset spec. ``str(error)`` is one line naming the column, line and value.

    Attributes:
        column: The column (or spec key) concerned.
        line: The CSV line of the offending value (``None`` when not about one value).
        value: The offending value (``None`` when not about one value).
    """

    def __init__(self, message: str, column: str | None = None, line: int | None = None, value=None):
        self.column, self.line, self.value = column, line, value
        super().__init__(" ".join(str(message).split()))


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_missing(series, tokens: Iterable[str] = ("",)):
    """Boolean mask of missing values: NaN / None / NA, and (for text) any of the missing ``tokens``.

    Numeric series also match the tokens that are numbers (``"-999"`` matches ``-999.0``); datetime and
    other typed series only their own missing values.
    """
    import pandas as pd

    tokens = list(tokens)
    mask = series.isna()
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        numbers = []
        for t in tokens:
            with contextlib.suppress(ValueError):
                numbers.append(float(t))
        if numbers:
            mask = mask | series.isin(numbers)
    elif tokens and (
        pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)
    ):
        mask = mask | series.isin(tokens)
    return mask.fillna(True).astype(bool)


def _first_bad(series, bad, first_line: int):
    """(line, value) of the first True of ``bad``."""
    import numpy as np

    pos = int(np.flatnonzero(bad.to_numpy(dtype=bool))[0])
    return first_line + pos, series.iloc[pos]


def numbers(series, missing, column: str, what: str, first_line: int = 2):
    """The series as float64 (NaN where ``missing``).

    Raises:
        SpecDataError: a value that is not missing is not a finite number (names column, line, value).
    """
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype):  # bool included: True / False are 1 / 0
        values = series.astype("float64")
    else:
        values = pd.to_numeric(series.where(~missing), errors="coerce").astype("float64")
    values = values.where(~missing)
    bad = ~missing & ~np.isfinite(values.to_numpy(dtype="float64"))
    if bad.any():
        line, value = _first_bad(series, pd.Series(bad), first_line)
        raise SpecDataError(f"{column}: line {line}: {_shown(value)} is not {what}", column, line, value)
    return values


def _int_array(values, missing, index, name):
    """An Int64 series from int64 ``values`` with NA where ``missing``."""
    import numpy as np
    import pandas as pd

    mask = np.asarray(missing, dtype=bool)
    data = np.where(mask, 0, values).astype("int64")
    return pd.Series(pd.arrays.IntegerArray(data, mask.copy()), index=index, name=name)


def integers(series, missing, column: str, what: str = "an integer", first_line: int = 2):
    """The series as Int64 (NA where ``missing``).

    Raises:
        SpecDataError: a value that is not missing is not a whole number.
    """
    import numpy as np
    import pandas as pd

    if pd.api.types.is_integer_dtype(series.dtype) and not missing.any():
        return _int_array(series.to_numpy(dtype="int64"), missing, series.index, series.name)
    values = numbers(series, missing, column, what, first_line).to_numpy(dtype="float64")
    bad = ~missing.to_numpy(dtype=bool) & (np.floor(np.nan_to_num(values)) != np.nan_to_num(values))
    if bad.any():
        line, value = _first_bad(series, pd.Series(bad), first_line)
        raise SpecDataError(f"{column}: line {line}: {_shown(value)} is not {what}", column, line, value)
    return _int_array(np.nan_to_num(values).astype("int64"), missing, series.index, series.name)


def booleans(series, missing, column: str, first_line: int = 2):
    """A boolean column (true/false, yes/no, 1/0, t/f in any case) as Int64 0/1 (NA where ``missing``).

    Raises:
        SpecDataError: a value that is not missing is none of those.
    """
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return _int_array(series.fillna(False).to_numpy(dtype="int64"), missing, series.index, series.name)
    text = series.astype(str).str.strip().str.lower()
    # Floats 1.0 / 0.0 (a numeric column read by pandas) count as 1 / 0.
    text = text.where(~text.isin(["1.0", "0.0"]), text.str[0])
    ones = text.isin(TRUE_TOKENS).to_numpy(dtype=bool)
    zeros = text.isin(FALSE_TOKENS).to_numpy(dtype=bool)
    miss = missing.to_numpy(dtype=bool)
    bad = ~miss & ~ones & ~zeros
    if bad.any():
        line, value = _first_bad(series, pd.Series(bad), first_line)
        raise SpecDataError(
            f"{column}: line {line}: {_shown(value)} is not a boolean (true/false, yes/no, 1/0, t/f)",
            column,
            line,
            value,
        )
    return _int_array(ones.astype(np.int64), miss, series.index, series.name)


def _iso_seconds(value) -> int | None:
    """Epoch seconds (floor) of one ISO 8601 value; naive times are UTC. None: not ISO 8601."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return calendar.timegm(moment.utctimetuple())


def event_seconds(series, fmt: str, column: str, tokens: Iterable[str] = ("",), first_line: int = 2):
    """Event times as Int64 epoch seconds (NA where missing).

    Args:
        series: The raw time column.
        fmt: ``epoch_seconds`` (fractions are floored), ``epoch_millis`` (``// 1000``) or ``iso8601`` (with
            or without a zone; a naive time is UTC; ``Z`` and ``+02:00`` are understood).
        column: The column name (for errors).
        tokens: The missing-value tokens.
        first_line: CSV line of the series' first value.

    Raises:
        SpecDataError: a value does not parse (names the column, CSV line and value).
    """
    import numpy as np
    import pandas as pd

    missing = is_missing(series, tokens)
    if fmt in ("epoch_seconds", "epoch_millis"):
        what = "epoch seconds" if fmt == "epoch_seconds" else "epoch milliseconds"
        if pd.api.types.is_integer_dtype(series.dtype) and not missing.any():
            ints = series.to_numpy(dtype="int64")
        else:
            values = numbers(series, missing, column, f"a number ({what})", first_line)
            ints = np.floor(values.fillna(0).to_numpy(dtype="float64")).astype("int64")
        if fmt == "epoch_millis":
            ints = ints // 1000
        return _int_array(ints, missing, series.index, series.name)
    if fmt != "iso8601":
        raise ValueError(f"unknown time format {fmt!r}")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        utc = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
        ns = utc.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype("int64")
        return _int_array(np.floor_divide(ns, 10**9), missing, series.index, series.name)
    miss = missing.to_numpy(dtype=bool)
    out = np.zeros(len(series), dtype="int64")
    cache: dict = {}
    for i, value in enumerate(series.to_numpy(dtype=object)):
        if miss[i]:
            continue
        key = (type(value), value)
        seconds = cache.get(key)
        if seconds is None:
            seconds = _iso_seconds(value)
            if seconds is None:
                line = first_line + i
                raise SpecDataError(
                    f"{column}: line {line}: {_shown(value)} is not an ISO 8601 time", column, line, value
                )
            cache[key] = seconds
        out[i] = seconds
    return _int_array(out, miss, series.index, series.name)


def maybe_numbers(series, missing):
    """The series as float64 when every value that is not missing is a number; else the raw series."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64").where(~missing)
    parsed = pd.to_numeric(series.where(~missing), errors="coerce")
    if (parsed.isna() & ~missing).any():
        return series.where(~missing)
    return parsed.astype("float64")


def is_number(value) -> bool:
    """Whether ``value`` is a finite number (bool excluded)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
