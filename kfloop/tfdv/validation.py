"""Validation of one dataset: TFDV schema anomalies, the row checks, drift / skew findings, the artifacts.

:func:`run_validation` is what the validate component and ``kfloop validate`` run: statistics
(:mod:`kfloop.tfdv.statistics`), anomalies against the schema (:mod:`kfloop.tfdv.schema`), the row checks
a schema cannot express (:mod:`kfloop.row_checks`), drift and skew scores (:mod:`kfloop.tfdv.drift`);
:func:`summarize_anomalies` says which findings block (per :class:`kfloop.config.ValidationConfig`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from kfloop import config, fs
from kfloop import row_checks as checks
from kfloop.tfdv import schema as kschema
from kfloop.tfdv.drift import drift_scores
from kfloop.tfdv.errors import ValidationError
from kfloop.tfdv.statistics import compute_statistics, read_frame, write_statistics

if TYPE_CHECKING:
    from kfloop.spec import DatasetSpec

TRAINING = kschema.TRAINING
SERVING = kschema.SERVING


def validate(stats, schema, environment: str = TRAINING):
    """Validates statistics against the schema with TFDV (types, presence, domains, ranges, environment).

    Drift and skew are not part of this (see :func:`drift_scores`, which scores every feature).

    Args:
        stats: Statistics of the dataset under test.
        schema: The schema (:func:`kfloop.tfdv.schema.load_schema`).
        environment: ``"TRAINING"`` (label required) or ``"SERVING"`` (label must be absent).

    Returns:
        A TFDV ``Anomalies`` proto.

    Raises:
        ValidationError: unknown environment.
    """
    import tensorflow_data_validation as tfdv

    if environment not in kschema.ENVIRONMENTS:
        raise ValidationError(f"environment {environment!r} is not one of {', '.join(kschema.ENVIRONMENTS)}")
    return tfdv.validate_statistics(stats, schema, environment=environment)


def summarize_anomalies(anomalies, cfg: config.ValidationConfig = config.ValidationConfig()) -> list[dict]:
    """Flattens an ``Anomalies`` proto into one dict per (feature, anomaly type), sorted by feature.

    A finding is blocking unless its type is in ``cfg.non_blocking``.

    Returns:
        ``[{"feature", "type", "short_description", "description", "blocking"}, ...]``; dataset-level
        anomalies use feature ``"(dataset)"``.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    out = []

    def add(feature: str, info) -> None:
        for reason in info.reason:
            type_name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            out.append(
                {
                    "feature": feature,
                    "type": type_name,
                    "short_description": reason.short_description,
                    "description": reason.description,
                    "blocking": type_name not in cfg.non_blocking,
                }
            )

    for name in sorted(anomalies.anomaly_info):
        add(name, anomalies.anomaly_info[name])
    if anomalies.HasField("dataset_anomaly_info"):
        add("(dataset)", anomalies.dataset_anomaly_info)
    return out


def score_findings(
    scores: list[dict], cfg: config.ValidationConfig = config.ValidationConfig()
) -> list[dict]:
    """Findings (same shape as :func:`summarize_anomalies`) for the drift / skew scores that crossed.

    Drift blocks only with ``cfg.block_on_drift``, skew only with ``cfg.block_on_skew``.
    """
    out = []
    for s in scores:
        if not s["crossed"]:
            continue
        linf = s["metric"] == "l_infinity"
        what = "L-infinity distance" if linf else "Jensen-Shannon divergence"
        against = "the reference statistics" if s["kind"] == "drift" else "the training split"
        out.append(
            {
                "feature": s["feature"],
                "type": f"{s['kind'].upper()}_{'L_INFTY' if linf else 'JENSEN_SHANNON_DIVERGENCE'}_HIGH",
                "short_description": f"High {s['kind']} ({what})",
                "description": f"{s['kind']}: {what} {s['score']:.4g} against {against} is above the "
                f"threshold {s['threshold']:g}",
                "blocking": bool(cfg.block_on_drift if s["kind"] == "drift" else cfg.block_on_skew),
            }
        )
    return out


def blocking_message(findings: list[dict]) -> str:
    """One line per blocking finding: ``feature: TYPE: description``."""
    lines = [f"  {f['feature']}: {f['type']}: {f['description']}" for f in findings if f["blocking"]]
    return f"{len(lines)} blocking data anomal{'y' if len(lines) == 1 else 'ies'}:\n" + "\n".join(lines)


@dataclasses.dataclass
class ValidationResult:
    """Everything one validation produced.

    Attributes:
        stats: Statistics of the dataset.
        anomalies: TFDV ``Anomalies`` proto (schema checks).
        findings: :func:`summarize_anomalies` of ``anomalies`` plus :func:`score_findings` of drift / skew.
        drift: :func:`drift_scores` against the reference statistics (empty without a reference).
        skew: :func:`drift_scores` with ``kind="skew"`` against the skew dataset (empty without one).
        environment: The schema environment used.
        rows: Rows read.
    """

    stats: object
    anomalies: object
    findings: list[dict]
    drift: list[dict]
    skew: list[dict]
    environment: str
    rows: int

    @property
    def blocking(self) -> list[dict]:
        """The blocking findings."""
        return [f for f in self.findings if f["blocking"]]

    def summary(self) -> dict:
        """A JSON-ready summary (written next to the anomalies proto)."""
        return {
            "environment": self.environment,
            "rows": self.rows,
            "num_examples": int(self.stats.datasets[0].num_examples),
            "blocking": bool(self.blocking),
            "num_anomalies": len(self.findings),
            "num_blocking": len(self.blocking),
            "anomalies": self.findings,
            "drift": self.drift,
            "skew": self.skew,
        }


def run_validation(
    data,
    *,
    spec: DatasetSpec,
    schema=None,
    environment: str = TRAINING,
    reference_stats=None,
    skew_data=None,
    cfg: config.ValidationConfig = config.ValidationConfig(),
    beam_pipeline_args: tuple[str, ...] | list[str] = (),
) -> ValidationResult:
    """Statistics, anomalies, drift and skew of one dataset (what the component and the CLI run).

    Args:
        data: Dataset CSV (path / ``gs://``) or DataFrame, in Dataset form (:func:`kfloop.clean.clean`
            turns raw data into it).
        spec: The dataset spec (column kinds, the event time, drift modes).
        schema: Schema proto (the one kept next to the spec); default: the schema the spec alone implies
            (:func:`kfloop.tfdv.schema.spec_schema`).
        environment: ``"TRAINING"`` or ``"SERVING"``.
        reference_stats: Statistics to measure drift against (optional).
        skew_data: A second dataset (e.g. the eval split, as CSV / DataFrame) for the skew check, or its
            statistics (optional).
        cfg: Thresholds and which anomalies block.
        beam_pipeline_args: Passed to Beam.

    Besides TFDV's schema checks, the rows are checked for what a schema cannot express
    (:mod:`kfloop.row_checks`: a column name repeated in the header, non-finite numbers, event times
    outside ``cfg.event_time``); each is a blocking finding naming the column and the first CSV line. Of a
    repeated column only the first is validated.

    Returns:
        A :class:`ValidationResult`; raising on blocking anomalies is up to the caller.

    Raises:
        ValidationError: unreadable or empty data, unknown environment.
    """
    if environment not in kschema.ENVIRONMENTS:
        raise ValidationError(f"environment {environment!r} is not one of {', '.join(kschema.ENVIRONMENTS)}")
    schema = schema if schema is not None else kschema.spec_schema(spec)
    bounds = cfg.event_time.bounds()
    frame, gate = _checked_frame(data, spec, bounds, "")
    stats = compute_statistics(frame, spec=spec, schema=schema, beam_pipeline_args=beam_pipeline_args)
    skew_stats = None
    if skew_data is not None:
        if hasattr(skew_data, "datasets"):
            skew_stats = skew_data
        else:
            skew_frame, skew_gate = _checked_frame(skew_data, spec, bounds, "skew data: ")
            gate += skew_gate
            skew_stats = compute_statistics(
                skew_frame, spec=spec, schema=schema, beam_pipeline_args=beam_pipeline_args
            )
    anomalies = validate(stats, schema, environment)
    drift = (
        drift_scores(stats, reference_stats, spec=spec, kind="drift", cfg=cfg, schema=schema)
        if reference_stats is not None
        else []
    )
    skew = (
        drift_scores(skew_stats, stats, spec=spec, kind="skew", cfg=cfg, schema=schema)
        if skew_stats is not None
        else []
    )
    gate = [{**g, "blocking": g["type"] not in cfg.non_blocking} for g in gate]
    findings = gate + summarize_anomalies(anomalies, cfg) + score_findings(drift + skew, cfg)
    rows = int(stats.datasets[0].num_examples)
    return ValidationResult(stats, anomalies, findings, drift, skew, environment, rows)


def _checked_frame(data, spec: DatasetSpec, bounds: tuple[int, int], prefix: str):
    """Reads ``data`` (path or DataFrame) and runs :func:`kfloop.row_checks.frame_problems` on it.

    Returns:
        ``(frame, findings)``: the frame without the repeats of a repeated column name, and one finding per
        problem (its description prefixed with ``prefix``).

    Raises:
        ValidationError: unreadable or empty data.
    """
    path = isinstance(data, str | os.PathLike)
    frame = read_frame(os.fspath(data)) if path else data
    if len(frame) == 0:
        raise ValidationError(f"dataset {os.fspath(data) if path else '(DataFrame)'} has no rows")
    findings = []
    raw_only = tuple(c for c in spec.derive_inputs if c not in spec.dataset_columns)
    for problem in checks.frame_problems(frame, spec, bounds, extra_numeric=raw_only):
        finding = problem.finding()
        finding["description"] = prefix + finding["description"]
        findings.append(finding)
    if frame.columns.duplicated().any():
        frame = frame.loc[:, ~frame.columns.duplicated()]
    return frame, findings


def write_artifacts(
    result: ValidationResult,
    *,
    statistics_uri: str | None = None,
    anomalies_dir: str | None = None,
    report_uri: str | None = None,
    title: str = "Data validation",
) -> dict[str, str]:
    """Writes what a validation produced; every argument left None is skipped.

    Args:
        result: From :func:`run_validation`.
        statistics_uri: Binary ``DatasetFeatureStatisticsList`` file.
        anomalies_dir: Folder that gets ``anomalies.pbtxt`` (TFDV ``Anomalies`` text proto) and
            ``summary.json`` (:meth:`ValidationResult.summary`).
        report_uri: Self-contained HTML report (:mod:`kfloop.tfdv.validation_report`).
        title: Report title.

    Returns:
        ``{"statistics"|"anomalies"|"summary"|"report": uri}`` of what was written.
    """
    import json

    from google.protobuf import text_format

    from kfloop.tfdv import validation_report as report

    written = {}
    if statistics_uri:
        write_statistics(result.stats, statistics_uri)
        written["statistics"] = statistics_uri
    if anomalies_dir:
        written["anomalies"] = fs.join(anomalies_dir, "anomalies.pbtxt")
        fs.write_text(written["anomalies"], text_format.MessageToString(result.anomalies))
        written["summary"] = fs.join(anomalies_dir, "summary.json")
        fs.write_text(written["summary"], json.dumps(result.summary(), indent=2, sort_keys=True) + "\n")
    if report_uri:
        fs.write_text(report_uri, report.render(result.summary(), result.stats, title=title))
        written["report"] = report_uri
    return written
