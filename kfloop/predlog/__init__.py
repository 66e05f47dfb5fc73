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
(``string``, ``int8/32/64``, ``float32/64``, ``list<float32>``, ``timestamp[us, UTC]``) and Parquet format 2.6, so that the same file
is readable as it is by pyarrow 10 (the pipeline image), a current pyarrow (the serving image),
``pyarrow.dataset``, pandas, DuckDB and a BigQuery external table with hive partitioning (``date`` comes
from the path; it is not a column of the files).

* Predictions (:func:`prediction_schema` of the predicting model's dataset spec): one row per predicted
  row: ``request_id``, ``row``, ``timestamp`` (prediction time), ``model_version``, ``source`` (``online`` /
  ``batch``), every model feature of the spec as a typed nullable column (a missing value is null, the same
  for V1 and V2; booleans as int64 0/1), and the model's output per the spec's task
  (:data:`OUTPUT_COLUMNS`): binary ``probability`` float32, regression ``prediction`` float32, multiclass
  ``probabilities`` ``list<float32>`` of K in the spec's class order. Every file holds the rows of one spec
  (its name and digest are in the file's schema metadata, and for regression / multiclass the task and
  classes: ``kfloop.task``, ``kfloop.classes``); readers take the features a file has.
* Feedback (:func:`feedback_schema` of the task; binary :data:`FEEDBACK_SCHEMA`): ``request_id``, ``row``,
  ``label`` (binary int8 0/1, multiclass int32 class index, regression float64), ``timestamp`` (label
  arrival), ``prediction_timestamp``, ``delay_s``, ``labeler``.

A file becomes visible whole or not at all (:func:`write_table`: local tmp + rename, GCS
``if_generation_match=0``). :func:`scan` lists only the window's date partitions, filters on ``timestamp`` and
skips (and reports) files that are corrupt, truncated or of the wrong schema: it never raises on bad data.

Modules: :mod:`~kfloop.predlog.schema` (schemas), :mod:`~kfloop.predlog.build` (tables from decoded
columns), :mod:`~kfloop.predlog.write` (atomic files), :mod:`~kfloop.predlog.jobs` (batch-job commits),
:mod:`~kfloop.predlog.read` (listing and scanning). This is a ground-floor package: it imports only pyarrow,
numpy, the standard library and :mod:`kfloop.fs`; specs come in as arguments, nothing runs at import time.
"""

from __future__ import annotations

from kfloop import fs
from kfloop.predlog.build import columns_from_instances, feature_array, feedback_table, prediction_table
from kfloop.predlog.jobs import (
    COMMITS,
    STAGING,
    BatchJob,
    commit_uri,
    committed_job_files,
    job_key,
    read_commit,
)
from kfloop.predlog.read import (
    ScanReport,
    conform,
    list_files,
    log_files,
    read_file,
    scan,
    window_dates,
)
from kfloop.predlog.schema import (
    ARROW_TYPES,
    BASE_PREDICTION_SCHEMA,
    CLASSES_KEY,
    FEEDBACK,
    FEEDBACK_SCHEMA,
    FIXED_COLUMNS,
    KIND_KEY,
    KINDS,
    LABEL_TYPES,
    OPTIONAL_COLUMNS,
    OUTPUT_COLUMNS,
    OUTPUT_FIELDS,
    PREDICTIONS,
    SOURCES,
    SPEC_DIGEST_KEY,
    SPEC_NAME_KEY,
    TASK_KEY,
    TASKS,
    LogError,
    as_feedback_schema,
    as_prediction_schema,
    feature_field,
    feature_fields,
    feature_names,
    feedback_schema,
    normalize_prediction_schema,
    output_column,
    prediction_schema,
    prediction_task,
    schema_classes,
    schema_task,
    spec_digest,
    task_name,
)
from kfloop.predlog.write import (
    COMPRESSION,
    PARQUET_VERSION,
    SUFFIX,
    check_model_name,
    dates_of,
    default_writer_id,
    parquet_bytes,
    partition_uri,
    write_table,
)

__all__ = [
    "ARROW_TYPES",
    "BASE_PREDICTION_SCHEMA",
    "CLASSES_KEY",
    "COMMITS",
    "COMPRESSION",
    "FEEDBACK",
    "FEEDBACK_SCHEMA",
    "FIXED_COLUMNS",
    "KINDS",
    "KIND_KEY",
    "LABEL_TYPES",
    "OPTIONAL_COLUMNS",
    "OUTPUT_COLUMNS",
    "OUTPUT_FIELDS",
    "PARQUET_VERSION",
    "PREDICTIONS",
    "SOURCES",
    "SPEC_DIGEST_KEY",
    "SPEC_NAME_KEY",
    "STAGING",
    "SUFFIX",
    "TASKS",
    "TASK_KEY",
    "BatchJob",
    "LogError",
    "ScanReport",
    "as_feedback_schema",
    "as_prediction_schema",
    "check_model_name",
    "columns_from_instances",
    "commit_uri",
    "committed_job_files",
    "conform",
    "dates_of",
    "default_writer_id",
    "feature_array",
    "feature_field",
    "feature_fields",
    "feature_names",
    "feedback_schema",
    "feedback_table",
    "fs",
    "job_key",
    "list_files",
    "log_files",
    "normalize_prediction_schema",
    "output_column",
    "parquet_bytes",
    "partition_uri",
    "prediction_schema",
    "prediction_table",
    "prediction_task",
    "read_commit",
    "read_file",
    "scan",
    "schema_classes",
    "schema_task",
    "spec_digest",
    "task_name",
    "window_dates",
    "write_table",
]


def __getattr__(name: str):
    if name in ("PREDICTION_SCHEMA", "FEATURE_NAMES", "SCHEMAS"):
        raise AttributeError(
            f"kfloop.predlog.{name} is gone: the prediction log's columns come from the dataset spec "
            "(prediction_schema(spec), feature_names(schema); BASE_PREDICTION_SCHEMA for the fixed columns)"
        )
    raise AttributeError(f"module 'kfloop.predlog' has no attribute {name!r}")
