"""Live data vs the champion's data with the validation functions (:mod:`kfloop.tfdv.ops`).

* Anomalies: TFDV statistics of the live features, validated against the training schema in the
  ``SERVING`` environment (the label is absent from serving data).
* Drift (live vs the champion's training data) and skew (live vs its eval data): every feature's TFDV
  score, against the statistics stored with the champion (:mod:`kfloop.reference`). Numeric features are clipped to the reference's quantiles first (see
  :class:`kfloop.config.MonitoringConfig` for why: TFDV's equal-width histograms follow each side's min
  and max, so without clipping a single outlier makes the score noise).
"""

from __future__ import annotations

import os
import tempfile

from kfloop import config


def _names(spec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(model inputs, numeric model inputs)`` of a :class:`kfloop.spec.DatasetSpec`."""
    return spec.input_names, tuple(f.name for f in spec.features_of("numeric"))


def _scores(result: list[dict], spec) -> list[dict]:
    """The monitor's per-feature rows: threshold and mode from the spec (``off`` features left out).

    A ``record`` feature keeps its score and whether it crossed, marked ``ignored`` (never a trigger).
    """
    by_name = {s["feature"]: s for s in result}
    out = []
    for f in spec.model_features:
        if f.drift_mode == "off":
            continue
        s = by_name.get(f.name)
        value = None if s is None or s["score"] is None else round(float(s["score"]), 6)
        out.append(
            {
                "feature": f.name,
                "measure": s["metric"]
                if s
                else ("jensen_shannon_divergence" if f.kind == "numeric" else "l_infinity"),
                "value": value,
                "threshold": f.drift_threshold,
                "exceeded": bool(value is not None and value > f.drift_threshold),
                "ignored": f.drift_mode == "record",
                "mode": f.drift_mode,
            }
        )
    return out


def _drift_scores(stats, reference_stats, *, kind, cfg, schema, spec):
    from kfloop.tfdv import ops as V

    return V.drift_scores(stats, reference_stats, spec=spec, kind=kind, cfg=cfg, schema=schema)


def statistics(paths: list[str], *, spec, schema=None, beam_pipeline_args=()):
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
    from kfloop.tfdv.statistics import _read_batch

    options = V.stats_options(schema, spec=spec)
    with tempfile.TemporaryDirectory(prefix="kfloop-live-stats-") as tmp:
        out = os.path.join(tmp, "stats.pb")
        with beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args))) as p:
            _ = (
                p
                | "Paths" >> beam.Create(paths)
                | "Read" >> beam.FlatMap(_read_batch)
                | "Stats" >> tfdv.GenerateStatistics(options)
                | "Write" >> tfdv.WriteStatisticsToBinaryFile(out)
            )
        return split_statistics(tfdv.load_stats_binary(out), spec)


def split_statistics(stats, spec):
    """Splits the statistics of the staged batches into ``(raw, clipped)``.

    ``raw``: every feature but the clipped copies (validated against the schema). ``clipped``: the model
    features, numeric ones from their ``__clipped`` copy under their own name (the drift / skew side).
    """
    from components.monitor.stream import CLIPPED

    model, _ = _names(spec)

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
        if n in model and n not in copies:
            clipped.datasets[0].features.add().CopyFrom(f)
    return raw, clipped


def score_statistics(raw_stats, clipped_stats, reference, *, spec, cfg: config.MonitoringConfig, schema=None):
    """Anomalies of the live statistics and drift / skew against a stored reference.

    Args:
        raw_stats: Live statistics (model features + event time), unclipped: validated against the schema
            in the ``SERVING`` environment.
        clipped_stats: Live statistics of the model features clipped to ``reference.bounds``.
        reference: :class:`kfloop.reference.Reference` (clipped train / eval statistics).
        spec: The model's :class:`kfloop.spec.DatasetSpec`: per-feature drift thresholds and modes
            (``trigger``: may cause a retrain; ``record``: recorded, marked ``ignored``; ``off``: skipped).
        cfg: Skew thresholds (skew is reported, never a trigger).
        schema: The model's TFDV schema.

    Returns:
        ``(anomalies, drift, skew)``: ``anomalies`` as :func:`kfloop.tfdv.ops.summarize_anomalies` gives them;
        ``drift`` / ``skew`` one dict per checked model feature: ``{"feature", "measure", "value",
        "threshold", "exceeded", "ignored", "mode"}`` (``skew`` is empty without eval statistics).
    """
    from kfloop.tfdv import ops as V

    schema = schema if schema is not None else V.spec_schema(spec)
    vcfg = config.ValidationConfig(
        drift_linf=cfg.drift_linf, drift_jsd=cfg.drift_jsd, skew_linf=cfg.skew_linf, skew_jsd=cfg.skew_jsd
    )
    anomalies = V.summarize_anomalies(V.validate(raw_stats, schema, V.SERVING), vcfg)
    drift = _scores(
        _drift_scores(clipped_stats, reference.train_stats, kind="drift", cfg=vcfg, schema=schema, spec=spec),
        spec,
    )
    skew: list[dict] = []
    if reference.eval_stats is not None:
        found = _drift_scores(
            clipped_stats, reference.eval_stats, kind="skew", cfg=vcfg, schema=schema, spec=spec
        )
        skew = _scores(found, spec)
        thresholds = {s["feature"]: s["threshold"] for s in found}
        for s in skew:  # skew keeps the validation thresholds (reported, not a trigger)
            s["threshold"] = thresholds.get(s["feature"], s["threshold"])
            s["exceeded"] = bool(s["value"] is not None and s["value"] > s["threshold"])
    return anomalies, drift, skew
