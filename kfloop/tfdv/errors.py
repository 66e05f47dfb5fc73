"""The errors of kfloop's TFDV operations (one module, so that every job module raises the same ones)."""

from __future__ import annotations


class ValidationError(ValueError):
    """Bad input to validation (unreadable data, bad environment, empty dataset); names the culprit."""


class StatisticsCountError(RuntimeError):
    """The statistics do not account for every row read (records were dropped, data-validation#247)."""


class BlockingAnomaliesError(RuntimeError):
    """Blocking anomalies were found. ``findings`` holds the summaries (see :func:`summarize_anomalies`)."""

    def __init__(self, message: str, findings: list[dict]):
        super().__init__(message)
        self.findings = findings
