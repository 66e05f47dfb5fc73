"""The prediction and feedback log: one columnar format that every writer and reader of the log uses.

Layout under a log root (the store root, local or ``gs://``), hive-partitioned by UTC date::

    <root>/predictions/<model>/date=YYYY-MM-DD/<writer-id>-<seq>.parquet       online rows, visible at once
    <root>/feedback/<model>/date=YYYY-MM-DD/<writer-id>-<seq>.parquet
    <root>/predictions/<model>/_staging/<job-key>/<attempt>/date=YYYY-MM-DD/<writer-id>-<seq>.parquet
    <root>/predictions/<model>/_commits/<job-key>.json                        names the committed attempt

A batch job (:class:`BatchJob`) writes its rows in the same files, but staged under a per-job, per-attempt
prefix that no reader lists; when every step of the job has succeeded it publishes them with ONE small
commit object, written last and atomically, that names the attempt and its files (relative paths, so a
copied store keeps working). Readers (:func:`scan`, :func:`list_files`) take a job's rows only through its
commit object, so a job is visible whole or not at all; a rerun of the same job id commits its own attempt
over the previous one (replaces, never doubles). The files of a failed, killed or superseded attempt are
never read (an attempt that fails in-process removes its own; a killed one leaves them to be deleted).
A staged attempt is a hive-partitioned dataset by itself (``pyarrow.dataset`` / DuckDB read it with
``partitioning="hive"``); :func:`log_files` gives every committed file of a window for such readers.

Each file is one compressed (snappy) Parquet file per written batch and date, with plain Arrow types only
(``string``, ``int8/32/64``, ``float32``, ``timestamp[us, UTC]``) and Parquet format 2.6, so that the same file
is readable as it is by pyarrow 10 (the pipeline image), a current pyarrow (the serving image),
``pyarrow.dataset``, pandas, DuckDB and a BigQuery external table with hive partitioning (``date`` comes
from the path; it is not a column of the files).

* Predictions (:data:`PREDICTION_SCHEMA`): one row per predicted row: ``request_id``, ``row``, ``timestamp``
  (prediction time), ``model_version``, ``source`` (``online`` / ``batch``), every raw feature of
  :mod:`kfloop.features` as a typed nullable column (a missing value is null, the same for V1 and V2), and
  ``probability``.
* Feedback (:data:`FEEDBACK_SCHEMA`): ``request_id``, ``row``, ``label`` (0/1), ``timestamp`` (label arrival),
  ``prediction_timestamp``, ``delay_s``.

A file becomes visible whole or not at all (:func:`write_table`: local tmp + rename, GCS
``if_generation_match=0``). :func:`scan` lists only the window's date partitions, filters on ``timestamp`` and
skips (and reports) files that are corrupt, truncated or of the wrong schema: it never raises on bad data.

This is a foundation module: it imports only pyarrow, numpy, the standard library and :mod:`kfloop.features` /
:mod:`kfloop.fs`, and nothing runs at import time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kfloop import features as F
from kfloop import fs

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
KINDS = (PREDICTIONS, FEEDBACK)
SOURCES = ("online", "batch")

#: Parquet writer settings (format 2.6 is read by pyarrow >= 8). Snappy, Parquet's default codec, read by
#: every reader (BigQuery and DuckDB included): it encodes a 5,000-row flush of the server in ~27% less CPU
#: than zstd (2.0 vs 2.75 ms here) for ~35% more bytes (10-21 vs 8-15 bytes per row, far under 80); the
#: writer's CPU is taken from the server's on a small machine, the bytes are cheap.
COMPRESSION = "snappy"
PARQUET_VERSION = "2.6"
SUFFIX = ".parquet"

_TS = pa.timestamp("us", tz="UTC")
_ARROW = {"float32": pa.float32(), "int64": pa.int64(), "string": pa.string()}


def _feature_field(f: F.Feature) -> pa.Field:
    return pa.field(f.name, _ARROW[f.dtype], nullable=True)


#: One row per predicted row.
PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        *[_feature_field(f) for f in F.MODEL_FEATURES],
        pa.field("probability", pa.float32(), nullable=False),
    ]
)

#: One row per arrived label.
FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("prediction_timestamp", _TS, nullable=True),
        pa.field("delay_s", pa.float64(), nullable=True),
        # Who sent the label (the feedback token's labeler name; null: unauthenticated or written directly).
        pa.field("labeler", pa.string(), nullable=True),
    ]
)
#: Nullable columns added after files were written without them: such a file reads as nulls there.
OPTIONAL_COLUMNS = frozenset({"labeler"})

SCHEMAS = {PREDICTIONS: PREDICTION_SCHEMA, FEEDBACK: FEEDBACK_SCHEMA}

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in F.MODEL_FEATURES)


class LogError(ValueError):
    """A bad argument to a log function (unknown kind, wrong column length); the message names it."""


def _schema(kind: str) -> pa.Schema:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise LogError(f"log kind must be one of {KINDS}, got {kind!r}") from None


# ------------------------------------------------------------------------------------------ building


def _micros(epoch, n: int) -> pa.Array:
    """``n`` UTC timestamps (us) from a scalar epoch (seconds) or an array of them."""
    arr = np.asarray(epoch, dtype=np.float64)
    us = np.round(arr * 1e6).astype(np.int64)
    if us.ndim == 0:
        us = np.full(n, int(us), dtype=np.int64)
    elif len(us) != n:
        raise LogError(f"{len(us)} timestamps for {n} rows")
    return pa.array(us, type=pa.int64()).cast(_TS)


def _broadcast(value, n: int, name: str) -> pa.Array:
    if isinstance(value, str):
        return pa.repeat(pa.scalar(value, pa.string()), n)
    if isinstance(value, np.ndarray) and value.dtype == object:
        arr = pa.array(value, type=pa.string())
    else:
        arr = pa.array([str(v) for v in value], type=pa.string())
    if len(arr) != n:
        raise LogError(f"{len(arr)} values of {name!r} for {n} rows")
    return arr


def feature_array(f: F.Feature, values) -> pa.Array:
    """One decoded feature column (missing-value sentinels of :mod:`kfloop.features`) as a nullable Arrow
    array: NaN / -1 / ``""`` / ``None`` become null. A string feature may also come as an Arrow array."""
    if f.kind == F.Kind.CATEGORICAL_STR:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, pa.Array):  # already Arrow (a CSV reader's column): no per-row Python
            arr = values.cast(pa.string())
        else:
            arr = pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
        return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    if f.kind == F.Kind.NUMERIC:
        arr = np.asarray(values, dtype=np.float32)
        return pa.array(arr, type=pa.float32(), mask=np.isnan(arr))
    arr = np.asarray(values, dtype=np.int64)
    return pa.array(arr, type=pa.int64(), mask=arr == F.feature(f.name).missing)


def columns_from_instances(instances: list) -> dict:
    """Decoded ``{feature: numpy array}`` columns (sentinels for missing) from V1-style instance dicts.

    A value that is absent or ``None`` is missing; values are converted to the feature's dtype as given
    (the caller has validated them).
    """
    cols = {}
    for f in F.MODEL_FEATURES:
        miss = f.missing
        vals = [
            miss if (v := (r.get(f.name) if isinstance(r, dict) else None)) is None else v for r in instances
        ]
        if f.kind == F.Kind.NUMERIC:
            cols[f.name] = np.array(vals, dtype=np.float32)
        elif f.kind == F.Kind.CATEGORICAL_INT:
            cols[f.name] = np.array(vals, dtype=np.int64)
        else:
            cols[f.name] = np.array(vals, dtype=object)
    return cols


def prediction_table(
    request_id,
    epoch,
    version,
    columns: dict,
    probabilities,
    source: str = "online",
    rows=None,
) -> pa.Table:
    """The log rows of one request (or batch) from its already-decoded column arrays.

    Args:
        request_id: The request id (one string for all rows), or one id per row.
        epoch: Prediction time in seconds since the epoch (scalar, or one per row).
        version: Model version (one string, or one per row).
        columns: ``{feature name: numpy array}`` as :mod:`serving.request` decodes a request (sentinels
            NaN / -1 / ``""`` for missing; a string feature may be an Arrow array, null = missing); every
            model feature must be present.
        probabilities: One float per row.
        source: ``"online"`` (served over HTTP) or ``"batch"`` (batch prediction).
        rows: Row index of each row within its request (default ``0 .. n-1``: one request).

    Returns:
        A table of :data:`PREDICTION_SCHEMA`.

    Raises:
        LogError: a feature is missing, lengths differ, or ``source`` is unknown.
    """
    if source not in SOURCES:
        raise LogError(f"source must be one of {SOURCES}, got {source!r}")
    probs = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    n = len(probs)
    arrays = {}
    for f in F.MODEL_FEATURES:
        if f.name not in columns:
            raise LogError(f"column {f.name!r} missing from the decoded request")
        arr = feature_array(f, columns[f.name])
        if len(arr) != n:
            raise LogError(f"column {f.name!r} has {len(arr)} values for {n} probabilities")
        arrays[f.name] = arr
    if rows is None:
        row_arr = pa.array(np.arange(n, dtype=np.int32))
    else:
        row_arr = pa.array(np.asarray(rows, dtype=np.int32).reshape(-1))
        if len(row_arr) != n:
            raise LogError(f"{len(row_arr)} row indices for {n} rows")
    data = [
        _broadcast(request_id, n, "request_id"),
        row_arr,
        _micros(epoch, n),
        _broadcast(str(version) if isinstance(version, str | int) else version, n, "model_version"),
        _broadcast(source, n, "source"),
        *[arrays[name] for name in FEATURE_NAMES],
        pa.array(probs, type=pa.float32()),
    ]
    return pa.Table.from_arrays(data, schema=PREDICTION_SCHEMA)


def feedback_table(request_ids, rows, labels, arrival_epoch, prediction_epoch=None, labeler=None) -> pa.Table:
    """Arrived labels as a table of :data:`FEEDBACK_SCHEMA`.

    Args:
        request_ids: One request id per label.
        rows: Row index within its request, one per label.
        labels: 0 or 1, one per label.
        arrival_epoch: When the labels arrived (seconds since the epoch; scalar or one per label).
        prediction_epoch: When the labelled rows were predicted (scalar, one per label, or None).
        labeler: Who sent the labels: a name for all, one (or None) per label, or None.

    Raises:
        LogError: lengths differ, or a label is not 0 / 1, or a row is negative (names the first one).
    """
    ids = [str(r) for r in request_ids]
    n = len(ids)
    row_arr = np.asarray(rows, dtype=np.int64).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    if len(row_arr) != n or len(lab) != n:
        raise LogError(f"{n} request ids, {len(row_arr)} rows and {len(lab)} labels")
    bad = [i for i, v in enumerate(lab.tolist()) if type(v) is not int or v not in (0, 1)]
    if lab.dtype.kind in "fb" or bad:
        i = bad[0] if bad else 0
        raise LogError(f"label of request {ids[i]!r} row {int(row_arr[i])} must be 0 or 1, got {lab[i]!r}")
    if n and (row_arr.min() < 0 or row_arr.max() > np.iinfo(np.int32).max):
        raise LogError("row indices must be in 0 .. 2**31-1")
    arrival = _micros(arrival_epoch, n)
    if prediction_epoch is None:
        pred = pa.nulls(n, type=_TS)
        delay = pa.nulls(n, type=pa.float64())
    else:
        pred = _micros(prediction_epoch, n)
        delay = pa.array(
            (arrival.cast(pa.int64()).to_numpy() - pred.cast(pa.int64()).to_numpy()) / 1e6, type=pa.float64()
        )
    return pa.Table.from_arrays(
        [
            pa.array(ids, type=pa.string()),
            pa.array(row_arr.astype(np.int32)),
            pa.array(lab.astype(np.int8)),
            arrival,
            pred,
            delay,
            _labelers(labeler, n),
        ],
        schema=FEEDBACK_SCHEMA,
    )


def _labelers(labeler, n: int) -> pa.Array:
    if labeler is None or isinstance(labeler, str):
        return pa.array([labeler] * n, type=pa.string())
    names = list(labeler)
    if len(names) != n or any(v is not None and not isinstance(v, str) for v in names):
        raise LogError(f"labeler: expected a name or {n} names (or None), got {len(names)} values")
    return pa.array(names, type=pa.string())


# ------------------------------------------------------------------------------------------ writing

_SEQ = itertools.count(1)
_SEQ_LOCK = threading.Lock()
_WRITER_ID = None


def default_writer_id() -> str:
    """This process's writer id: host (pod) name, process id and a short random part (file-name safe)."""
    global _WRITER_ID
    if _WRITER_ID is None:
        host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
        _WRITER_ID = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return _WRITER_ID


def _next_seq() -> int:
    with _SEQ_LOCK:
        return next(_SEQ)


def partition_uri(log_root_uri: str, kind: str, model_name: str, day: dt.date) -> str:
    """``<root>/<kind>/<model>/date=YYYY-MM-DD``."""
    _schema(kind)
    return fs.join(log_root_uri, kind, model_name, f"date={day.isoformat()}")


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: strings, timestamps and integers other than ``row``; floats
    (fares, probabilities) rarely repeat, so a dictionary there costs CPU and makes the file larger."""
    return [
        f.name
        for f in schema
        if f.name != "row"
        and (pa.types.is_string(f.type) or pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type))
    ]


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as one Parquet file (snappy, format 2.6, plain types; readable by pyarrow >= 8)."""
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        version=PARQUET_VERSION,
        use_dictionary=_dictionary_columns(table.schema),
        write_statistics=["timestamp", "model_version"],  # pushdown on time and version; the rest costs CPU
        data_page_version="1.0",
    )
    return sink.getvalue()


def _publish(uri: str, data: bytes) -> None:
    """Makes ``data`` visible at ``uri`` whole or not at all; never replaces an existing file."""
    if fs.is_gcs(uri):
        bucket, key = fs.split_gcs(uri)
        blob = fs.gcs_client().bucket(bucket).blob(key)
        blob.upload_from_string(data, content_type="application/vnd.apache.parquet", if_generation_match=0)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if path.exists():
            raise FileExistsError(f"log file {uri} already exists")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_model_name(model_name: str) -> None:
    if not model_name or "/" in model_name or model_name in (".", ".."):
        raise LogError(f"model name {model_name!r} is not a single path segment")


def _dates(ts: pa.Array) -> np.ndarray:
    """UTC day number (days since 1970-01-01) of each timestamp."""
    us = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return np.floor_divide(us, 86_400_000_000)


def write_table(
    log_root_uri: str,
    model_name: str,
    kind: str,
    table: pa.Table,
    *,
    writer_id: str | None = None,
    _base: str | None = None,
) -> list[str]:
    """Writes ``table`` as one Parquet file per UTC date of its ``timestamp`` column, atomically.

    (``_base``: the folder that holds the date partitions instead of ``<root>/<kind>/<model>``; only
    :meth:`BatchJob.write` stages there.)

    Args:
        log_root_uri: Log root (the store root; local dir or ``gs://bucket/prefix``).
        model_name: Model name (a path segment).
        kind: ``"predictions"`` or ``"feedback"``.
        table: Rows of :data:`PREDICTION_SCHEMA` / :data:`FEEDBACK_SCHEMA` (cast to it).
        writer_id: First part of the file names (default :func:`default_writer_id`).

    Returns:
        The URIs written, one per date (empty for an empty table).

    Raises:
        LogError: unknown kind, or the table does not fit the kind's schema.
        OSError / google.api_core errors: the write failed (nothing visible was written for that date).
    """
    schema = _schema(kind)
    _check_model_name(model_name)
    if table.num_rows == 0:
        return []
    try:
        table = table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
        raise LogError(f"table does not fit the {kind} log schema: {e}") from None
    table = table.combine_chunks()
    days = _dates(table.column("timestamp").combine_chunks())
    writer = writer_id or default_writer_id()
    out = []
    for day in np.unique(days):
        part = table if len(np.unique(days)) == 1 else table.filter(pa.array(days == day))
        date = dt.date(1970, 1, 1) + dt.timedelta(days=int(day))
        folder = (
            partition_uri(log_root_uri, kind, model_name, date)
            if _base is None
            else fs.join(_base, f"date={date.isoformat()}")
        )
        uri = fs.join(folder, f"{writer}-{_next_seq():08d}{SUFFIX}")
        _publish(uri, parquet_bytes(part))
        out.append(uri)
    return out


# ------------------------------------------------------------------------------------------ reading


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
    _schema(kind)
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


# ------------------------------------------------------------------------------------ batch jobs

STAGING = "_staging"
COMMITS = "_commits"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def job_key(job_id: str) -> str:
    """A file-name-safe key of a job id: its safe characters (up to 48) and a hash of the whole id, so two
    ids never share a key and the same id always gets the same one."""
    job_id = str(job_id)
    if not job_id.strip():
        raise LogError("batch job id is empty")
    digest = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    safe = _KEY_UNSAFE.sub("_", job_id)[:48].lstrip("._") or "job"
    return f"{safe}-{digest}"


def commit_uri(log_root_uri: str, model_name: str, job_id: str) -> str:
    """``<root>/predictions/<model>/_commits/<job-key>.json``."""
    return fs.join(log_root_uri, PREDICTIONS, model_name, COMMITS, f"{job_key(job_id)}.json")


class BatchJob:
    """One attempt of a batch job's prediction-log rows: staged, then published by :meth:`commit`.

    Args:
        log_root_uri: Log root (the store root; local dir or ``gs://``).
        model_name: Model name.
        job_id: The job's request id (the rows' ``request_id``); a rerun with the same id replaces.
        attempt: This attempt's id (default: UTC time and a random part, unique per process).
    """

    def __init__(self, log_root_uri: str, model_name: str, job_id: str, attempt: str | None = None):
        _check_model_name(model_name)
        self.log_root, self.model_name, self.job_id = log_root_uri, model_name, str(job_id)
        self.key = job_key(job_id)
        self.attempt = attempt or f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        if _KEY_UNSAFE.search(self.attempt) or self.attempt.startswith("."):
            raise LogError(f"attempt id {self.attempt!r} is not file-name safe")
        self.model_root = fs.join(log_root_uri, PREDICTIONS, model_name)
        self.staging_uri = fs.join(self.model_root, STAGING, self.key, self.attempt)

    def __repr__(self) -> str:
        return f"BatchJob({self.job_id!r}, attempt={self.attempt!r})"

    def write(self, table: pa.Table, *, writer_id: str | None = None) -> list[str]:
        """Stages ``table`` (prediction rows) as one file per UTC date under :attr:`staging_uri`; nothing
        is visible to readers until :meth:`commit`. Returns the staged URIs."""
        return write_table(
            self.log_root, self.model_name, PREDICTIONS, table, writer_id=writer_id, _base=self.staging_uri
        )

    def commit(self, files: list[str], rows: int) -> dict:
        """Publishes the staged ``files`` (URIs :meth:`write` returned) as the job's rows, atomically.

        The commit object is written last, in one write (local: temp file + rename; GCS: one upload), so
        readers see the previous commit of this job id (or none) until it lands, then exactly these files.

        Raises:
            LogError: a file is not one of this attempt's staged files.
        """
        prefix = self.model_root.rstrip("/") + "/"
        entries = []
        for uri in files:
            if not str(uri).startswith(self.staging_uri.rstrip("/") + "/"):
                raise LogError(f"{uri} is not a staged file of {self!r}")
            rel = str(uri)[len(prefix) :]
            m = re.search(r"/date=(\d{4}-\d{2}-\d{2})/[^/]+$", rel)
            if not m:
                raise LogError(f"{uri} is not in a date partition")
            entries.append({"path": rel, "date": m.group(1)})
        obj = {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "model_name": self.model_name,
            "rows": int(rows),
            "files": sorted(entries, key=lambda e: e["path"]),
            "committed_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        fs.write_text(commit_uri(self.log_root, self.model_name, self.job_id), json.dumps(obj, indent=1))
        return obj

    def abort(self) -> int:
        """Removes this attempt's staged files (best effort; never the committed ones of another attempt).
        Returns how many were removed."""
        removed = 0
        for uri in fs.list_files(self.staging_uri):
            try:
                _remove(uri)
                removed += 1
            except OSError:
                pass
        return removed


def _remove(uri: str) -> None:
    if fs.is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, key = fs.split_gcs(uri)
        with contextlib.suppress(NotFound):
            fs.gcs_client().bucket(bucket).blob(key).delete()
        return
    Path(uri).unlink(missing_ok=True)


def read_commit(uri: str) -> dict:
    """A job's commit object, checked. Raises ``LogError`` naming the problem."""
    try:
        obj = json.loads(fs.read_bytes(uri).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise LogError(f"commit {uri}: not a JSON object ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("files"), list):
        raise LogError(f"commit {uri}: expected an object with a 'files' list")
    for entry in obj["files"]:
        path = entry.get("path") if isinstance(entry, dict) else None
        date = entry.get("date") if isinstance(entry, dict) else None
        if (
            not isinstance(path, str)
            or not path.startswith(STAGING + "/")
            or ".." in path.split("/")
            or not isinstance(date, str)
            or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
        ):
            raise LogError(f"commit {uri}: bad file entry {entry!r}")
    return obj


def committed_job_files(
    log_root_uri: str, model_name: str, days, *, on_corrupt=None
) -> list[tuple[dt.date, str]]:
    """``(date, uri)`` of the files of every committed batch job that fall on one of ``days``."""
    wanted = {d.isoformat() for d in days}
    model_root = fs.join(log_root_uri, PREDICTIONS, model_name)
    out = []
    for uri in fs.list_files(fs.join(model_root, COMMITS)):
        name = uri.rsplit("/", 1)[-1]
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            obj = read_commit(uri)
        except (OSError, LogError) as e:
            if on_corrupt is not None:
                on_corrupt(uri, str(e)[:300])
            continue
        for entry in obj["files"]:
            if entry["date"] in wanted:
                out.append((dt.date.fromisoformat(entry["date"]), fs.join(model_root, entry["path"])))
    return out


def read_file(uri: str, columns=None) -> pa.Table:
    """One log file, fully read and decoded (so a corrupt page fails here, before any row is used)."""
    if fs.is_gcs(uri):
        source = pa.BufferReader(fs.read_bytes(uri))
    else:
        source = uri
    f = pq.ParquetFile(source)
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


def scan(
    log_root_uri: str,
    model_name: str,
    kind: str,
    start,
    end,
    columns=None,
    *,
    on_corrupt: Callable[[str, str], None] | None = None,
    report: ScanReport | None = None,
    batch_rows: int = 65_536,
    filter_timestamp: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Streams the log rows of the window ``[start, end)`` as record batches.

    Only the window's date partitions and the commit objects of batch jobs are listed (a job's committed
    files of those dates are read; staged, uncommitted rows never are); each file is read whole (files are
    one written batch), filtered on ``timestamp`` and yielded in batches of at most ``batch_rows`` rows, so
    memory holds one file at a time. A file that is not Parquet, is truncated, fails to decode or lacks a column of the
    kind's schema is skipped, never raised: it is passed to ``on_corrupt(uri, reason)`` and recorded in
    ``report``.

    Args:
        log_root_uri: Log root (local dir or ``gs://``).
        model_name: Model name.
        kind: ``"predictions"`` or ``"feedback"``.
        start: Window start (datetime, UTC if naive, or epoch seconds), inclusive.
        end: Window end, exclusive.
        columns: Columns to read (default: all of the kind's schema; ``timestamp`` is always read).
        on_corrupt: Called with ``(uri, reason)`` for each skipped file.
        report: Counts files, rows and skipped files.
        batch_rows: Largest batch yielded.
        filter_timestamp: Keep only rows with ``start <= timestamp < end`` (False: whole partitions).
            Rows whose timestamp is not in their file's date partition are always skipped and counted in
            ``report.bad_rows``.

    Yields:
        Record batches with the requested columns of the kind's schema, cast to it.
    """
    schema = _schema(kind)
    wanted = list(columns) if columns is not None else list(schema.names)
    unknown = [c for c in wanted if c not in schema.names]
    if unknown:
        raise LogError(f"unknown {kind} log columns {unknown}")
    read_cols = wanted if "timestamp" in wanted else [*wanted, "timestamp"]
    out_schema = pa.schema([schema.field(c) for c in wanted])
    s_us = round(_utc(start).timestamp() * 1e6)
    e_us = round(_utc(end).timestamp() * 1e6)

    def bad_commit(uri: str, reason: str) -> None:
        if report is not None:
            report.corrupt.append((uri, reason))
        if on_corrupt is not None:
            on_corrupt(uri, reason)

    for day, uri in list_files(log_root_uri, model_name, kind, start, end, on_corrupt=bad_commit):
        try:
            table = read_file(uri, columns=read_cols)
            table = conform(table, pa.schema([schema.field(c) for c in read_cols]))
        except Exception as e:  # any failure to read one file skips that file only
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"[:300]
            if report is not None:
                report.corrupt.append((uri, reason))
            if on_corrupt is not None:
                on_corrupt(uri, reason)
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
        table = table.select(wanted).cast(out_schema)
        if report is not None:
            report.rows += table.num_rows
        for batch in table.to_batches(max_chunksize=batch_rows):
            if batch.num_rows:
                yield batch
