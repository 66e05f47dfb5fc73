"""Live data vs the champion's data with the validation functions (:mod:`kfloop.tfdv.ops`).

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


def statistics(paths: list[str], *, schema=None, beam_pipeline_args=()):
    """TFDV statistics of the staged live batches (:func:`components.monitor.stream.tfdv_batches`).

    The same statistics path as validation (:func:`kfloop.tfdv.ops.statistics_from_batches`:
    staged Arrow IPC files, ``beam.Create(paths) | read | tfdv.GenerateStatistics``, the same options);
    ``beam_pipeline_args`` passes through (a remote runner needs ``paths`` on shared storage).

    Returns:
        ``(raw_stats, clipped_stats)`` (see :func:`split_statistics`).
    """
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    from kfloop.tfdv import ops as V

    with tempfile.TemporaryDirectory(prefix="kfloop-live-stats-") as tmp:
        out = os.path.join(tmp, "stats.pb")
        with beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args))) as p:
            _ = (
                p
                | "Paths" >> beam.Create(paths)
                | "Read" >> beam.FlatMap(V._read_batch)
                | "Stats" >> tfdv.GenerateStatistics(V.stats_options(schema))
                | "Write" >> tfdv.WriteStatisticsToBinaryFile(out)
            )
        return split_statistics(tfdv.load_stats_binary(out))


def split_statistics(stats):
    """Splits the statistics of the staged batches into ``(raw, clipped)``.

    ``raw``: every feature but the clipped copies (validated against the schema). ``clipped``: the model
    features, numeric ones from their ``__clipped`` copy under their own name (the drift / skew side).
    """
    from components.monitor.stream import CLIPPED

    def name(f):
        return f.path.step[-1] if f.path.step else f.name

    raw, clipped = type(stats)(), type(stats)()
    for target in (raw, clipped):
        ds = target.datasets.add()
        ds.CopyFrom(stats.datasets[0])
        del ds.features[:]
    src = stats.datasets[0].features
    copies = {name(f)[: -len(CLIPPED)] for f in src if name(f).endswith(CLIPPED)}
    for f in src:
        n = name(f)
        if n.endswith(CLIPPED):
            g = clipped.datasets[0].features.add()
            g.CopyFrom(f)
            del g.path.step[:]
            g.path.step.append(n[: -len(CLIPPED)])
            continue
        raw.datasets[0].features.add().CopyFrom(f)
        if n in _MODEL and n not in copies:
            clipped.datasets[0].features.add().CopyFrom(f)
    return raw, clipped


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
        ``(anomalies, drift, skew)``: ``anomalies`` as :func:`kfloop.tfdv.ops.summarize_anomalies` gives them;
        ``drift`` / ``skew`` one dict per model feature: ``{"feature", "measure", "value", "threshold",
        "exceeded", "ignored"}`` (``skew`` is empty without eval statistics).
    """
    from kfloop.tfdv import ops as V

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
