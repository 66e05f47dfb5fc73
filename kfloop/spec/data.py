"""Raw data against a dataset spec: labels from raw rows, one feedback label, and a sample check.

These are the bodies of :meth:`DatasetSpec.label_values`, :meth:`DatasetSpec.label_of` and
:meth:`DatasetSpec.check_data` (pandas is imported inside them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kfloop.spec import values as V
from kfloop.spec.kinds import Kind

if TYPE_CHECKING:
    from kfloop.spec.model import DatasetSpec


def lines_seen(values: list) -> str:
    """Up to ten values, repr'd, for a message (``none`` for none)."""
    shown = ", ".join(repr(v) for v in values[:10])
    return (shown + (", ..." if len(values) > 10 else "")) or "none"


def label_values(spec: DatasetSpec, raw_frame):
    """The label of every raw row as Int64 0/1 (NA where the label, or a derive input, is missing).

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


def label_of(spec: DatasetSpec, value) -> int:
    """The 0/1 label of one raw label value (the feedback path).

    With ``positive``: 1 if ``value`` is the positive class, else 0. With ``derive`` (feedback carries
    the class itself): 0/1, true/false, yes/no, t/f.

    Raises:
        SpecDataError: ``value`` is missing, or (with derive) not a boolean value.
    """
    import pandas as pd

    lab = spec.label_spec
    s = pd.Series([value], dtype=object)
    if spec.is_missing(s).iloc[0]:
        raise V.SpecDataError(f"label {lab.column!r}: the label value is missing ({value!r})", lab.column)
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
            if lab.derive is None and int(labels.fillna(0).sum()) == 0:
                s = frame[lab.column]
                seen = list(dict.fromkeys(s[~spec.is_missing(s)].tolist()))
                problems.append(
                    f"label.positive: {lab.positive!r} never occurs in label column {lab.column!r}"
                    f" (values seen: {lines_seen(seen)})"
                )
    return problems
