"""TFDV statistics: reading a CSV as text, Arrow record batches, the Beam statistics pipeline, the count check.

Data flow: a Dataset CSV (or a DataFrame) → :func:`to_record_batches` (Arrow, one list value per cell,
missing cell = null; each column typed by its kind in the dataset spec) → :func:`compute_statistics`
(Apache Beam, ``beam_pipeline_args`` passed through) → a ``DatasetFeatureStatisticsList`` whose example
count is checked against the rows read.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from kfloop import fs
from kfloop import row_checks as checks
from kfloop.spec import Kind
from kfloop.tfdv import schema as kschema
from kfloop.tfdv.errors import StatisticsCountError, ValidationError

if TYPE_CHECKING:
    from kfloop.spec import DatasetSpec

#: Rows per Arrow record batch fed to Beam.
DEFAULT_BATCH_ROWS = 10_000


def read_frame(uri: str):
    """Reads a CSV (local path or ``gs://``) as strings, without type coercion.

    Unlike :func:`kfloop.datasets.read_dataset`, a value that does not parse as its column's type is kept
    as text so that TFDV reports the type anomaly instead of the reader failing, and a column name repeated
    in the header stays repeated (:func:`kfloop.row_checks.read_csv_text`) for the data gate to refuse.

    Raises:
        ValidationError: the file does not exist, is empty or has no header.
    """
    import pandas as pd

    try:
        payload = fs.read_bytes(uri)
    except FileNotFoundError:
        raise ValidationError(f"data file {uri!r} does not exist") from None
    if not payload.strip():
        raise ValidationError(f"data file {uri!r} is empty")
    try:
        return checks.read_csv_text(payload, empty_as_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValidationError(f"data file {uri!r} is not a readable CSV: {e}") from None


def _column_values(name: str, series, spec: DatasetSpec | None):
    """A column's present values as a numpy array (int64 / float32 / object str) and its validity mask.

    Columns of the spec are decoded as their kind (numeric: float; categorical int, boolean, time, label:
    int; categorical string: text); when a value does not parse (text in a numeric column, a fraction in an
    integer column) the whole column stays text so TFDV sees the wrong type. Other columns (and every column
    without a spec) are decoded as int, else float, else text.
    """
    import numpy as np
    import pandas as pd

    valid = series.notna().to_numpy()
    try:
        kind = spec.feature(name).kind if spec is not None else None
    except KeyError:
        kind = None
    present = series[valid]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        numbers = pd.to_numeric(present).astype("float64")
    else:
        numbers = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
        if numbers.isna().any() or kind == Kind.CATEGORICAL_STR:
            return present.astype(str).to_numpy(dtype=object), valid
        numbers = numbers.astype("float64")
    as_float = numbers.to_numpy(dtype=np.float64)
    integral = bool(np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)))
    if kind == Kind.CATEGORICAL_STR:
        return present.astype(str).to_numpy(dtype=object), valid
    if kind in (Kind.NUMERIC, Kind.TARGET) or (kind is None and not integral) or not integral:
        return as_float.astype(np.float32), valid
    return as_float.astype(np.int64), valid


def to_record_batches(frame, batch_rows: int = DEFAULT_BATCH_ROWS, *, spec: DatasetSpec | None) -> list:
    """Converts a DataFrame to Arrow record batches in TFDV's format (a list column per feature).

    Each cell becomes a one-element list; a missing cell (NaN / None / empty) becomes a null list, which
    TFDV counts as "feature missing in this example". ``spec`` types the columns (:func:`_column_values`);
    ``None`` (explicitly) types them by their values.
    """
    import numpy as np
    import pyarrow as pa

    if batch_rows < 1:
        raise ValidationError(f"batch_rows must be >= 1, got {batch_rows}")
    columns = {}
    for name in frame.columns:
        values, valid = _column_values(str(name), frame[name], spec)
        if values.dtype == object:  # text: TFDV wants bytes; utf8 -> binary is a free cast
            arr = pa.array(values, type=pa.string()).cast(pa.binary())
        else:
            arr = pa.array(values)
        columns[str(name)] = (arr, valid)
    batches = []
    n = len(frame)
    for start in range(0, n, batch_rows):
        stop = min(start + batch_rows, n)
        arrays, names = [], []
        for name, (arr, valid) in columns.items():
            v = valid[start:stop]
            counts = np.concatenate([[0], np.cumsum(v)]).astype(np.int32)
            first = int(np.sum(valid[:start]))
            offsets = pa.array(counts, mask=np.concatenate([~v, [False]]))
            arrays.append(pa.ListArray.from_arrays(offsets, arr.slice(first, int(counts[-1]))))
            names.append(name)
        batches.append(pa.RecordBatch.from_arrays(arrays, names))
    return batches


def stats_options(schema=None, spec: DatasetSpec | None = None):
    """``tfdv.StatsOptions`` for kfloop data (which INT features are categorical: from ``schema``, else the
    spec's hints, :func:`kfloop.tfdv.schema.hints`).

    Raises:
        ValidationError: neither ``schema`` nor ``spec`` is given.
    """
    import tensorflow_data_validation as tfdv

    if schema is None and spec is None:
        raise ValidationError("statistics options need the schema or the dataset spec")
    return tfdv.StatsOptions(
        schema=schema if schema is not None else kschema.hints(spec),
        enable_semantic_domain_stats=False,
        num_top_values=20,
        num_rank_histogram_buckets=1000,
        # Quantile buckets feed the numeric Jensen-Shannon divergence of drift_scores.
        num_quantiles_histogram_buckets=20,
    )


def compute_statistics(
    data,
    *,
    spec: DatasetSpec,
    schema=None,
    beam_pipeline_args: tuple[str, ...] | list[str] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    output_path: str | None = None,
    staging_dir: str | None = None,
):
    """Computes TFDV statistics of a dataset with an Apache Beam pipeline and checks the example count.

    Args:
        data: A Dataset CSV (local path or ``gs://``) or a pandas DataFrame (one row per example; NaN /
            None = missing).
        spec: The dataset spec (column kinds).
        schema: Schema for statistics options (which INT features are categorical); default: the hints of
            :func:`kfloop.tfdv.schema.hints` derived from ``spec``.
        beam_pipeline_args: Beam pipeline options, e.g. ``["--direct_running_mode=multi_processing",
            "--direct_num_workers=2"]`` or ``["--runner=DataflowRunner", ...]``. Default: in-process
            DirectRunner.
        batch_rows: Rows per Arrow record batch.
        output_path: Where the Beam pipeline writes the binary statistics (must be reachable by the workers
            on a remote runner); default: a temporary local file.
        staging_dir: Where the record batches are staged for the workers (a ``gs://`` prefix on a remote
            runner); default: a temporary local folder.

    Returns:
        A ``DatasetFeatureStatisticsList`` with one dataset.

    Raises:
        ValidationError: unreadable or empty data, or a column name repeated in the header.
        StatisticsCountError: ``num_examples`` differs from the number of rows read.
    """
    frame = read_frame(os.fspath(data)) if isinstance(data, str | os.PathLike) else data
    rows = len(frame)
    if rows == 0:
        raise ValidationError(f"dataset {data if isinstance(data, str) else '(DataFrame)'} has no rows")
    repeated = checks.duplicate_columns(frame.columns)
    if repeated:
        raise ValidationError("; ".join(p.message for p in repeated))
    batches = to_record_batches(frame, batch_rows, spec=spec)
    stats = statistics_from_batches(
        batches,
        spec=spec,
        schema=schema,
        beam_pipeline_args=beam_pipeline_args,
        output_path=output_path,
        staging_dir=staging_dir,
    )
    check_count(stats, rows)
    return stats


def _read_batch(uri: str):
    """One Arrow record batch from an IPC stream file written by :func:`statistics_from_batches`."""
    import pyarrow as pa

    from kfloop import fs as kfs

    with pa.ipc.open_stream(kfs.read_bytes(uri)) as reader:
        yield from reader


def statistics_from_batches(
    batches,
    *,
    spec: DatasetSpec | None = None,
    schema=None,
    beam_pipeline_args=(),
    output_path: str | None = None,
    staging_dir: str | None = None,
):
    """Runs TFDV's ``GenerateStatistics`` in a Beam pipeline over Arrow record batches (no count check).

    The batches are staged as Arrow IPC files and the pipeline reads them by path: putting the data itself
    into ``beam.Create`` makes Beam pickle and bz2-compress all of it into the pipeline graph (60% of the
    time at 100k rows, and a graph too large for remote runners).

    Args:
        batches: Arrow record batches (:func:`to_record_batches`).
        spec: See :func:`compute_statistics` (only needed without ``schema``).
        schema: See :func:`compute_statistics`.
        beam_pipeline_args: See :func:`compute_statistics`.
        output_path: See :func:`compute_statistics`.
        staging_dir: Where to stage the batches; must be readable by the Beam workers (a ``gs://`` prefix
            for Dataflow). Default: a temporary local folder, removed afterwards.

    Returns:
        The statistics; callers must check the count themselves (:func:`check_count`).
    """
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    options = stats_options(schema, spec)
    with tempfile.TemporaryDirectory(prefix="kfloop-stats-") as tmp:
        stage = staging_dir or tmp
        paths = []
        for n, batch in enumerate(batches):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            paths.append(fs.join(stage, f"batch-{n:06d}.arrow"))
            fs.write_bytes(paths[-1], sink.getvalue().to_pybytes())
        out = output_path or os.path.join(tmp, "stats.pb")
        with beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args))) as p:
            _ = (
                p
                | "Paths" >> beam.Create(paths)
                | "Read" >> beam.FlatMap(_read_batch)
                | "Stats" >> tfdv.GenerateStatistics(options)
                | "Write" >> tfdv.WriteStatisticsToBinaryFile(out)
            )
        return tfdv.load_stats_binary(out)


def check_count(stats, rows: int) -> None:
    """Fails loudly unless the statistics account for exactly ``rows`` examples.

    Raises:
        StatisticsCountError: the counts differ (TFDV's multi-process DirectRunner has been reported to
            drop records, data-validation#247).
    """
    got = sum(int(ds.num_examples) for ds in stats.datasets)
    if len(stats.datasets) != 1 or got != rows:
        raise StatisticsCountError(
            f"statistics count {got} examples in {len(stats.datasets)} dataset(s), but {rows} rows were read: "
            "records were dropped or duplicated while computing statistics"
        )


def write_statistics(stats, uri: str) -> None:
    """Writes statistics as a binary ``DatasetFeatureStatisticsList`` (local path or ``gs://``)."""
    fs.write_bytes(uri, stats.SerializeToString())


def load_statistics(uri: str):
    """Reads statistics written by :func:`write_statistics` (binary proto).

    Raises:
        ValidationError: the file is missing or not a statistics proto.
    """
    from google.protobuf.message import DecodeError
    from tensorflow_metadata.proto.v0 import statistics_pb2

    try:
        payload = fs.read_bytes(uri)
    except FileNotFoundError:
        raise ValidationError(f"statistics file {uri!r} does not exist") from None
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        stats.ParseFromString(payload)
    except DecodeError:
        raise ValidationError(
            f"statistics file {uri!r} is not a DatasetFeatureStatisticsList proto"
        ) from None
    if not stats.datasets:
        raise ValidationError(f"statistics file {uri!r} holds no dataset statistics")
    return stats
