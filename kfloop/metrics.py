"""The value metrics of one model on labelled rows, per task (numpy only).

Evaluate's value floors, the monitor's live metrics and the reports read the same numbers from here:

* binary: ``auc`` (:func:`kfloop.paired.auc`), ``log_loss``, ``accuracy`` (probability >= 0.5 is class 1),
  ``mean_label``, ``mean_prediction``, ``n``;
* regression: ``mae``, ``rmse`` (label units), ``r2``, ``mean_label``, ``mean_prediction``, ``n``;
* multiclass: ``accuracy`` (arg-max class), ``macro_f1``, ``log_loss`` (nats), ``recall[<class>]`` per
  class, ``n``.

Values that are undefined on the rows given (AUC with one class, R² of a constant label, the recall of a
class with no rows) are None. Log losses clip probabilities to at least :data:`kfloop.paired.LOG_LOSS_EPS`
(and binary ones to at most 1 - that), as :func:`kfloop.paired.compare` does.

Only numpy, the standard library and :mod:`kfloop.paired` (numpy + :mod:`kfloop.config`) are imported.
"""

from __future__ import annotations

import numpy as np

from kfloop.paired import LOG_LOSS_EPS, SUM_TOLERANCE, auc

TASKS = ("binary", "regression", "multiclass")


class MetricsError(ValueError):
    """Bad metric input (task, shapes, labels, non-finite outputs); the message names it."""


def _numbers(x, what: str) -> np.ndarray:
    try:
        out = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise MetricsError(f"{what} must be numbers") from None
    if not np.isfinite(out).all():
        raise MetricsError(f"{what} must be finite")
    return out


def _indices(y: np.ndarray, k: int, what: str) -> np.ndarray:
    bad = (y != np.round(y)) | (y < 0) | (y > k - 1)
    if bad.any():
        raise MetricsError(f"{what} must be class indices in 0..{k - 1}, got {y[bad][0]!r}")
    return y.astype(np.int64)


def task_metrics(task, labels, outputs, classes=()) -> dict:
    """The task's metrics of one model's ``outputs`` on rows with ``labels``.

    Args:
        task: ``binary``, ``regression`` or ``multiclass`` (a string or ``kfloop.spec.Task``).
        labels: Binary 0/1, regression floats, multiclass class indices 0..K-1; 1-d.
        outputs: Binary probabilities [n], regression predictions [n], multiclass probabilities [n, K].
        classes: Multiclass: the class values in index order (``spec.classes``), naming the
            ``recall[<class>]`` keys; ``()``: the indices name them (``recall[0]``...).

    Returns:
        A JSON-ready dict of floats (None where undefined) and ``n`` (rows, int); keys per task as in the
        module docstring.

    Raises:
        MetricsError: an unknown task, mismatched shapes, labels outside the task's values, non-finite
            outputs, ``classes`` of another length than K; the message names which.
    """
    name = getattr(task, "value", task)
    if name not in TASKS:
        raise MetricsError(f"metrics task {task!r}: use one of {', '.join(TASKS)}")
    y = _numbers(labels, "labels")
    p = _numbers(outputs, "outputs")
    if y.ndim != 1:
        raise MetricsError(f"labels {y.shape} must be 1-d")
    if name == "multiclass":
        return _multiclass(y, p, tuple(classes))
    if p.shape != y.shape:
        raise MetricsError(f"labels {y.shape} and outputs {p.shape} must be 1-d of one length ({name})")
    if name == "binary":
        return _binary(y, p)
    return _regression(y, p)


def _none_if_empty(x: np.ndarray):
    return float(x.mean()) if x.size else None


def _binary(y: np.ndarray, p: np.ndarray) -> dict:
    if not np.isin(y, (0, 1)).all():
        raise MetricsError("labels must be 0 or 1 (binary)")
    if ((p < 0) | (p > 1)).any():
        raise MetricsError("outputs must be probabilities in [0, 1] (binary)")
    q = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    ll = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return {
        "auc": auc(y, p) if y.size else None,
        "log_loss": _none_if_empty(ll),
        "accuracy": _none_if_empty(((p >= 0.5) == (y == 1)).astype(np.float64)),
        "mean_label": _none_if_empty(y),
        "mean_prediction": _none_if_empty(p),
        "n": int(y.size),
    }


def _regression(y: np.ndarray, p: np.ndarray) -> dict:
    e = p - y
    mse = _none_if_empty(e**2)
    sst = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    return {
        "mae": _none_if_empty(np.abs(e)),
        "rmse": None if mse is None else float(np.sqrt(mse)),
        "r2": 1.0 - float((e**2).sum()) / sst if sst > 0 else None,
        "mean_label": _none_if_empty(y),
        "mean_prediction": _none_if_empty(p),
        "n": int(y.size),
    }


def _multiclass(y: np.ndarray, p: np.ndarray, classes: tuple) -> dict:
    if p.ndim != 2 or p.shape[0] != y.size or p.shape[1] < 2:
        raise MetricsError(
            f"outputs {p.shape} must be [n, K] with n = {y.size} labels and K >= 2 (multiclass)"
        )
    k = p.shape[1]
    if classes and len(classes) != k:
        raise MetricsError(f"classes has {len(classes)} values, the outputs {k} columns")
    if ((p < 0) | (p > 1)).any() or (y.size and np.abs(p.sum(axis=1) - 1.0).max() > SUM_TOLERANCE):
        raise MetricsError("outputs must be probabilities in [0, 1] whose rows sum to 1 (multiclass)")
    yi = _indices(y, k, "labels")
    pred = np.argmax(p, axis=1) if y.size else np.zeros(0, dtype=np.int64)
    chosen = p[np.arange(y.size), yi] if y.size else np.zeros(0)
    out = {
        "accuracy": _none_if_empty((pred == yi).astype(np.float64)),
        "macro_f1": None,
        "log_loss": _none_if_empty(-np.log(np.clip(chosen, LOG_LOSS_EPS, 1.0))),
    }
    f1s = []
    names = classes or tuple(range(k))
    for c in range(k):
        tp = int(((pred == c) & (yi == c)).sum())
        fp = int(((pred == c) & (yi != c)).sum())
        fn = int(((pred != c) & (yi == c)).sum())
        out[f"recall[{names[c]}]"] = tp / (tp + fn) if tp + fn else None
        if tp + fp + fn:  # a class absent from labels and predictions does not enter the macro average
            f1s.append(2 * tp / (2 * tp + fp + fn))
    out["macro_f1"] = float(np.mean(f1s)) if f1s else None
    out["n"] = int(y.size)
    return out


def prior_log_loss(class_counts, labels) -> float | None:
    """Log loss (nats) of predicting the training class frequencies for every row with ``labels``.

    The multiclass value floor (``EvaluationConfig.max_log_loss_ratio``) compares a model with it: a
    model that does no better than the class prior has learnt nothing from the features.

    Args:
        class_counts: Per class index 0..K-1, the training split's label counts (or frequencies: only
            the proportions matter). A class with count 0 gets probability ``LOG_LOSS_EPS``.
        labels: Class indices 0..K-1 of the rows scored (the eval split).

    Returns:
        The mean of ``-ln f[label]``; None without rows.

    Raises:
        MetricsError: counts not finite and >= 0 with a positive sum, or labels outside 0..K-1.
    """
    f = _numbers(class_counts, "class_counts")
    if f.ndim != 1 or f.size < 2 or (f < 0).any() or f.sum() <= 0:
        raise MetricsError(f"class_counts must be >= 2 counts >= 0 with a positive sum, got {f.tolist()!r}")
    y = _numbers(labels, "labels")
    if y.ndim != 1:
        raise MetricsError(f"labels {y.shape} must be 1-d")
    yi = _indices(y, f.size, "labels")
    if yi.size == 0:
        return None
    q = np.clip(f / f.sum(), LOG_LOSS_EPS, 1.0)
    return float(-np.log(q[yi]).mean())
