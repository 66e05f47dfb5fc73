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
    spec: str = "",
) -> NamedTuple("EvaluateOutputs", blessed=bool):
    """Runs TFMA on the eval split for the challenger (and the champion, same run) and writes a blessing.

    Args:
        eval_data: Evaluation split (Dataset CSV) with the spec's label column.
        model: The challenger model directory (a training output, or a store version's directory).
        champion_uri: The champion's SavedModel directory (e.g. the model store's ``model_uri`` of the
            ``champion`` alias); "" = no champion, only value thresholds apply.
        auc_floor: Minimum overall AUC.
        max_auc_regression: Largest overall AUC loss allowed against the champion.
        max_slice_auc_regression: Largest AUC loss allowed in a judged slice.
        min_slice_examples: Smaller slices are reported, not judged.
        spec: The dataset spec (YAML text or a URI): label and slices (``spec.slices``). "" = the spec
            stored in the challenger's model directory.

    Returns:
        blessing: The blessing JSON (always written): ``blessed`` plus reasons naming metric, slice,
            threshold, challenger and champion values.
        metrics: Challenger's overall metrics, the champion's (``champion_*``), ``auc_change`` and
            ``blessed`` (1/0).
        classification: Challenger's overall ROC curve and confusion matrix at 0.5.
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
    if b["champion_metrics"] and b["metrics"].get("auc") is not None:
        metrics.log_metric("auc_change", b["metrics"]["auc"] - (b["champion_metrics"].get("auc") or 0.0))
    paired = (b.get("paired") or {}).get("comparison") or {}
    for key in ("low", "high"):  # the paired interval of the AUC change on the same eval rows
        if paired.get(key) is not None:
            metrics.log_metric(f"auc_change_{key}", round(paired[key], 6))
    metrics.log_metric("blessed", 1.0 if result.blessed else 0.0)

    if result.roc["fpr"]:
        classification.log_roc_curve(result.roc["fpr"], result.roc["tpr"], result.roc["thresholds"])
    classification.log_confusion_matrix(["0", "1"], result.confusion_matrix)

    failed = [r for r in b["reasons"] if not r["passed"]]
    blessing.metadata.update(
        {
            "blessed": result.blessed,
            "champion_version": b["champion_version"] or "",
            "failed_checks": len(failed),
            "summary": json.dumps([r["message"] for r in failed][:5]) if failed else "all checks passed",
        }
    )
    report.metadata["blessed"] = result.blessed
    return namedtuple("EvaluateOutputs", ["blessed"])(result.blessed)
