"""The canary verdict per task (issue 26) on synthetic rows: paired (shadow) and unpaired (traffic split).

A clearly better canary is promoted, a clearly worse one rolled back, in the task's metric (regression MSE,
multiclass log loss; the difference oriented so that > 0 means the canary is better) with its units.
"""

from __future__ import annotations

import numpy as np
import pytest

from components.canary import canary as C
from kfloop import config, paired

CFG = config.ComparisonConfig()


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _rows(task: str, n: int, noise: float, seed: int):
    """Labels and the outputs of a model whose error grows with ``noise``."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        y = rng.normal(30, 12, n)
        return y, y + rng.normal(0, noise, n)
    y = rng.integers(0, 4, n)
    z = rng.normal(0, noise, (n, 4))
    z[np.arange(n), y] += 2.0
    return y.astype(float), _softmax(z)


def _scores(ids, outputs, labels) -> C.Scores:
    return C.Scores(list(ids), np.asarray(outputs, dtype=np.float64), np.asarray(labels, dtype=np.float64))


@pytest.mark.parametrize("task", ["regression", "multiclass"])
@pytest.mark.parametrize("pairing", ["paired", "unpaired"])
@pytest.mark.parametrize("better", [True, False])
def test_clearly_better_promotes_clearly_worse_rolls_back(task, pairing, better):
    n = 600
    good, bad = (4.0, 12.0) if task == "regression" else (0.5, 2.5)
    ids = [("r", i) for i in range(n)]
    y, strong = _rows(task, n, good, 1)
    rng = np.random.default_rng(2)
    if task == "regression":
        weak = y + rng.normal(0, bad, n)
    else:
        z = rng.normal(0, bad, (n, 4))
        z[np.arange(n), y.astype(int)] += 2.0
        weak = _softmax(z)
    canary_out, champ_out = (strong, weak) if better else (weak, strong)
    if pairing == "paired":  # a shadow canary: both scored the same rows
        scores = {"v2": _scores(ids, canary_out, y), "v1": _scores(ids, champ_out, y)}
    else:  # a traffic split: each version its own rows
        half = n // 2
        scores = {
            "v2": _scores(ids[:half], canary_out[:half], y[:half]),
            "v1": _scores(ids[half:], champ_out[half:], y[half:]),
        }
    c = C.comparison(scores, "v2", "v1", CFG, task)
    assert c.task == task and c.paired is (pairing == "paired")
    assert c.metric == {"regression": "mse", "multiclass": "log_loss"}[task]
    assert c.units == {"regression": "squared label units", "multiclass": "nats"}[task]
    assert (c.diff > 0) is better and (c.low > 0 if better else c.high < 0)
    verdict, message = paired.verdict(c, CFG)
    assert paired.ACTION[verdict] == ("promote" if better else "reject")
    assert ("MSE" if task == "regression" else "log loss") in message and c.units in message


def test_multiclass_comparison_reports_accuracy_as_the_secondary_statistic():
    n = 400
    y, strong = _rows("multiclass", n, 0.5, 3)
    _, weak = _rows("multiclass", n, 2.5, 3)
    ids = [("r", i) for i in range(n)]
    c = C.comparison(
        {"v2": _scores(ids, strong, y), "v1": _scores(ids, weak, y)}, "v2", "v1", CFG, "multiclass"
    )
    assert c.secondary["metric"] == "accuracy" and c.secondary["diff"] > 0
    assert c.secondary["units"] == "fraction of rows" and sum(c.class_counts) == n


def test_no_labelled_rows_is_undecided_and_has_no_margin_to_state():
    empty = C.Scores([], np.zeros(0), np.zeros(0))
    c = C.comparison({"v2": empty, "v1": empty}, "v2", "v1", CFG, "regression")
    assert c.rows == 0 and c.diff is None
    assert paired.verdict(c, CFG)[0] == paired.UNDECIDED and C._margin(c, CFG) is None
