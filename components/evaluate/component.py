"""KFP wrapper of :func:`components.evaluate.evaluate.evaluate`."""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components._kfp import component

# Defaults are literals (KFP embeds the function's source, so they cannot name module globals);
# tests/test_evaluate_pipeline.py checks they equal kfloop.config.EvaluationConfig's.


@component
def evaluate_op(
    eval_data: Input[Dataset],
    model: Input[Model],
    blessing: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    champion_uri: str = "",
    auc_floor: float = 0.75,
    max_auc_regression: float = 0.01,
    max_slice_auc_regression: float = 0.05,
    min_slice_examples: int = 50,
    min_r2: float = 0.05,
    max_log_loss_ratio: float = 0.95,
    max_slice_rmse_increase: float = 0.10,
    max_slice_accuracy_drop: float = 0.05,
    spec: str = "",
) -> NamedTuple("EvaluateOutputs", blessed=bool):
    """Runs TFMA on the eval split for the challenger (and the champion, same run) and writes a blessing.

    Args:
        eval_data: Evaluation split (Dataset CSV) with the spec's label column.
        model: The challenger model directory (a training output, or a store version's directory).
        champion_uri: The champion's SavedModel directory (e.g. the model store's ``model_uri`` of the
            ``champion`` alias); "" = no champion, only value thresholds apply.
        auc_floor: Binary: minimum overall AUC.
        max_auc_regression: Binary: largest overall AUC loss allowed against the champion.
        max_slice_auc_regression: Binary: largest AUC loss allowed in a judged slice.
        min_slice_examples: Smaller slices are reported, not judged.
        min_r2: Regression: minimum overall R².
        max_log_loss_ratio: Multiclass: largest log loss as a multiple of the class prior's.
        max_slice_rmse_increase: Regression: largest relative RMSE increase in a judged slice.
        max_slice_accuracy_drop: Multiclass: largest accuracy loss in a judged slice.
        spec: The dataset spec (YAML text or a URI): label and slices (``spec.slices``). "" = the spec
            stored in the challenger's model directory.

    Returns:
        blessing: The blessing JSON (always written): ``blessed``, ``task``, ``eval_metrics`` plus reasons
            naming metric, slice, threshold, challenger and champion values.
        metrics: Challenger's overall metrics, the champion's (``champion_*``), the paired change
            (``auc_change`` / ``mse_change`` / ``log_loss_change``, > 0 = challenger better) and ``blessed``.
        classification: Binary: the challenger's ROC curve and confusion matrix at 0.5; multiclass: its
            arg-max confusion matrix; regression: empty.
        report: Self-contained HTML comparison, champion vs challenger per slice.
        blessed: The verdict as a parameter (for ``dsl.If`` on a cluster).
    """
    import dataclasses
    import json
    from collections import namedtuple
    from pathlib import Path

    from components.evaluate.evaluate import evaluate
    from kfloop.config import EvaluationConfig

    config = dataclasses.replace(
        EvaluationConfig(),
        auc_floor=auc_floor,
        max_auc_regression=max_auc_regression,
        max_slice_auc_regression=max_slice_auc_regression,
        min_slice_examples=min_slice_examples,
        min_r2=min_r2,
        max_log_loss_ratio=max_log_loss_ratio,
        max_slice_rmse_increase=max_slice_rmse_increase,
        max_slice_accuracy_drop=max_slice_accuracy_drop,
    )
    for art in (blessing, report):
        Path(art.path).parent.mkdir(parents=True, exist_ok=True)
    result = evaluate(
        eval_data.path,
        model.path,
        champion_uri,
        config=config,
        spec=spec or None,
        blessing_path=blessing.path,
        report_path=report.path,
    )
    b = result.blessing
    for name, value in b["metrics"].items():
        if value is not None:
            metrics.log_metric(name, value)
    for name, value in (b["champion_metrics"] or {}).items():
        if value is not None:
            metrics.log_metric(f"champion_{name}", value)
    task = b["task"]
    paired = (b.get("paired") or {}).get("comparison") or {}
    if task == "binary" and b["champion_metrics"] and b["metrics"].get("auc") is not None:
        metrics.log_metric("auc_change", b["metrics"]["auc"] - (b["champion_metrics"].get("auc") or 0.0))
    elif paired.get("diff") is not None:
        metrics.log_metric(f"{paired['metric']}_change", round(paired["diff"], 6))
    for key in ("low", "high"):  # the paired interval of the change on the same eval rows
        if paired.get(key) is not None:
            metrics.log_metric(f"{paired['metric']}_change_{key}", round(paired[key], 6))
    metrics.log_metric("blessed", 1.0 if result.blessed else 0.0)

    if task == "binary":
        if result.roc["fpr"]:
            classification.log_roc_curve(result.roc["fpr"], result.roc["tpr"], result.roc["thresholds"])
        classification.log_confusion_matrix(["0", "1"], result.confusion_matrix)
    elif task == "multiclass" and result.confusion_matrix:
        classification.log_confusion_matrix([str(c) for c in b["classes"]], result.confusion_matrix)

    failed = [r for r in b["reasons"] if not r["passed"]]
    blessing.metadata.update(
        {
            "blessed": result.blessed,
            "task": b["task"],
            "champion_version": b["champion_version"] or "",
            "failed_checks": len(failed),
            "summary": json.dumps([r["message"] for r in failed][:5]) if failed else "all checks passed",
        }
    )
    report.metadata["blessed"] = result.blessed
    return namedtuple("EvaluateOutputs", ["blessed"])(result.blessed)
