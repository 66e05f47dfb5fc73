"""What an evaluation produces: metric names, slice rows, the :class:`Evaluation` result, and its error."""

from __future__ import annotations

import dataclasses
import math

#: Our metric name -> TFMA metric class. Order = order in tables and reports.
METRICS: dict[str, str] = {
    "example_count": "ExampleCount",
    "auc": "AUC",
    "pr_auc": "AUCPrecisionRecall",
    "binary_accuracy": "BinaryAccuracy",
    "precision": "Precision",
    "recall": "Recall",
    "calibration": "Calibration",
    "mean_label": "MeanLabel",
    "mean_prediction": "MeanPrediction",
}
_TFMA_NAME = {
    "example_count": "example_count",
    "auc": "auc",
    "pr_auc": "auc_precision_recall",
    "binary_accuracy": "binary_accuracy",
    "precision": "precision",
    "recall": "recall",
    "calibration": "calibration",
    "mean_label": "mean_label",
    "mean_prediction": "mean_prediction",
}
#: Per task, our metric names of the per-slice tables (TFMA's, except where :data:`OURS` says), in order.
#: Multiclass adds ``recall[<class>]`` per class of the spec after these.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": tuple(METRICS),
    "regression": ("example_count", "mae", "rmse", "r2", "mean_label", "mean_prediction", "calibration"),
    "multiclass": ("example_count", "accuracy", "log_loss", "macro_f1"),
}
#: Per task, the TFMA metric name (as ``load_metrics`` reports it) -> our name. Regression ``rmse`` is the
#: square root of TFMA's ``mean_squared_error``; multiclass ``accuracy`` and ``log_loss`` are Keras'
#: SparseCategorical metrics run by TFMA.
TFMA_NAMES: dict[str, dict[str, str]] = {
    "binary": {v: k for k, v in _TFMA_NAME.items()},
    "regression": {
        "example_count": "example_count",
        "mean_absolute_error": "mae",
        "mean_squared_error": "mse",
        "mean_label": "mean_label",
        "mean_prediction": "mean_prediction",
        "calibration": "calibration",
    },
    "multiclass": {
        "example_count": "example_count",
        "sparse_categorical_accuracy": "accuracy",
        "sparse_categorical_crossentropy": "log_loss",
    },
}
#: What our code computes rather than TFMA: regression ``r2`` (per slice, from the rows both models scored,
#: :func:`kfloop.metrics.task_metrics`); multiclass ``macro_f1`` and ``recall[<class>]`` (per slice, from
#: TFMA's arg-max confusion matrix ``MultiClassConfusionMatrixAtThresholds``).
OURS: dict[str, tuple[str, ...]] = {
    "binary": (),
    "regression": ("r2",),
    "multiclass": ("macro_f1", "recall[*]"),
}
#: Units of the metrics (for reports); a name not here is unitless. ``label`` is replaced by the label column.
UNITS = {
    "mae": "label units",
    "rmse": "label units",
    "mse": "squared label units",
    "mean_label": "label units",
    "mean_prediction": "label units",
    "log_loss": "nats",
    "accuracy": "fraction of rows",
    "binary_accuracy": "fraction of rows",
    "example_count": "rows",
}

#: Model names inside the TFMA run.
CHALLENGER, CHAMPION = "candidate", "baseline"
#: Name of the overall slice in reasons and tables.
OVERALL = "Overall"
#: Thresholds of the ROC curve (ConfusionMatrixPlot) and of the confusion matrix.
ROC_THRESHOLDS = 100
DECISION_THRESHOLD = 0.5


class EvaluationError(ValueError):
    """Bad input (eval data, model, champion, thresholds); the message names the field or path."""


@dataclasses.dataclass
class SliceRow:
    """Metrics of one slice for the challenger and (optionally) the champion."""

    slice: str
    feature: str | None
    value: str | None
    challenger: dict[str, float]
    champion: dict[str, float] | None
    task: str = "binary"

    @property
    def examples(self) -> int:
        return int(self.challenger.get("example_count", 0))

    @property
    def positives(self) -> int | None:
        """Binary: rows with label 1; None for the other tasks."""
        if self.task != "binary":
            return None
        return round(self.challenger.get("mean_label", 0.0) * self.examples)

    def diff(self, metric: str) -> float | None:
        if self.champion is None:
            return None
        return _sub(self.challenger.get(metric), self.champion.get(metric))


@dataclasses.dataclass
class Evaluation:
    """Result of :func:`evaluate`.

    Attributes:
        blessing: The blessing dict (the JSON written to ``blessing_path``).
        slices: Per-slice metrics, overall first.
        roc: Binary: the challenger's overall ROC curve: ``{"fpr": [...], "tpr": [...], "thresholds": [...]}``
            (empty lists for the other tasks).
        confusion_matrix: Binary: the challenger's overall confusion matrix at 0.5 ``[[tn, fp], [fn, tp]]``;
            multiclass: K x K, ``[actual][predicted]`` (arg-max) in class order; regression: ``[]``.
        champion_roc: The champion's ROC curve (None without a champion).
    """

    blessing: dict
    slices: list[SliceRow]
    roc: dict[str, list[float]]
    confusion_matrix: list[list[int]]
    champion_roc: dict[str, list[float]] | None = None

    @property
    def blessed(self) -> bool:
        return bool(self.blessing["blessed"])


def _sub(a, b):
    if a is None or b is None:
        return None
    return a - b


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 2):
        return str(int(v))
    return f"{v:.4f}"
