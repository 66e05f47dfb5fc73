"""Per-task value metrics on small cases computed by hand."""

import math

import numpy as np
import pytest

from kfloop import metrics


def test_binary_by_hand():
    m = metrics.task_metrics("binary", [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8])
    # Positive/negative pairs: 0.4>0.1, 0.4<0.6, 0.8>0.1, 0.8>0.6 -> 3 of 4.
    assert m["auc"] == pytest.approx(0.75)
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.8)) / 4
    )
    assert m["accuracy"] == pytest.approx(0.5)  # predicted 0,1,0,1 at 0.5
    assert (m["mean_label"], m["mean_prediction"], m["n"]) == (0.5, pytest.approx(0.475), 4)
    one = metrics.task_metrics("binary", [1, 1], [0.5, 1.0])
    assert one["auc"] is None and one["accuracy"] == 1.0
    assert one["log_loss"] == pytest.approx(math.log(2) / 2)  # p = 1 clipped: ~0 loss, not nan


def test_regression_by_hand():
    m = metrics.task_metrics("regression", [1, 2, 3, 4], [1, 3, 2, 5])  # errors 0, 1, -1, 1
    assert m["mae"] == pytest.approx(0.75)
    assert m["rmse"] == pytest.approx(math.sqrt(0.75))
    assert m["r2"] == pytest.approx(1 - 3 / 5)  # SSE 3, SST 5 around the mean 2.5
    assert (m["mean_label"], m["mean_prediction"], m["n"]) == (2.5, 2.75, 4)
    assert metrics.task_metrics("regression", [2, 2], [1, 3])["r2"] is None  # constant label
    empty = metrics.task_metrics("regression", [], [])
    assert empty["n"] == 0 and empty["mae"] is None and empty["rmse"] is None


P = [
    [0.7, 0.2, 0.1],  # label 0, predicted 0
    [0.2, 0.5, 0.3],  # label 0, predicted 1
    [0.1, 0.8, 0.1],  # label 1, predicted 1
    [0.3, 0.3, 0.4],  # label 2, predicted 2
    [0.5, 0.25, 0.25],  # label 2, predicted 0
    [0.1, 0.1, 0.8],  # label 2, predicted 2
]
Y = [0, 0, 1, 2, 2, 2]


def test_multiclass_by_hand():
    m = metrics.task_metrics("multiclass", Y, P, classes=("Fair", "Good", "Ideal"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    # F1 = 2TP / (2TP + FP + FN): Fair 2/4, Good 2/3, Ideal 4/5.
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    ll = -sum(math.log(x) for x in (0.7, 0.2, 0.8, 0.4, 0.25, 0.8)) / 6
    assert m["log_loss"] == pytest.approx(ll)
    assert (m["recall[Fair]"], m["recall[Good]"], m["recall[Ideal]"]) == (0.5, 1.0, pytest.approx(2 / 3))
    assert m["n"] == 6
    assert set(m) == {
        "accuracy",
        "macro_f1",
        "log_loss",
        "recall[Fair]",
        "recall[Good]",
        "recall[Ideal]",
        "n",
    }
    by_index = metrics.task_metrics("multiclass", Y, P)
    assert by_index["recall[0]"] == 0.5 and "recall[Fair]" not in by_index


def test_multiclass_ties_absent_classes_and_clipping():
    # Ties go to the first class; class 2 is in neither labels nor predictions: recall None, not in macro-F1.
    m = metrics.task_metrics("multiclass", [0, 1], [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    assert m["accuracy"] == 1.0 and m["recall[2]"] is None and m["macro_f1"] == 1.0
    m = metrics.task_metrics("multiclass", [2], [[0.5, 0.5, 0.0]])
    assert m["log_loss"] == pytest.approx(-math.log(1e-15))  # p[label] = 0 clipped to 1e-15


def test_prior_log_loss():
    # Training counts 2:1:1 -> frequencies 0.5, 0.25, 0.25.
    assert metrics.prior_log_loss([2, 1, 1], [0, 1, 2, 2]) == pytest.approx(
        (math.log(2) + 3 * math.log(4)) / 4
    )
    assert metrics.prior_log_loss(np.array([0.5, 0.25, 0.25]), [0]) == pytest.approx(math.log(2))
    assert metrics.prior_log_loss([1, 1, 1], []) is None
    # A model is judged against it: the hand case above beats this prior of the same rows.
    prior = metrics.prior_log_loss([2, 1, 3], Y)
    assert metrics.task_metrics("multiclass", Y, P)["log_loss"] < 0.95 * prior


def test_bad_input_is_named():
    with pytest.raises(metrics.MetricsError, match="task 'ordinal'"):
        metrics.task_metrics("ordinal", [1], [1])
    with pytest.raises(metrics.MetricsError, match="0 or 1"):
        metrics.task_metrics("binary", [0, 2], [0.1, 0.2])
    with pytest.raises(metrics.MetricsError, match="one length"):
        metrics.task_metrics("regression", [1, 2], [1])
    with pytest.raises(metrics.MetricsError, match="outputs must be finite"):
        metrics.task_metrics("regression", [1, 2], [1, np.nan])
    with pytest.raises(metrics.MetricsError, match=r"\[n, K\]"):
        metrics.task_metrics("multiclass", [0, 1], [0.2, 0.8])
    with pytest.raises(metrics.MetricsError, match="0..2, got 3"):
        metrics.task_metrics("multiclass", [0, 3], [[1, 0, 0], [0, 1, 0]])
    with pytest.raises(metrics.MetricsError, match="sum to 1"):
        metrics.task_metrics("multiclass", [0, 1], [[0.5, 0.1, 0], [0, 1, 0]])
    with pytest.raises(metrics.MetricsError, match="classes has 2 values"):
        metrics.task_metrics("multiclass", Y, P, classes=("a", "b"))
    with pytest.raises(metrics.MetricsError, match="class_counts"):
        metrics.prior_log_loss([0, 0, 0], [0])
