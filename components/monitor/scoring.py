"""Live data vs the champion's data with the validation functions (:mod:`components.validate.tfdv_ops`).

* Anomalies: TFDV statistics of the live features, validated against the training schema in the
  ``SERVING`` environment (the label is absent from serving data).
* Drift (live vs the champion's training data) and skew (live vs its eval data): every feature's TFDV
  score, against the statistics stored with the champion (:mod:`components.monitor.reference`). Numeric features are clipped to the reference's quantiles first (see
  :class:`kfloop.config.MonitoringConfig` for why: TFDV's equal-width histograms follow each side's min
  and max, so without clipping a single outlier makes the score noise).
"""

from __future__ import annotations

import os
import tempfile

from kfloop import config
from kfloop import features as F

_NUMERIC = tuple(f.name for f in F.features_of(F.Kind.NUMERIC))
_MODEL = tuple(f.name for f in F.MODEL_FEATURES)


def clip_numeric(frame, bounds: dict[str, tuple[float, float]]):
    """A copy of the model features of ``frame`` with numeric columns clipped to ``bounds``."""
    out = frame[list(_MODEL)].copy()
    for name, (lo, hi) in bounds.items():
        out[name] = out[name].astype("float64").clip(lo, hi)
    return out


def clip_bounds(reference, quantile: float) -> dict[str, tuple[float, float]]:
    """``{numeric feature: (q, 1 - q) quantiles}`` of the reference (features with values only)."""
    bounds = {}
    for name in _NUMERIC:
        col = reference[name].astype("float64").dropna()
        if len(col):
            bounds[name] = (float(col.quantile(quantile)), float(col.quantile(1.0 - quantile)))
    return bounds


def _scores(result: list[dict], cfg: config.MonitoringConfig) -> list[dict]:
    out = []
    for s in result:
        out.append(
            {
                "feature": s["feature"],
                "measure": s["metric"],
                "value": None if s["score"] is None else round(float(s["score"]), 6),
                "threshold": s["threshold"],
                "exceeded": bool(s["crossed"]),
                "ignored": s["feature"] in cfg.drift_ignore,
            }
        )
    return out


def statistics(raw_paths: list[str], clipped_paths: list[str], *, schema=None, beam_pipeline_args=()):
    """TFDV statistics of the staged live batches, raw and clipped, in one Beam pipeline.

    The same statistics path as validation (:mod:`components.validate.tfdv_ops`: staged Arrow IPC files,
    ``beam.Create(paths) | read | tfdv.GenerateStatistics`` with the same options), two branches.
    ``beam_pipeline_args`` passes through (a remote runner needs ``raw_paths`` on shared storage).

    Returns:
        ``(raw_stats, clipped_stats)``.
    """
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.validate import tfdv_ops as V

    options = V.stats_options(schema)
    with tempfile.TemporaryDirectory(prefix="kfloop-live-stats-") as tmp:
        outs = {"raw": os.path.join(tmp, "raw.pb"), "clipped": os.path.join(tmp, "clipped.pb")}
        with beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args))) as p:
            for name, paths in (("raw", raw_paths), ("clipped", clipped_paths)):
                _ = (
                    p
                    | f"Paths {name}" >> beam.Create(paths)
                    | f"Read {name}" >> beam.FlatMap(V._read_batch)
                    | f"Stats {name}" >> tfdv.GenerateStatistics(options)
                    | f"Write {name}" >> tfdv.WriteStatisticsToBinaryFile(outs[name])
                )
        return tfdv.load_stats_binary(outs["raw"]), tfdv.load_stats_binary(outs["clipped"])


def score_statistics(raw_stats, clipped_stats, reference, *, cfg: config.MonitoringConfig, schema=None):
    """Anomalies of the live statistics and drift / skew against a stored reference.

    Args:
        raw_stats: Live statistics (model features + event time), unclipped: validated against the schema
            in the ``SERVING`` environment.
        clipped_stats: Live statistics of the model features clipped to ``reference.bounds``.
        reference: :class:`components.monitor.reference.Reference` (clipped train / eval statistics).
        cfg: Thresholds.
        schema: Schema (default: the committed one).

    Returns:
        ``(anomalies, drift, skew)``: ``anomalies`` as :func:`tfdv_ops.summarize_anomalies` gives them;
        ``drift`` / ``skew`` one dict per model feature: ``{"feature", "measure", "value", "threshold",
        "exceeded", "ignored"}`` (``skew`` is empty without eval statistics).
    """
    from components.validate import tfdv_ops as V

    schema = schema if schema is not None else V.load_schema()
    vcfg = config.ValidationConfig(
        drift_linf=cfg.drift_linf, drift_jsd=cfg.drift_jsd, skew_linf=cfg.skew_linf, skew_jsd=cfg.skew_jsd
    )
    anomalies = V.summarize_anomalies(V.validate(raw_stats, schema, V.SERVING), vcfg)
    drift = _scores(
        V.drift_scores(clipped_stats, reference.train_stats, kind="drift", cfg=vcfg, schema=schema), cfg
    )
    skew: list[dict] = []
    if reference.eval_stats is not None:
        skew = _scores(
            V.drift_scores(clipped_stats, reference.eval_stats, kind="skew", cfg=vcfg, schema=schema), cfg
        )
    return anomalies, drift, skew
