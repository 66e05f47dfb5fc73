"""TFDV data validation as plain functions: the one import for callers, re-exporting the job modules.

The work lives in one module per job: :mod:`kfloop.tfdv.statistics` (CSV → Arrow → Beam statistics),
:mod:`kfloop.tfdv.schema` (the schema from statistics and the dataset spec), :mod:`kfloop.tfdv.validation`
(anomalies, row checks, findings, artifacts) and :mod:`kfloop.tfdv.drift` (drift / skew scores of every
feature); errors in :mod:`kfloop.tfdv.errors`. Every function that needs to know the columns takes the
dataset spec (``spec=``).
"""

from __future__ import annotations

from kfloop.tfdv.drift import drift_scores, jensen_shannon
from kfloop.tfdv.errors import BlockingAnomaliesError, StatisticsCountError, ValidationError
from kfloop.tfdv.schema import ENVIRONMENTS, SERVING, TRAINING, infer_schema, load_schema, spec_schema
from kfloop.tfdv.statistics import (
    DEFAULT_BATCH_ROWS,
    check_count,
    compute_statistics,
    load_statistics,
    read_frame,
    statistics_from_batches,
    stats_options,
    to_record_batches,
    write_statistics,
)
from kfloop.tfdv.validation import (
    ValidationResult,
    blocking_message,
    run_validation,
    score_findings,
    summarize_anomalies,
    validate,
    write_artifacts,
)

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "ENVIRONMENTS",
    "SERVING",
    "TRAINING",
    "BlockingAnomaliesError",
    "StatisticsCountError",
    "ValidationError",
    "ValidationResult",
    "blocking_message",
    "check_count",
    "compute_statistics",
    "drift_scores",
    "infer_schema",
    "jensen_shannon",
    "load_schema",
    "load_statistics",
    "read_frame",
    "run_validation",
    "score_findings",
    "spec_schema",
    "statistics_from_batches",
    "stats_options",
    "summarize_anomalies",
    "to_record_batches",
    "validate",
    "write_artifacts",
    "write_statistics",
]
