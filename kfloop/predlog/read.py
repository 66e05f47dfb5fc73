"""Reading the log: the window's files (online partitions and committed batch jobs), checked and streamed.

A prediction file is read with the features it has (its own schema, in the log's plain types), or
conformed to a caller's prediction schema (the spec of the model being monitored); a file that does not
fit (corrupt, truncated, a column missing or of another kind) is skipped and reported, never raised.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kfloop import fs
from kfloop.predlog.jobs import committed_job_files
from kfloop.predlog.schema import (
    FEEDBACK_SCHEMA,
    OPTIONAL_COLUMNS,
    PREDICTIONS,
    LogError,
    as_feedback_schema,
    as_prediction_schema,
    check_kind,
    normalize_prediction_schema,
    prediction_task,
    schema_classes,
    schema_task,
)
from kfloop.predlog.write import SUFFIX, partition_uri


def _utc(t) -> dt.datetime:
    if isinstance(t, int | float):
        return dt.datetime.fromtimestamp(t, tz=dt.UTC)
    if t.tzinfo is None:
        return t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def window_dates(start, end) -> list[dt.date]:
    """The UTC dates of the window ``[start, end)`` (``end`` exclusive)."""
    s, e = _utc(start), _utc(end)
    if e <= s:
        return []
    first, last = s.date(), (e - dt.timedelta(microseconds=1)).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def list_files(
    log_root_uri: str, model_name: str, kind: str, start, end, *, on_corrupt=None
) -> list[tuple[dt.date, str]]:
    """``(date, uri)`` of the published log files of the window's dates: the files of the window's date
    partitions (only those are listed) and, for predictions, the files of committed batch jobs of those
    dates (:func:`committed_job_files`; a commit object that cannot be read goes to ``on_corrupt``)."""
    check_kind(kind)
    out = []
    days = window_dates(start, end)
    for day in days:
        for uri in fs.list_files(partition_uri(log_root_uri, kind, model_name, day)):
            name = uri.rsplit("/", 1)[-1]
            if name.endswith(SUFFIX) and not name.startswith("."):
                out.append((day, uri))
    if kind == PREDICTIONS and days:
        out += committed_job_files(log_root_uri, model_name, days, on_corrupt=on_corrupt)
    return out


def log_files(log_root_uri: str, model_name: str, kind: str, start, end) -> list[str]:
    """Every published file of the window's dates (online and committed batch rows), e.g. for DuckDB's
    ``read_parquet([...])`` or ``pyarrow.dataset.dataset([...])``."""
    return [uri for _, uri in list_files(log_root_uri, model_name, kind, start, end)]


def _open(uri: str) -> pq.ParquetFile:
    if fs.is_gcs(uri):
        return pq.ParquetFile(pa.BufferReader(fs.read_bytes(uri)))
    return pq.ParquetFile(uri)


def read_file(uri: str, columns=None) -> pa.Table:
    """One log file, fully read and decoded (so a corrupt page fails here, before any row is used)."""
    f = _open(uri)
    if columns is not None:  # an optional column a file predates is filled in by conform()
        present = set(f.schema_arrow.names)
        columns = [c for c in columns if c in present or c not in OPTIONAL_COLUMNS]
    return f.read(columns=columns, use_threads=False)


def _same_kind(got: pa.DataType, want: pa.DataType) -> bool:
    """Whether a file's column type is the schema's type up to width / encoding (never across kinds: a
    string is not a number, a bool is not a label, a float is not an int)."""
    if pa.types.is_dictionary(got):
        got = got.value_type
    if got == want:
        return True
    if pa.types.is_list(want):  # multiclass probabilities: any list of floats (item name, width, layout)
        lists = pa.types.is_list(got) or pa.types.is_large_list(got) or pa.types.is_fixed_size_list(got)
        return lists and _same_kind(got.value_type, want.value_type)
    if pa.types.is_string(want):
        return pa.types.is_string(got) or pa.types.is_large_string(got) or str(got) == "string_view"
    if pa.types.is_integer(want):
        return pa.types.is_integer(got)
    if pa.types.is_floating(want):
        return pa.types.is_floating(got)
    if pa.types.is_timestamp(want):
        return pa.types.is_timestamp(got) and got.tz is not None
    return False


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A file's table in the log schema: same columns, same kinds of type (width and encoding may differ),
    valid UTF-8 text. Raises ``LogError`` naming the first column that does not fit."""
    for field in schema:
        if field.name not in table.schema.names:
            if field.name in OPTIONAL_COLUMNS and field.nullable:
                table = table.append_column(field.name, pa.nulls(table.num_rows, type=field.type))
                continue
            raise LogError(f"column {field.name!r} missing")
        got = table.schema.field(field.name).type
        if not _same_kind(got, field.type):
            raise LogError(f"column {field.name!r} has type {got}, expected {field.type}")
    out = table.select(schema.names).cast(schema)
    for field in schema:
        if pa.types.is_string(field.type):
            for chunk in out.column(field.name).chunks:
                try:
                    chunk.validate(full=True)
                except pa.ArrowInvalid:
                    raise LogError(f"column {field.name!r} holds invalid UTF-8") from None
    return out


class ScanReport:
    """What a :func:`scan` read and skipped.

    Attributes:
        files: Files read.
        rows: Rows yielded.
        corrupt: ``[(uri, reason)]`` of the files skipped whole.
        bad_rows: ``{reason: count}`` of rows skipped inside good files (a timestamp outside the file's
            date partition, a null timestamp).
    """

    def __init__(self):
        self.files = 0
        self.rows = 0
        self.corrupt: list[tuple[str, str]] = []
        self.bad_rows: dict[str, int] = {}

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "rows": self.rows,
            "corrupt_files": len(self.corrupt),
            "corrupt": [{"uri": u, "reason": r} for u, r in self.corrupt],
            "bad_rows": dict(self.bad_rows),
        }


def _field(schema: pa.Schema, name: str) -> pa.Field:
    i = schema.get_field_index(name)
    if i < 0:
        raise LogError(f"column {name!r} missing")
    return schema.field(i)


def _check_task(file_schema: pa.Schema, target: pa.Schema, kind: str) -> None:
    """Raises :class:`LogError` when a file is of another task than the schema it is read as (predictions:
    its output column or, multiclass, its recorded classes; feedback: its ``kfloop.task``)."""
    if kind == PREDICTIONS:
        want = prediction_task(target)
        got = prediction_task(file_schema)
        if got == want and want == "multiclass":
            a, b = schema_classes(file_schema), schema_classes(target)
            if a is not None and b is not None and list(a) != list(b):
                raise LogError(f"the file's classes {list(a)} are not the schema's {list(b)}")
    else:
        want, got = schema_task(target), schema_task(file_schema)
    if got != want:
        raise LogError(f"a {got} {kind} file, read as {want}")


def scan(
    log_root_uri: str,
    model_name: str,
    kind: str,
    start,
    end,
    columns=None,
    *,
    schema=None,
    on_corrupt: Callable[[str, str], None] | None = None,
    report: ScanReport | None = None,
    batch_rows: int = 65_536,
    filter_timestamp: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Streams the log rows of the window ``[start, end)`` as record batches.

    Only the window's date partitions and the commit objects of batch jobs are listed (a job's committed
    files of those dates are read; staged, uncommitted rows never are); each file is read whole (files are
    one written batch), filtered on ``timestamp`` and yielded in batches of at most ``batch_rows`` rows, so
    memory holds one file at a time. A file that is not Parquet, is truncated, fails to decode or lacks a
    requested column is skipped, never raised: it is passed to ``on_corrupt(uri, reason)`` and recorded in
    ``report``.

    Args:
        log_root_uri: Log root (local dir or ``gs://``).
        model_name: Model name.
        kind: ``"predictions"`` or ``"feedback"``.
        start: Window start (datetime, UTC if naive, or epoch seconds), inclusive.
        end: Window end, exclusive.
        columns: Columns to read (default: all of the schema, or of each file; ``timestamp`` is always
            read). Predictions without ``schema``: a name that is not a fixed column is a feature column,
            typed as the file has it.
        schema: Predictions: the prediction schema (or :class:`kfloop.spec.DatasetSpec`) to conform
            every file to (a file lacking one of its requested columns, or of another task, is skipped).
            None: each file is read with the features and the output column it has, so batches of files
            written for different specs differ in schema. Feedback: the spec (or its ``Task`` / task name,
            or a feedback schema) whose label type every file must have (a file of another task's label
            type is skipped); None: each file is read with its own task's label type (its ``kfloop.task``
            metadata; none: binary int8).
        on_corrupt: Called with ``(uri, reason)`` for each skipped file.
        report: Counts files, rows and skipped files.
        batch_rows: Largest batch yielded.
        filter_timestamp: Keep only rows with ``start <= timestamp < end`` (False: whole partitions).
            Rows whose timestamp is not in their file's date partition are always skipped and counted in
            ``report.bad_rows``.

    Yields:
        Record batches with the requested columns, cast to the schema's (or the file's plain) types.

    Raises:
        LogError: unknown kind, or a requested column the given schema does not have.
    """
    check_kind(kind)
    if kind == PREDICTIONS:
        target = as_prediction_schema(schema) if schema is not None else None
    else:
        target = as_feedback_schema(schema) if schema is not None else None
    wanted = list(columns) if columns is not None else None
    names = target.names if target is not None else (FEEDBACK_SCHEMA.names if kind != PREDICTIONS else None)
    if names is not None:
        wanted = wanted if wanted is not None else list(names)
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise LogError(f"unknown {kind} log columns {unknown}")
    s_us = round(_utc(start).timestamp() * 1e6)
    e_us = round(_utc(end).timestamp() * 1e6)

    def skipped(uri: str, reason: str) -> None:
        if report is not None:
            report.corrupt.append((uri, reason))
        if on_corrupt is not None:
            on_corrupt(uri, reason)

    for day, uri in list_files(log_root_uri, model_name, kind, start, end, on_corrupt=skipped):
        try:
            f = _open(uri)
            if target is not None:
                _check_task(f.schema_arrow, target, kind)
                ref = target
            elif kind == PREDICTIONS:
                ref = normalize_prediction_schema(f.schema_arrow)
            else:
                ref = as_feedback_schema(f.schema_arrow)
            cols = wanted if wanted is not None else list(ref.names)
            read_cols = cols if "timestamp" in cols else [*cols, "timestamp"]
            want_schema = pa.schema([_field(ref, c) for c in read_cols], metadata=ref.metadata)
            present = set(f.schema_arrow.names)
            table = f.read(
                columns=[c for c in read_cols if c in present or c not in OPTIONAL_COLUMNS], use_threads=False
            )
            table = conform(table, want_schema)
        except Exception as e:  # any failure to read one file skips that file only
            skipped(uri, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"[:300])
            continue
        if report is not None:
            report.files += 1
        if table.num_rows:
            # A row belongs to the partition of its own date: anything else (an absurd or shifted
            # timestamp) is skipped and counted, never silently moved into another window.
            us = table.column("timestamp").cast(pa.int64())
            d_us = (day - dt.date(1970, 1, 1)).days * 86_400_000_000
            inside = pc.fill_null(
                pc.and_(pc.greater_equal(us, d_us), pc.less(us, d_us + 86_400_000_000)), False
            )
            n_out = table.num_rows - pc.sum(inside.cast(pa.int64())).as_py()
            if n_out:
                if report is not None:
                    reason = f"timestamp outside its partition date={day.isoformat()}"
                    report.bad_rows[reason] = report.bad_rows.get(reason, 0) + n_out
                table = table.filter(inside)
                us = table.column("timestamp").cast(pa.int64())
            if filter_timestamp:
                table = table.filter(
                    pc.fill_null(pc.and_(pc.greater_equal(us, s_us), pc.less(us, e_us)), False)
                )
        out_schema = pa.schema([want_schema.field(c) for c in cols], metadata=want_schema.metadata)
        table = table.select(cols).cast(out_schema)
        if report is not None:
            report.rows += table.num_rows
        for batch in table.to_batches(max_chunksize=batch_rows):
            if batch.num_rows:
                yield batch
