"""Live data vs the champion's data with the validation functions (:mod:`components.validate.tfdv_ops`).

* Anomalies: TFDV statistics of the live features, validated against the training schema in the
  ``SERVING`` environment (the label is absent from serving data).
* Drift (live vs the champion's training data) and skew (live vs its eval data): every feature's TFDV
  score. Numeric features are clipped to the reference's quantiles first (see
  :class:`kfloop.config.MonitoringConfig` for why: TFDV's equal-width histograms follow each side's min
  and max, so without clipping a single outlier makes the score noise).
"""

from __future__ import annotations

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


def score(live, train, evals=None, *, cfg: config.MonitoringConfig, schema_path: str | None = None):
    """Anomalies, drift and skew of a live frame against the champion's train (and eval) frames.

    Returns:
        ``(anomalies, drift, skew)``: ``anomalies`` as :func:`tfdv_ops.summarize_anomalies` gives them;
        ``drift`` / ``skew`` one dict per model feature: ``{"feature", "measure", "value", "threshold",
        "exceeded", "ignored"}`` (``skew`` is empty without ``evals``).
    """
    from components.validate import tfdv_ops as V

    schema = V.load_schema(schema_path)
    vcfg = config.ValidationConfig(
        drift_linf=cfg.drift_linf, drift_jsd=cfg.drift_jsd, skew_linf=cfg.skew_linf, skew_jsd=cfg.skew_jsd
    )
    served = [c for c in F.DATASET_COLUMNS if c != F.LABEL.name and c in live.columns]
    live_stats = V.compute_statistics(live[served], schema=schema)
    anomalies = V.summarize_anomalies(V.validate(live_stats, schema, V.SERVING), vcfg)
    bounds = clip_bounds(train, cfg.clip_quantile)
    live_clipped = V.compute_statistics(clip_numeric(live, bounds), schema=schema)
    train_clipped = V.compute_statistics(clip_numeric(train, bounds), schema=schema)
    drift = _scores(V.drift_scores(live_clipped, train_clipped, kind="drift", cfg=vcfg, schema=schema), cfg)
    skew: list[dict] = []
    if evals is not None and len(evals):
        eval_clipped = V.compute_statistics(clip_numeric(evals, bounds), schema=schema)
        skew = _scores(V.drift_scores(live_clipped, eval_clipped, kind="skew", cfg=vcfg, schema=schema), cfg)
    return anomalies, drift, skew
