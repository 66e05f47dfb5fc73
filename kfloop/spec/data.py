"""Raw data against a dataset spec: labels from raw rows, one feedback label, and a sample check.

These are the bodies of :meth:`DatasetSpec.label_values`, :meth:`DatasetSpec.label_of` and
:meth:`DatasetSpec.check_data` (pandas is imported inside them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kfloop.spec import values as V
from kfloop.spec.kinds import Kind, Task

if TYPE_CHECKING:
    from kfloop.spec.model import DatasetSpec


def lines_seen(values: list) -> str:
    """Up to ten values, repr'd, for a message (``none`` for none)."""
    shown = ", ".join(repr(v) for v in values[:10])
    return (shown + (", ..." if len(values) > 10 else "")) or "none"


def _class_indices(spec: DatasetSpec, s, missing, first_line: int = 2):
    """A multiclass label column as Int64 class indices (``spec.classes`` order), NA where missing."""
    import numpy as np
    import pandas as pd

    classes = spec.classes
    col = spec.label_spec.column
    if isinstance(classes[0], int):
        values = V.integers(s, missing, col, f"a class of {list(classes)}", first_line)
        index = {c: i for i, c in enumerate(classes)}
        idx = values.map(index, na_action="ignore")
    else:
        index = {c: i for i, c in enumerate(classes)}
        idx = s.where(~missing).astype(object).map(lambda v: index.get(str(v)) if v is not None else None)
    bad = ~missing.to_numpy(dtype=bool) & pd.isna(idx).to_numpy(dtype=bool)
    if bad.any():
        line, value = V._first_bad(s, pd.Series(bad), first_line)
        raise V.SpecDataError(
            f"label.classes: {col}: line {line}: {V._shown(value)} is not one of the classes {list(classes)}",
            col,
            line,
            value,
        )
    ints = np.nan_to_num(pd.to_numeric(idx, errors="coerce").to_numpy(dtype="float64")).astype("int64")
    return V._int_array(ints, missing.to_numpy(dtype=bool), s.index, col)


def label_values(spec: DatasetSpec, raw_frame, first_line: int = 2):
    """The label of every raw row, per task (NA where the label, or a derive input, is missing).

    * binary: Int64 0/1;
    * multiclass: Int64 class index 0..K-1 in ``label.classes`` order (a value that is no class is an
      error; integer classes compare numerically, so ``"2"`` and ``2.0`` are class 2);
    * regression: Float64, the number itself (a value that is not a finite number is an error).

    With ``derive``: the expression over the raw columns (numbers where a column holds only numbers).
    With ``positive``: 1 where the label column equals it (an integer ``positive`` compares numerically,
    so ``"1"`` and ``1.0`` match 1), 0 for any other value.

    Raises:
        SpecDataError: a needed column is missing, or the derivation fails or is not boolean.
    """
    import pandas as pd

    lab = spec.label_spec
    needed = spec.derive_inputs or (lab.column,)
    for c in needed:
        if c not in raw_frame.columns:
            key = "label.derive" if lab.derive is not None else "label.column"
            raise V.SpecDataError(f"{key}: {c!r} is not a column of the data", c)
    missing = pd.Series(False, index=raw_frame.index)
    if spec.task is Task.MULTICLASS:
        s = raw_frame[lab.column]
        return _class_indices(spec, s, spec.is_missing(s), first_line)
    if spec.task is Task.REGRESSION:
        s = raw_frame[lab.column]
        m = spec.is_missing(s)
        values = V.numbers(s, m, lab.column, "a number (task regression)", first_line)
        return pd.Series(
            pd.array(values.to_numpy(dtype="float64"), dtype="Float64"), index=s.index, name=lab.column
        ).mask(m)
    if lab.derive is not None:
        cols = {}
        for c in needed:
            m = spec.is_missing(raw_frame[c])
            missing = missing | m
            cols[c] = V.maybe_numbers(raw_frame[c], m)
        try:
            result = pd.DataFrame(cols, index=raw_frame.index).eval(lab.derive, engine="python")
        except Exception as e:
            raise V.SpecDataError(
                f"label.derive: {lab.derive!r} fails on the data: {e}", lab.column
            ) from None
        if not isinstance(result, pd.Series) or not pd.api.types.is_bool_dtype(result.dtype):
            raise V.SpecDataError(
                f"label.derive: {lab.derive!r} does not give True/False per row", lab.column
            )
        ones = result.to_numpy(dtype=bool)
    else:
        s = raw_frame[lab.column]
        missing = spec.is_missing(s)
        if isinstance(lab.positive, int):
            ones = (pd.to_numeric(s.where(~missing), errors="coerce") == lab.positive).to_numpy(dtype=bool)
        else:
            ones = (s.astype(str) == lab.positive).to_numpy(dtype=bool)
    out = V._int_array(ones.astype("int64"), missing.to_numpy(dtype=bool), raw_frame.index, lab.column)
    return out


def label_of(spec: DatasetSpec, value) -> int | float:
    """The Dataset-form label of one raw label value (the feedback path), per task.

    * binary: with ``positive``, 1 if ``value`` is the positive class, else 0; with ``derive`` (feedback
      carries the class itself): 0/1, true/false, yes/no, t/f.
    * multiclass: the class index of ``value``, a class as the data writes it (an integer class also as a
      whole number or its text).
    * regression: ``value`` as a float; it must be a finite number (a string, even ``"3.5"``, or a boolean
      is refused: feedback sends the number itself).

    Raises:
        SpecDataError: ``value`` is missing or not of the task's label type (the message names the
            accepted values or type).
    """
    import math

    import pandas as pd

    lab = spec.label_spec
    if spec.task is Task.REGRESSION:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise V.SpecDataError(
                f"label {lab.column!r}: {V._shown(value)} is not a finite number (task regression)",
                lab.column,
            )
        return float(value)
    s = pd.Series([value], dtype=object)
    if spec.is_missing(s).iloc[0]:
        raise V.SpecDataError(f"label {lab.column!r}: the label value is missing ({value!r})", lab.column)
    if spec.task is Task.MULTICLASS:
        ints = isinstance(spec.classes[0], int)
        if (
            isinstance(value, bool)
            or not isinstance(value, str | int | float)
            or (not ints and not isinstance(value, str))
        ):
            value_ok = False
        else:
            try:
                return int(_class_indices(spec, s, pd.Series([False])).iloc[0])
            except V.SpecDataError:
                value_ok = False
        if not value_ok:
            raise V.SpecDataError(
                f"label {lab.column!r}: {V._shown(value)} is not one of the classes {list(spec.classes)}",
                lab.column,
            )
    if lab.derive is not None:
        try:
            return int(V.booleans(s, pd.Series([False]), lab.column).iloc[0])
        except V.SpecDataError:
            raise V.SpecDataError(
                f"label {lab.column!r}: {value!r} is not a class (0/1, true/false, yes/no, t/f)",
                lab.column,
            ) from None
    return int(label_values(spec, pd.DataFrame({lab.column: s})).iloc[0])


def check_data(spec: DatasetSpec, frame) -> list[str]:
    """What in a sample of raw data does not fit the spec: one line per problem, naming the spec key.

    Checks that every feature, the time column and the label column (or derive inputs) are columns of
    the data, that feature values fit their kind, that the time column parses, that the derive
    evaluates and that the positive class occurs. An empty list: the sample fits.
    """
    problems: list[str] = []
    cols = set(frame.columns)
    for i, c in enumerate(spec.columns):
        if c.name not in cols:
            problems.append(f"columns[{i}].name: {c.name!r} is not a column of the data")
            continue
        s = frame[c.name]
        m = spec.is_missing(s)
        try:
            if c.kind is Kind.NUMERIC:
                V.numbers(s, m, c.name, "a number")
            elif c.kind is Kind.CATEGORICAL_INT:
                V.integers(s, m, c.name)
            elif c.kind is Kind.BOOLEAN:
                V.booleans(s, m, c.name)
        except V.SpecDataError as e:
            problems.append(f"columns[{i}].kind: {c.kind.value} column {e}")
    if spec.time is not None:
        if spec.time.column not in cols:
            problems.append(f"time.column: {spec.time.column!r} is not a column of the data")
        else:
            try:
                spec.event_seconds(frame[spec.time.column])
            except V.SpecDataError as e:
                problems.append(f"time.format: {spec.time.format.value}: {e}")
    lab = spec.label_spec
    absent = [c for c in (spec.derive_inputs or (lab.column,)) if c not in cols]
    key = "label.derive" if lab.derive is not None else "label.column"
    problems.extend(f"{key}: {c!r} is not a column of the data" for c in absent)
    if not absent:
        try:
            labels = label_values(spec, frame)
        except V.SpecDataError as e:
            problems.append(str(e))
        else:
            if spec.task is not Task.BINARY:
                pass
            elif lab.derive is None and int(labels.fillna(0).sum()) == 0:
                s = frame[lab.column]
                seen = list(dict.fromkeys(s[~spec.is_missing(s)].tolist()))
                problems.append(
                    f"label.positive: {lab.positive!r} never occurs in label column {lab.column!r}"
                    f" (values seen: {lines_seen(seen)})"
                )
    return problems
