"""One TFMA run: challenger and champion on the same examples, the spec's slices, metrics and plots."""

from __future__ import annotations

import json
import math

from components.evaluate.result import (
    CHALLENGER,
    CHAMPION,
    DECISION_THRESHOLD,
    METRICS,
    OVERALL,
    ROC_THRESHOLDS,
    TFMA_NAMES,
    SliceRow,
)
from kfloop import contract
from kfloop.config import EvaluationConfig

#: Per task: the TFMA metric that carries TFMA's own thresholds (the cross-check) and its direction.
_THRESHOLDED = {
    "binary": "AUC",
    "regression": "MeanSquaredError",
    "multiclass": "SparseCategoricalCrossentropy",
}
#: Keras metrics TFMA runs for multiclass (module ``tf_keras.metrics``; TFMA's own CategoricalCrossEntropy
#: wants one-hot labels, our labels are class indices).
_KERAS = ("SparseCategoricalAccuracy", "SparseCategoricalCrossentropy")


def _metric_classes(task: str) -> list[str]:
    if task == "regression":
        return [
            "ExampleCount",
            "MeanAbsoluteError",
            "MeanSquaredError",
            "MeanLabel",
            "MeanPrediction",
            "Calibration",
        ]
    if task == "multiclass":
        return ["ExampleCount", *_KERAS]
    return list(METRICS.values())


def eval_config(
    config: EvaluationConfig,
    label: str,
    slices: list[tuple[str, ...]],
    with_champion: bool,
    *,
    task: str = "binary",
    output_key: str = contract.OUTPUT_KEY,
    value_bound: float | None = None,
    margin: float | None = None,
):
    """The TFMA EvalConfig: overall + the spec's slices (``slices``: feature-name tuples, a cross is
    several), the task's metrics, its plots, and TFMA's own overall thresholds (the cross-check).

    Per task (``task``; ``output_key``: the model's output, :func:`kfloop.contract.output_key`):

    * binary: :data:`METRICS`, ROC / confusion-matrix plots; thresholds on AUC: value ``auc_floor``,
      change ``-max_auc_regression`` (absolute).
    * regression: example count, MAE, MSE, mean label, mean prediction, calibration; thresholds on MSE:
      value ``value_bound`` (upper; the MSE at which R² = ``min_r2``), change ``margin`` (relative to the
      champion's MSE).
    * multiclass: example count, Keras' sparse categorical accuracy and cross-entropy (log loss), the
      arg-max confusion matrix; thresholds on the log loss: value ``value_bound`` (upper), change
      ``margin`` (nats, absolute).

    ``label``: the spec's label column. ``value_bound`` / ``margin`` None: binary takes ``config``'s,
    the other tasks set no such threshold.
    """
    import tensorflow_model_analysis as tfma

    def model_spec(name: str, baseline: bool):
        return tfma.ModelSpec(
            name=name,
            signature_name=contract.EXAMPLES_SIGNATURE,
            label_key=label,
            prediction_key=output_key,
            is_baseline=baseline,
        )

    specs = [model_spec(CHALLENGER, False)] + ([model_spec(CHAMPION, True)] if with_champion else [])
    if task == "binary":
        value_bound = config.auc_floor if value_bound is None else value_bound
        margin = config.max_auc_regression if margin is None else margin
    threshold = tfma.MetricThreshold()
    if value_bound is not None:
        bound = "lower_bound" if task == "binary" else "upper_bound"
        threshold.value_threshold.CopyFrom(tfma.GenericValueThreshold(**{bound: {"value": value_bound}}))
    if with_champion and margin is not None:
        if task == "binary":
            change = tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -margin}
            )
        else:
            how = "relative" if task == "regression" else "absolute"
            change = tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.LOWER_IS_BETTER, **{how: {"value": margin}}
            )
        threshold.change_threshold.CopyFrom(change)
    metrics = []
    for cls in _metric_classes(task):
        metric = tfma.MetricConfig(class_name=cls, module="tf_keras.metrics" if cls in _KERAS else "")
        if cls == _THRESHOLDED[task] and threshold.ListFields():
            # overall slice only: per-slice rules (min size, one class) are ours
            metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
        metrics.append(metric)
    if task == "binary":
        metrics.append(
            tfma.MetricConfig(
                class_name="ConfusionMatrixPlot", config=json.dumps({"num_thresholds": ROC_THRESHOLDS})
            )
        )
        metrics.append(
            tfma.MetricConfig(
                class_name="ConfusionMatrixAtThresholds",
                config=json.dumps({"thresholds": [DECISION_THRESHOLD]}),
            )
        )
    elif task == "multiclass":
        # threshold 0: every row's prediction is its arg-max class
        metrics.append(
            tfma.MetricConfig(
                class_name="MultiClassConfusionMatrixAtThresholds", config=json.dumps({"thresholds": [0.0]})
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


def confusion_of(matrix_proto, k: int) -> list[list[int]]:
    """A TFMA ``MultiClassConfusionMatrixAtThresholds`` matrix as K x K counts ``[actual][predicted]``.

    Rows TFMA left without a predicted class (``-1``, no class above the threshold) count as no column:
    they still count in the actual class's total for recall (:func:`class_metrics` takes the totals).
    """
    out = [[0] * (k + 1) for _ in range(k)]
    for e in matrix_proto.entries:
        a, p = int(e.actual_class_id), int(e.predicted_class_id)
        if 0 <= a < k:
            out[a][p if 0 <= p < k else k] += round(e.num_weighted_examples)
    return out


def class_metrics(matrix: list[list[int]], classes) -> dict:
    """Per-class recall and macro-F1 from arg-max confusion counts (as :func:`kfloop.metrics.task_metrics`:
    ``recall[<class>]`` None for a class without rows; a class absent from labels and predictions does not
    enter the macro average). ``matrix``: :func:`confusion_of` (K rows of K + 1 columns, the last: no class)."""
    k = len(matrix)
    out: dict = {}
    f1s = []
    for c in range(k):
        tp = matrix[c][c]
        fn = sum(matrix[c]) - tp
        fp = sum(matrix[a][c] for a in range(k)) - tp
        out[f"recall[{classes[c]}]"] = tp / (tp + fn) if tp + fn else None
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    out["macro_f1"] = sum(f1s) / len(f1s) if f1s else None
    return out


def run_tfma(
    examples_path: str,
    model_dir: str,
    champion_dir: str | None,
    config: EvaluationConfig,
    output_dir: str,
    *,
    label: str,
    slices: list[tuple[str, ...]],
    task: str = "binary",
    output_key: str = contract.OUTPUT_KEY,
    classes: tuple = (),
    value_bound: float | None = None,
    margin: float | None = None,
):
    """Runs TFMA once over ``examples_path`` (TFRecord of tf.Examples) for challenger and champion.

    ``label`` and ``slices``: the spec's label column and evaluation slices; ``task``, ``output_key``,
    ``value_bound``, ``margin``: see :func:`eval_config`; ``classes``: multiclass, the spec's classes.

    Per slice the metrics are TFMA's under our names (:data:`TFMA_NAMES`), plus regression ``rmse``
    (the square root of TFMA's MSE) and multiclass ``macro_f1`` / ``recall[<class>]`` (:func:`class_metrics`
    over TFMA's arg-max confusion matrix of the slice).

    Returns:
        ``(slices, rocs, confusion, tfma_validation_ok)`` where ``rocs`` maps model name -> ROC (binary) and
        ``confusion`` is the challenger's overall confusion matrix (binary ``[[tn, fp], [fn, tp]]`` at 0.5,
        multiclass K x K ``[actual][predicted]``, regression ``[]``).
    """
    import tensorflow_model_analysis as tfma

    cfg = eval_config(
        config,
        label,
        slices,
        champion_dir is not None,
        task=task,
        output_key=output_key,
        value_bound=value_bound,
        margin=margin,
    )
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

    names_of = TFMA_NAMES[task]
    k = len(classes)
    by_slice: dict[str, SliceRow] = {}
    confusion: list = [[0, 0], [0, 0]] if task == "binary" else []
    for mfs in tfma.load_metrics(output_dir):
        name, col, val = _slice_name(mfs.slice_key)
        row = by_slice.setdefault(name, SliceRow(name, col, val, {}, {} if champion_dir else None, task))
        for kv in mfs.metric_keys_and_values:
            if kv.key.is_diff:
                continue
            # With a single model TFMA leaves model_name empty.
            target = row.challenger if kv.key.model_name in (CHALLENGER, "") else row.champion
            if target is None:
                continue
            if task == "multiclass" and kv.value.HasField("multi_class_confusion_matrix_at_thresholds"):
                matrix = confusion_of(kv.value.multi_class_confusion_matrix_at_thresholds.matrices[0], k)
                target.update(class_metrics(matrix, classes))
                if name == OVERALL and target is row.challenger:
                    confusion = [r[:k] for r in matrix]
                continue
            if task == "binary" and kv.key.name == "confusion_matrix_at_thresholds" and name == OVERALL:
                if target is row.challenger:
                    m = kv.value.confusion_matrix_at_thresholds.matrices[0]
                    confusion = [
                        [int(m.true_negatives), int(m.false_positives)],
                        [int(m.false_negatives), int(m.true_positives)],
                    ]
                continue
            if not kv.value.HasField("double_value"):
                continue
            ours = names_of.get(kv.key.name)
            if ours is not None:
                target[ours] = float(kv.value.double_value.value)
    if task == "regression":
        for row in by_slice.values():
            for metrics in (row.challenger, row.champion or {}):
                if metrics.get("mse") is not None:
                    metrics["rmse"] = math.sqrt(max(metrics["mse"], 0.0))

    rocs: dict[str, dict] = {}
    if task == "binary":
        for pfs in tfma.load_plots(output_dir):
            if _slice_name(pfs.slice_key)[0] != OVERALL:
                continue
            for kv in pfs.plot_keys_and_values:
                if kv.value.HasField("confusion_matrix_at_thresholds"):
                    rocs[kv.key.model_name or CHALLENGER] = _roc(
                        kv.value.confusion_matrix_at_thresholds.matrices
                    )
        for row in by_slice.values():  # TFMA reports AUC 0 on a single-class slice; it is undefined
            if row.positives in (0, row.examples):
                for metrics in (row.challenger, row.champion or {}):
                    metrics.update({"auc": math.nan, "pr_auc": math.nan})
    validation_ok = bool(tfma.load_validation_result(output_dir).validation_ok)

    names = [", ".join(keys) for keys in slices]

    def order(r: SliceRow):
        if r.slice == OVERALL:
            return (0, "", 0, "")
        rank = names.index(r.feature) if r.feature in names else 99
        num = int(r.value) if r.value and r.value.lstrip("-").isdigit() else 0
        return (1, rank, num, r.value or "")

    return sorted(by_slice.values(), key=order), rocs, confusion, validation_ok
