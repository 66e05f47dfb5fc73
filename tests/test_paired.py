"""Paired comparison of two models on the same rows: DeLong vs bootstrap, the policy, bad input."""

import dataclasses

import numpy as np
import pytest

from components.monitor.monitor import auc as monitor_auc
from kfloop import config, paired

CFG = config.ComparisonConfig()


def _rows(n, seed=1, noise_a=0.5, noise_b=0.5, shift_a=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    base = y * 1.5 + rng.normal(size=n)
    a = base + shift_a * y + rng.normal(scale=noise_a, size=n)
    b = base + rng.normal(scale=noise_b, size=n)
    return y, a, b


def test_auc_matches_mann_whitney_with_ties():
    y = [0, 0, 1, 1, 0, 1, 1, 0]
    s = [0.1, 0.4, 0.4, 0.8, 0.4, 0.9, 0.2, 0.1]
    assert paired.auc(y, s) == pytest.approx(monitor_auc(y, s))
    assert paired.auc([1, 1], [0.2, 0.3]) is None


def test_delong_and_paired_bootstrap_agree_and_pairing_narrows_the_interval():
    y, a, b = _rows(600)
    d = paired.compare(y, a, b)
    bs = paired.compare(y, a, b, cfg=dataclasses.replace(CFG, method="bootstrap", bootstrap_samples=400))
    assert d.diff == pytest.approx(bs.diff)
    assert d.low < d.diff < d.high
    assert abs(d.low - bs.low) < 0.006 and abs(d.high - bs.high) < 0.006
    # The same rows treated as independent samples: the interval is clearly wider.
    u = paired.compare(y, a, b, champion_labels=y, paired=False)
    assert (u.high - u.low) > 1.3 * (d.high - d.low)
    # Seeded: the bootstrap is reproducible.
    again = paired.compare(y, a, b, cfg=dataclasses.replace(CFG, method="bootstrap", bootstrap_samples=400))
    assert (again.low, again.high) == (bs.low, bs.high)


def test_interval_covers_the_true_difference_about_as_often_as_stated():
    hits = 0
    for seed in range(60):  # two equally good models: the true difference is 0
        y, a, b = _rows(400, seed=seed)
        c = paired.compare(y, a, b)
        hits += c.low <= 0 <= c.high
    assert hits >= 51  # 95% nominal: at least 85% of 60 (a broken variance fails this)


def test_policy_better_worse_noninferior_undecided_and_the_limit():
    y, a, b = _rows(4000, shift_a=1.0)  # challenger clearly better
    assert paired.verdict(paired.compare(y, a, b))[0] == paired.BETTER
    assert paired.verdict(paired.compare(y, b, a))[0] == paired.WORSE
    y, a, b = _rows(20000, seed=3)  # equal models, many rows: tight interval inside the margin
    v, msg = paired.verdict(paired.compare(y, a, b))
    assert v == paired.NON_INFERIOR and "not worse than the margin" in msg
    y, a, b = _rows(300, seed=5)  # equal models, few rows: undecided, then the stated rule
    c = paired.compare(y, a, b)
    v, msg = paired.verdict(c)
    assert v == paired.UNDECIDED and "[" in msg and "300 paired rows" in msg
    v, msg = paired.verdict(c, at_limit=True)
    assert v == CFG.at_limit and "at the limit" in msg
    v, _ = paired.verdict(c, dataclasses.replace(CFG, at_limit="non_inferior"), at_limit=True)
    assert v == paired.NON_INFERIOR
    assert paired.verdict(paired.compare(y[:50], a[:50], b[:50]))[0] == paired.UNDECIDED  # < min_rows


def test_bad_input_is_named():
    with pytest.raises(paired.ComparisonError, match="one length"):
        paired.compare([0, 1], [0.1, 0.2], [0.3])
    with pytest.raises(paired.ComparisonError, match="0 or 1"):
        paired.compare([0, 2], [0.1, 0.2], [0.3, 0.4])
    with pytest.raises(paired.ComparisonError, match="method"):
        paired.compare([0, 1], [0.1, 0.2], [0.3, 0.4], cfg=dataclasses.replace(CFG, method="magic"))
    c = paired.compare([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.4, 0.5])
    assert c.diff is None and paired.verdict(c)[0] == paired.UNDECIDED
