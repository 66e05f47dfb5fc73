"""One TFMA run: challenger and champion on the same examples, the spec's slices, metrics and plots."""

from __future__ import annotations

import json
import math

from components.evaluate.result import (
    _TFMA_NAME,
    CHALLENGER,
    CHAMPION,
    DECISION_THRESHOLD,
    METRICS,
    OVERALL,
    ROC_THRESHOLDS,
    SliceRow,
)
from kfloop import contract
from kfloop.config import EvaluationConfig


def eval_config(config: EvaluationConfig, label: str, slices: list[tuple[str, ...]], with_champion: bool):
    """The TFMA EvalConfig: overall + the spec's slices (``slices``: feature-name tuples, a cross is
    several), the metrics of :data:`METRICS`, ROC / confusion-matrix plots, and TFMA's own overall AUC
    thresholds (the cross-check). ``label``: the spec's label column."""
    import tensorflow_model_analysis as tfma

    specs = [
        tfma.ModelSpec(
            name=CHALLENGER,
            signature_name=contract.EXAMPLES_SIGNATURE,
            label_key=label,
            prediction_key=contract.OUTPUT_KEY,
        )
    ]
    if with_champion:
        specs.append(
            tfma.ModelSpec(
                name=CHAMPION,
                signature_name=contract.EXAMPLES_SIGNATURE,
                label_key=label,
                prediction_key=contract.OUTPUT_KEY,
                is_baseline=True,
            )
        )
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.auc_floor})
    )
    if with_champion:
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -config.max_auc_regression},
            )
        )
    metrics = []
    for name, cls in METRICS.items():
        metric = tfma.MetricConfig(class_name=cls)
        if name == "auc":  # overall slice only: per-slice rules (min size, one class) are ours
            metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
        metrics.append(metric)
    metrics.append(
        tfma.MetricConfig(
            class_name="ConfusionMatrixPlot", config=json.dumps({"num_thresholds": ROC_THRESHOLDS})
        )
    )
    metrics.append(
        tfma.MetricConfig(
            class_name="ConfusionMatrixAtThresholds", config=json.dumps({"thresholds": [DECISION_THRESHOLD]})
        )
    )
    metrics_spec = tfma.MetricsSpec(metrics=metrics)
    slicing = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=list(keys)) for keys in slices]
    return tfma.EvalConfig(model_specs=specs, metrics_specs=[metrics_spec], slicing_specs=slicing)


def _slice_name(slice_key) -> tuple[str, str | None, str | None]:
    keys = list(slice_key.single_slice_keys)
    if not keys:
        return OVERALL, None, None
    parts, cols, vals = [], [], []
    for k in keys:
        which = k.WhichOneof("kind")
        v = getattr(k, which) if which else ""
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        parts.append(f"{k.column}={v}")
        cols.append(k.column)
        vals.append(str(v))
    return ", ".join(parts), ", ".join(cols), ", ".join(vals)


def _roc(matrices) -> dict[str, list[float]]:
    fpr, tpr, thr = [], [], []
    for m in matrices:
        tp, fp, tn, fn = m.true_positives, m.false_positives, m.true_negatives, m.false_negatives
        fpr.append(fp / (fp + tn) if fp + tn else 0.0)
        tpr.append(tp / (tp + fn) if tp + fn else 0.0)
        thr.append(float(max(m.threshold, 0.0)))
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr}


def run_tfma(
    examples_path: str,
    model_dir: str,
    champion_dir: str | None,
    config: EvaluationConfig,
    output_dir: str,
    *,
    label: str,
    slices: list[tuple[str, ...]],
):
    """Runs TFMA once over ``examples_path`` (TFRecord of tf.Examples) for challenger and champion.

    ``label`` and ``slices``: the spec's label column and evaluation slices (see :func:`eval_config`).

    Returns:
        ``(slices, rocs, confusion, tfma_validation_ok)`` where ``rocs`` maps model name -> ROC and
        ``confusion`` is the challenger's overall ``[[tn, fp], [fn, tp]]`` at 0.5.
    """
    import tensorflow_model_analysis as tfma

    cfg = eval_config(config, label, slices, champion_dir is not None)
    models = [
        tfma.default_eval_shared_model(
            eval_saved_model_path=model_dir, eval_config=cfg, model_name=CHALLENGER
        )
    ]
    if champion_dir is not None:
        models.append(
            tfma.default_eval_shared_model(
                eval_saved_model_path=champion_dir, eval_config=cfg, model_name=CHAMPION
            )
        )
    tfma.run_model_analysis(
        eval_shared_model=models if len(models) > 1 else models[0],
        eval_config=cfg,
        data_location=examples_path,
        output_path=output_dir,
    )

    by_slice: dict[str, SliceRow] = {}
    for mfs in tfma.load_metrics(output_dir):
        name, col, val = _slice_name(mfs.slice_key)
        row = by_slice.setdefault(name, SliceRow(name, col, val, {}, {} if champion_dir else None))
        for kv in mfs.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            ours = {v: k for k, v in _TFMA_NAME.items()}.get(kv.key.name)
            if ours is None:
                continue
            # With a single model TFMA leaves model_name empty.
            target = row.challenger if kv.key.model_name in (CHALLENGER, "") else row.champion
            if target is not None:
                target[ours] = float(kv.value.double_value.value)

    rocs: dict[str, dict] = {}
    confusion = [[0, 0], [0, 0]]
    for pfs in tfma.load_plots(output_dir):
        if _slice_name(pfs.slice_key)[0] != OVERALL:
            continue
        for kv in pfs.plot_keys_and_values:
            if kv.value.HasField("confusion_matrix_at_thresholds"):
                rocs[kv.key.model_name or CHALLENGER] = _roc(kv.value.confusion_matrix_at_thresholds.matrices)
    for mfs in tfma.load_metrics(output_dir):
        if _slice_name(mfs.slice_key)[0] != OVERALL:
            continue
        for kv in mfs.metric_keys_and_values:
            if (
                kv.key.name == "confusion_matrix_at_thresholds"
                and kv.key.model_name in (CHALLENGER, "")
                and not kv.key.is_diff
            ):
                m = kv.value.confusion_matrix_at_thresholds.matrices[0]
                confusion = [
                    [int(m.true_negatives), int(m.false_positives)],
                    [int(m.false_negatives), int(m.true_positives)],
                ]
    validation_ok = bool(tfma.load_validation_result(output_dir).validation_ok)
    for row in by_slice.values():  # TFMA reports AUC 0 on a single-class slice; it is undefined
        if row.positives in (0, row.examples):
            for metrics in (row.challenger, row.champion or {}):
                metrics.update({"auc": math.nan, "pr_auc": math.nan})

    names = [", ".join(keys) for keys in slices]

    def order(r: SliceRow):
        if r.slice == OVERALL:
            return (0, "", 0, "")
        rank = names.index(r.feature) if r.feature in names else 99
        num = int(r.value) if r.value and r.value.lstrip("-").isdigit() else 0
        return (1, rank, num, r.value or "")

    return sorted(by_slice.values(), key=order), rocs, confusion, validation_ok
