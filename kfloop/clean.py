"""Cleaning: a raw CSV (the user's data as it comes) into kfloop's Dataset form.

Raw form is the user's CSV: its own time format, label values, missing-value tokens, extra and excluded
columns. Dataset form (train / eval / live artifacts) has the columns ``spec.dataset_columns`` in that order,
the time column as integer epoch seconds, the label and booleans as 0/1 integers, and an empty cell for a
missing value. :func:`clean` turns the first into the second, driven by the dataset spec
(:class:`kfloop.spec.DatasetSpec`); :func:`is_raw` tells the two apart; :func:`kfloop.ingest.ingest` cleans a file and writes
the train / eval / live split.

Every refusal is an :class:`IngestError` whose message names the column and the CSV line; nothing is written
then.
"""

from __future__ import annotations

from functools import partial

from kfloop import config, fs
from kfloop import row_checks as checks
from kfloop.spec import DatasetSpec, Kind, SpecDataError, Task, TimeFormat


class IngestError(ValueError):
    """Bad input data; the message names the column or value."""


def parse_time(value: str, what: str) -> int:
    """Parses an ISO date / datetime (UTC unless it carries a zone) or epoch seconds into epoch seconds."""
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


def _tokens(spec: DatasetSpec) -> tuple[str, ...]:
    """The missing-value tokens of raw data: the spec's, and always the empty cell."""
    return tuple(dict.fromkeys((*spec.missing_values, "")))


def _present_text(series):
    """The values of a text column that are not empty / NaN, stripped."""
    text = series[series.notna()].astype(str).str.strip()
    return text[text != ""]


def _index_texts(spec: DatasetSpec) -> list[str]:
    """The Dataset-form label values of a class task as text: ``0``, ``1`` (binary), ``0``..``K-1``."""
    return [str(i) for i in range(spec.n_classes)]


def is_raw(frame, spec: DatasetSpec) -> bool:
    """Whether a CSV (read as text, e.g. a sample of its first rows) is in raw form rather than Dataset form.

    The rule, in order (the first that applies decides):

    1. A column the spec excludes is present (Dataset form never has one): raw.
    2. The label column is absent and the columns its derivation reads are all present (the label is
       still to be derived): raw. (Data without the label and its sources is judged by the rules below.)
    3. A label value is not 0 or 1 (binary), not a class index 0..K-1 (multiclass): raw (a ``yes``/``no``
       label, a class name). A regression label is a number in both forms (this rule does not apply); so
       are integer classes, which makes a multiclass file whose classes are ``0..K-1`` in order the same
       in both forms.
    4. With a time column whose format is not epoch seconds: a time value that is not an integer is raw
       (an ISO time, or epoch milliseconds with a fraction); with ``epoch_millis`` the magnitude of the
       values is not used, so an epoch-millisecond file whose label is already 0/1 counts as Dataset form
       unless another rule applies.
    5. A boolean feature holds something other than 0/1 (``true``, ``yes``): raw.
    6. A missing-value token other than the empty cell occurs in a Dataset column: raw.

    Otherwise the data is in Dataset form, and cleaning it changes nothing.

    Args:
        frame: The data as strings (``dtype=str``); a header-only frame is judged by its columns.
        spec: The dataset spec.
    """
    cols = set(map(str, frame.columns))
    if any(c in cols for c in spec.exclude):
        return True
    label = spec.label.name
    if label not in cols:
        if spec.derive_inputs and all(c in cols for c in spec.derive_inputs):
            return True
    elif spec.task is not Task.REGRESSION and not _present_text(frame[label]).isin(_index_texts(spec)).all():
        return True
    if (
        spec.time is not None
        and spec.time.column in cols
        and spec.time.format is not TimeFormat.EPOCH_SECONDS
    ) and not _present_text(frame[spec.time.column]).str.fullmatch(r"[+-]?\d+").all():
        return True
    for f in spec.features_of(Kind.BOOLEAN):
        if f.name in cols and not _present_text(frame[f.name]).isin(["0", "1"]).all():
            return True
    tokens = [t for t in spec.missing_values if t.strip() != ""]
    if tokens:
        for c in spec.dataset_columns:
            if c in cols and frame[c].astype(str).str.strip().isin(tokens).any():
                return True
    return False


def spec_problems(raw, spec: DatasetSpec, *, with_label: bool = True) -> list[str]:
    """What makes a spec unfit for raw data, as opposed to bad rows: one line per problem, naming the key.

    A bad row (a value that does not parse, out of range) is the data's fault and blocks the data; these are
    the spec's: the label column (or a column its derivation reads) is not in the data, the positive class
    never occurs, or the time column's first value does not parse in ``time.format`` (the format is wrong).
    Missing feature columns are left to :func:`clean` (they block the data, naming the column).

    Args:
        raw: Raw data as strings (e.g. :func:`read_raw`).
        spec: The dataset spec.
        with_label: Whether the label belongs in the data (False: serving data, no label checks).
    """
    import pandas as pd

    problems: list[str] = []
    cols = set(map(str, raw.columns))
    lab = spec.label_spec
    if with_label:
        sources = spec.derive_inputs or (lab.column,)
        key = "label.derive" if lab.derive is not None else "label.column"
        absent = [c for c in sources if c not in cols and c not in spec.input_names]  # features: clean's
        problems.extend(f"{key}: {c!r} is not a column of the data" for c in absent)
        if spec.task is Task.BINARY and lab.derive is None and lab.column in cols:
            text = _text(raw, lab.column)
            present = text[~(text.isin(_tokens(spec)) | (text == ""))]
            values = spec.label_values(pd.DataFrame({lab.column: present}))
            if len(present) and int(values.fillna(0).sum()) == 0:
                seen = list(dict.fromkeys(present.tolist()))
                shown = ", ".join(repr(v) for v in seen[:10]) + (", ..." if len(seen) > 10 else "")
                problems.append(
                    f"label.positive: {lab.positive!r} never occurs in label column {lab.column!r} "
                    f"(values seen: {shown})"
                )
    if spec.time is not None and spec.time.column in cols:
        text = _text(raw, spec.time.column)
        present = text[~(text.isin(_tokens(spec)) | (text == ""))]
        if len(present):
            try:
                spec.event_seconds(present.iloc[:1].reset_index(drop=True))
            except SpecDataError as e:
                problems.append(f"time.format: {spec.time.format.value}: {e}")
    return problems


def dataset_form(spec: DatasetSpec) -> DatasetSpec:
    """The spec that reads Dataset form: epoch-second times, empty = missing, and the label as Dataset form
    writes it: 0/1 (positive class 1), class indices (classes ``0..K-1``), or the regression number."""
    if spec.task is Task.BINARY:
        label = spec.label_spec.model_copy(update={"derive": None, "positive": 1})
    elif spec.task is Task.MULTICLASS:
        label = spec.label_spec.model_copy(update={"classes": tuple(range(spec.n_classes))})
    else:
        label = spec.label_spec
    update: dict = {"label_spec": label, "missing_values": ("",), "exclude": ()}
    if spec.time is not None:
        update["time"] = spec.time.model_copy(update={"format": TimeFormat.EPOCH_SECONDS})
    return spec.model_copy(update=update)


# ---------------------------------------------------------------------------------------------- clean


def _line(row: int) -> str:
    return f"data row {row + 1}, CSV line {row + 2}"


def _numbers(name: str, col, missing, integer: bool):
    """A text column as float64 (or Int64 when ``integer``), NaN / NA where ``missing``."""
    import pandas as pd

    infinite = checks.non_finite(name, col.where(~missing, ""))
    if infinite is not None:
        raise IngestError(infinite.message)
    values = pd.to_numeric(col.where(~missing), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise IngestError(f"column {name!r}: non-numeric value {col.iloc[row]!r} ({_line(row)})")
    values = values.astype("float64")
    if not integer:
        return values
    frac = values.notna() & (values != values.round())
    if frac.any():
        row = int(frac.to_numpy().argmax())
        raise IngestError(f"column {name!r}: non-integer value {col.iloc[row]!r} (CSV line {row + 2})")
    return values.astype("Int64")


def _text(raw, name: str):
    """A column as stripped text (a column read with numbers stays as they print)."""
    col = raw[name]
    return col.where(col.notna(), "").astype(str).str.strip()


def _derive_frame(raw, out, spec: DatasetSpec, missing_of):
    """The columns a label derivation reads: features as cleaned, other raw columns as numbers when every
    present value is one (a non-finite or a stray non-number in a numeric column is refused), else as text."""
    import pandas as pd

    cols = {}
    for name in spec.derive_inputs:
        if name in out.columns:
            col = out[name]
            cols[name] = col.astype("float64") if str(col.dtype) == "Int64" else col
            continue
        text = _text(raw, name)
        missing = missing_of(text)
        parsed = pd.to_numeric(text.where(~missing), errors="coerce")
        numeric = (parsed.notna() | missing).sum()
        if numeric == len(text) or (numeric - missing.sum()) * 2 > (~missing).sum():
            cols[name] = _numbers(name, text, missing, integer=False)
        else:
            cols[name] = text.where(~missing, None)
    return pd.DataFrame(cols, index=out.index)


def clean(
    raw,
    spec: DatasetSpec,
    event_times: config.EventTimeRange | None = None,
    *,
    form: str = "auto",
    with_label: bool = True,
):
    """Turns raw data (all columns as strings) into Dataset form, per the spec; returns a DataFrame.

    Per column: the spec's missing-value tokens and the empty cell become missing; numeric columns become
    float64, categorical ints Int64, booleans (true/false, yes/no, 1/0, t/f) Int64 0/1, strings stay text
    (None where missing); the time column becomes Int64 epoch seconds (``spec.event_seconds``); the label
    is derived (``label.derive``) or compared with the positive class (``spec.label_values``). Excluded and
    unknown columns are dropped. The result has ``spec.dataset_columns`` in order.

    Args:
        raw: The data as strings, in file order (data row 0 = CSV line 2), e.g. from :func:`read_raw`.
        spec: The dataset spec.
        event_times: The event times accepted; default :func:`kfloop.row_checks.generic_event_times`.
        form: ``"raw"``, ``"dataset"`` (already cleaned: the result equals the input's values) or
            ``"auto"`` (:func:`is_raw` decides).
        with_label: Whether the label (or what it derives from) must be in the data. ``False``: data
            without it (serving data) gets an all-missing label column.

    Raises:
        IngestError: a column name is repeated, a required column is missing, a value cannot be read as its
            column's kind, a number is not finite (``inf``, ``NaN`` written out) or an event time is
            outside ``event_times``; the message names the column and the CSV line.
    """
    import pandas as pd

    if form not in ("auto", "raw", "dataset"):
        raise ValueError(f"form must be 'auto', 'raw' or 'dataset', got {form!r}")
    raw = raw.reset_index(drop=True)
    repeated = checks.duplicate_columns(raw.columns)
    if repeated:
        raise IngestError("; ".join(p.message for p in repeated))
    if form == "auto":
        form = "raw" if is_raw(raw, spec) else "dataset"
    read = spec if form == "raw" else dataset_form(spec)
    label_source = read.derive_inputs or (read.label_spec.column,)
    has_label = all(c in raw.columns for c in label_source)
    required = [c for c in read.raw_columns if with_label or c not in label_source or c in read.input_names]
    missing_cols = [c for c in required if c not in raw.columns]
    if missing_cols:
        raise IngestError(f"missing column(s): {', '.join(missing_cols)}")
    tokens = _tokens(read)

    def missing_of(text):
        return text.isin(tokens) | (text == "")

    out = pd.DataFrame(index=raw.index)
    for f in read.model_features:
        text = _text(raw, f.name)
        missing = missing_of(text)
        if f.kind is Kind.NUMERIC:
            out[f.name] = _numbers(f.name, text, missing, integer=False)
        elif f.kind is Kind.CATEGORICAL_INT:
            out[f.name] = _numbers(f.name, text, missing, integer=True)
        elif f.kind is Kind.BOOLEAN:
            out[f.name] = _converted(partial(spec_values().booleans, text, missing, f.name))
        else:
            out[f.name] = text.where(~missing, None)
    time_name = None
    if read.time is not None:
        time_name = read.time.column
        text = _text(raw, time_name)
        missing = missing_of(text)
        if read.time.format is not TimeFormat.ISO8601:
            infinite = checks.non_finite(time_name, text.where(~missing, ""))
            if infinite is not None:
                raise IngestError(infinite.message)
        seconds = _converted(lambda: read.event_seconds(text.where(~missing, None)))
        if seconds.isna().any():
            row = int(seconds.isna().to_numpy().argmax())
            raise IngestError(f"column {time_name!r}: empty event time (CSV line {row + 2})")
        bounds = (event_times or checks.generic_event_times()).bounds()
        outside = checks.event_time_out_of_range(time_name, seconds, bounds)
        if outside is not None:
            value = text.iloc[outside.data_row]
            raise IngestError(outside.message.replace(repr(outside.value), repr(value), 1))
        out[time_name] = seconds.astype("Int64")
    label = read.label.name
    label_dtype = "Float64" if read.task is Task.REGRESSION else "Int64"
    if not has_label:
        out[label] = pd.array([pd.NA] * len(raw), dtype=label_dtype)
    elif read.label_spec.derive is not None:
        frame = _derive_frame(raw, out, read, missing_of)
        out[label] = _converted(lambda: read.label_values(frame)).astype("Int64")
    else:
        text = _text(raw, read.label_spec.column)
        if form == "dataset":
            # names a stray value's line
            _numbers(label, text, missing_of(text), integer=read.task is not Task.REGRESSION)
        frame = pd.DataFrame({read.label_spec.column: text.where(~missing_of(text), None)})
        out[label] = _converted(lambda: read.label_values(frame)).astype(label_dtype)
    return out[list(read.dataset_columns)]


def spec_values():
    """:mod:`kfloop.spec.values` (the value conversions behind the spec)."""
    from kfloop.spec import values

    return values


def _converted(fn):
    """``fn()``, with a :class:`kfloop.spec.SpecDataError` (names column, line, value) as an IngestError."""
    try:
        return fn()
    except SpecDataError as e:
        msg = str(e)
        if e.column and e.line is not None and msg.startswith(f"{e.column}: "):
            msg = f"column {e.column!r}: " + msg[len(e.column) + 2 :]
        raise IngestError(msg) from None


# ------------------------------------------------------------------------------------------------- read


def read_raw(source: str):
    """Reads a CSV (local path or ``gs://``) as strings, one row per record, in file order.

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
