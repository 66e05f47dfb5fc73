"""Regression and multiclass comparisons: interval coverage on known truths, orientation, margins, errors.

The coverage tests simulate many evaluations of n=500 rows drawn from a process whose true difference is
known (analytically for regression, from a huge sample for multiclass) and count how often the 95%
interval covers it; with S simulations the observed rate must lie within 3.5 binomial standard errors
of the nominal 0.95 (S=400: [0.912, 0.988]). Run with ``-s`` to see the rates.
"""

import dataclasses
import enum
import json
import math
import statistics

import numpy as np
import pytest

from kfloop import config, paired

CFG = config.ComparisonConfig()
NOMINAL = 0.95
N = 500


def _tolerance(sims: int) -> float:
    return 3.5 * math.sqrt(NOMINAL * (1 - NOMINAL) / sims)


def _check_rate(name: str, hits: int, sims: int) -> None:
    rate = hits / sims
    print(f"\n{name}: nominal {NOMINAL:.3f}, observed {rate:.3f} ({hits}/{sims})")
    assert abs(rate - NOMINAL) <= _tolerance(sims), f"{name}: coverage {rate:.3f} of {sims}"


# Regression: errors (e_a, e_b) bivariate normal with means MU, sds SD and correlation RHO; the label is
# irrelevant to the errors. MSE = sd^2 + mu^2, E|e| = sd sqrt(2/pi) exp(-mu^2 / 2 sd^2) + mu (1 - 2 Phi(-mu/sd)).
MU_A, MU_B, SD_A, SD_B, RHO = 0.2, 0.0, 1.0, 1.1, 0.6


def _mae(mu, sd):
    phi = statistics.NormalDist().cdf(-mu / sd)
    return sd * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * sd**2)) + mu * (1 - 2 * phi)


TRUE_MSE_DIFF = (SD_B**2 + MU_B**2) - (SD_A**2 + MU_A**2)  # champion - challenger: 0.17
TRUE_MAE_DIFF = _mae(MU_B, SD_B) - _mae(MU_A, SD_A)


def _regression_sims(sims: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.normal(size=(2, sims, n))
    e_a = MU_A + SD_A * z1
    e_b = MU_B + SD_B * (RHO * z1 + math.sqrt(1 - RHO**2) * z2)
    y = rng.normal(scale=2.0, size=(sims, n))
    return y, y + e_a, y + e_b


def _covers(c, truth) -> bool:
    return c.low <= truth <= c.high


def _secondary_covers(c, truth) -> bool:
    return c.secondary["low"] <= truth <= c.secondary["high"]


def test_regression_paired_t_interval_covers_the_true_mse_and_mae_differences():
    """Paired t interval, n=500, 400 simulations: nominal 0.95 for MSE and MAE (observed: print with -s)."""
    sims = 400
    y, a, b = _regression_sims(sims, N, seed=11)
    cs = [paired.compare(y[i], a[i], b[i], task="regression") for i in range(sims)]
    _check_rate("regression paired t, MSE", sum(_covers(c, TRUE_MSE_DIFF) for c in cs), sims)
    _check_rate("regression paired t, MAE", sum(_secondary_covers(c, TRUE_MAE_DIFF) for c in cs), sims)
    # The point estimates are unbiased: their mean over the simulations is near the truth.
    assert np.mean([c.diff for c in cs]) == pytest.approx(TRUE_MSE_DIFF, abs=0.01)


def test_regression_paired_bootstrap_covers_the_true_mse_difference():
    """Paired percentile bootstrap (500 resamples), n=500, 300 simulations: nominal 0.95."""
    sims = 300
    cfg = dataclasses.replace(CFG, method="bootstrap", bootstrap_samples=500)
    y, a, b = _regression_sims(sims, N, seed=12)
    cs = [paired.compare(y[i], a[i], b[i], task="regression", cfg=cfg) for i in range(sims)]
    assert all(c.method == "bootstrap" for c in cs)
    _check_rate("regression paired bootstrap, MSE", sum(_covers(c, TRUE_MSE_DIFF) for c in cs), sims)


def test_regression_unpaired_welch_interval_covers_and_is_wider_than_paired():
    """Unpaired (each model its own 500 rows) Welch t, 400 simulations: nominal 0.95."""
    sims = 400
    y, a, b = _regression_sims(sims, 2 * N, seed=13)
    cs = [
        paired.compare(
            y[i, :N], a[i, :N], b[i, N:], champion_labels=y[i, N:], paired=False, task="regression"
        )
        for i in range(sims)
    ]
    _check_rate("regression unpaired Welch, MSE", sum(_covers(c, TRUE_MSE_DIFF) for c in cs), sims)
    pc = [paired.compare(y[i, :N], a[i, :N], b[i, :N], task="regression") for i in range(50)]
    # Correlated errors (rho 0.6, squared errors correlate ~rho^2): pairing removes the shared variance.
    assert np.mean([c.high - c.low for c in cs[:50]]) > 1.15 * np.mean([c.high - c.low for c in pc])


# Multiclass: true logits z ~ N(0, 1.5^2) per class; the label is drawn from softmax(z). The challenger
# predicts softmax(0.7 z) (under-confident), the champion softmax(z + N(0, 0.8^2)) (noisy). The truth is the
# population mean of the per-row expected differences, from 10^6 rows (its error is ~1/40 of a half-width).
K = 4


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _multiclass_models(rng, shape):
    z = rng.normal(scale=1.5, size=(*shape, K))
    truth = _softmax(z)
    return truth, _softmax(0.7 * z), _softmax(z + rng.normal(scale=0.8, size=z.shape))


@pytest.fixture(scope="module")
def multiclass_truth():
    t, qa, qb = _multiclass_models(np.random.default_rng(99), (1_000_000,))
    ll = (t * (np.log(qa) - np.log(qb))).sum(axis=1).mean()  # E[loss_b - loss_a] (champion - challenger)
    rows = np.arange(t.shape[0])
    acc = (t[rows, qa.argmax(axis=1)] - t[rows, qb.argmax(axis=1)]).mean()  # challenger - champion
    return float(ll), float(acc)


def test_multiclass_paired_interval_covers_the_true_log_loss_and_accuracy_differences(multiclass_truth):
    """Paired t interval, n=500, 400 simulations: nominal 0.95 for log loss and accuracy."""
    true_ll, true_acc = multiclass_truth
    sims = 400
    rng = np.random.default_rng(21)
    t, qa, qb = _multiclass_models(rng, (sims, N))
    u = rng.random(size=(sims, N, 1))
    y = np.minimum((u > np.cumsum(t, axis=-1)).sum(axis=-1), K - 1)  # a draw from each row's truth
    cs = [paired.compare(y[i], qa[i], qb[i], task="multiclass") for i in range(sims)]
    _check_rate("multiclass paired t, log loss", sum(_covers(c, true_ll) for c in cs), sims)
    _check_rate("multiclass paired t, accuracy", sum(_secondary_covers(c, true_acc) for c in cs), sims)
    assert true_ll > 0.01 and np.mean([c.diff for c in cs]) == pytest.approx(true_ll, abs=0.01)


def test_t_quantile_matches_tables():
    assert paired.t_quantile(0.95, 1) == pytest.approx(12.7062, abs=1e-3)
    assert paired.t_quantile(0.95, 2) == pytest.approx(4.3027, abs=1e-3)
    assert paired.t_quantile(0.95, 5) == pytest.approx(2.5706, abs=2e-3)
    assert paired.t_quantile(0.95, 10) == pytest.approx(2.2281, abs=1e-4)
    assert paired.t_quantile(0.95, 30) == pytest.approx(2.042272, abs=1e-5)
    assert paired.t_quantile(0.99, 499) == pytest.approx(2.5857, abs=1e-4)


def _regression_rows(n=1000, sd_a=1.0, sd_b=2.0, seed=3):
    rng = np.random.default_rng(seed)
    y = rng.normal(scale=5, size=n)
    return y, y + rng.normal(scale=sd_a, size=n), y + rng.normal(scale=sd_b, size=n)


def _multiclass_rows(n=1000, seed=4):
    rng = np.random.default_rng(seed)
    t, _, _ = _multiclass_models(rng, (n,))
    y = np.minimum((rng.random((n, 1)) > np.cumsum(t, axis=1)).sum(axis=1), K - 1)
    return y, t, 0.5 * t + 0.5 / K  # the truth vs a model halfway to uniform


def test_orientation_better_worse_identical_per_task():
    y, good, bad = _regression_rows()
    c = paired.compare(y, good, bad, task="regression")
    assert c.metric == "mse" and not c.higher_is_better and c.units == "squared label units"
    assert c.challenger < c.champion and c.diff == pytest.approx(c.champion - c.challenger) and c.low > 0
    assert paired.verdict(c)[0] == paired.BETTER
    assert paired.verdict(paired.compare(y, bad, good, task="regression"))[0] == paired.WORSE
    same = paired.compare(y, good, good, task="regression")
    assert (same.diff, same.low, same.high) == (0.0, 0.0, 0.0)
    assert paired.verdict(same)[0] == paired.NON_INFERIOR
    assert (
        c.secondary["metric"] == "mae" and c.secondary["diff"] > 0 and c.secondary["units"] == "label units"
    )

    y, good, bad = _multiclass_rows()
    c = paired.compare(y, good, bad, task="multiclass")
    assert c.metric == "log_loss" and c.units == "nats" and c.diff > 0
    assert paired.verdict(c)[0] == paired.BETTER
    assert paired.verdict(paired.compare(y, bad, good, task="multiclass"))[0] == paired.WORSE
    assert paired.verdict(paired.compare(y, good, good, task="multiclass"))[0] == paired.NON_INFERIOR
    # Halfway to uniform keeps every row's arg-max: accuracy is the same, exactly.
    assert c.secondary["metric"] == "accuracy" and c.secondary["higher_is_better"]
    assert c.secondary["diff"] == 0.0
    assert sum(c.class_counts) == 1000 and len(c.class_counts) == K and c.positives == 0


def test_paired_values_by_hand_and_bootstrap_agrees():
    y, a, b = _regression_rows(n=600, sd_a=1.0, sd_b=1.1)
    c = paired.compare(y, a, b, task="regression")
    d = (b - y) ** 2 - (a - y) ** 2
    half = paired.t_quantile(0.95, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert c.diff == pytest.approx(d.mean()) and c.method == "t"
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.challenger == pytest.approx(((a - y) ** 2).mean())
    cfg = dataclasses.replace(CFG, method="bootstrap", bootstrap_samples=2000)
    bs = paired.compare(y, a, b, task="regression", cfg=cfg)
    assert bs.diff == c.diff and abs(bs.low - c.low) < 0.1 * half and abs(bs.high - c.high) < 0.1 * half
    again = paired.compare(y, a, b, task="regression", cfg=cfg)
    assert (again.low, again.high) == (bs.low, bs.high)  # seeded


def test_unpaired_is_the_welch_difference_of_means():
    y, a, b = _regression_rows(n=700)
    ya, yb = y[:300], y[300:]
    c = paired.compare(ya, a[:300], b[300:], champion_labels=yb, paired=False, task="regression")
    la, lb = (a[:300] - ya) ** 2, (b[300:] - yb) ** 2
    va, vb = la.var(ddof=1) / la.size, lb.var(ddof=1) / lb.size
    df = (va + vb) ** 2 / (va**2 / (la.size - 1) + vb**2 / (lb.size - 1))
    half = paired.t_quantile(0.95, df) * math.sqrt(va + vb)
    assert c.diff == pytest.approx(lb.mean() - la.mean())
    assert (c.low, c.high) == pytest.approx((c.diff - half, c.diff + half))
    assert c.rows == 700 and not c.paired and "700 rows (unpaired)" in paired.verdict(c)[1]
    y, good, bad = _multiclass_rows(n=900)
    c = paired.compare(
        y[:400], good[:400], bad[400:], champion_labels=y[400:], paired=False, task="multiclass"
    )
    assert c.rows == 900 and sum(c.class_counts) == 900 and c.diff > 0


def test_margins_per_task():
    assert CFG.margin_for("binary", 0.8) == CFG.margin == 0.01
    assert CFG.margin_for("regression", 250.0) == pytest.approx(5.0)  # 2% of the champion's MSE
    assert CFG.margin_for("multiclass", 1.2) == 0.01

    class Task(str, enum.Enum):  # the shape of kfloop.spec.Task
        REGRESSION = "regression"

    assert CFG.margin_for(Task.REGRESSION, 100.0) == pytest.approx(2.0)

    def reg(low, high, champion=100.0):
        return paired.Comparison(
            metric="mse", challenger=champion - (low + high) / 2, champion=champion, diff=(low + high) / 2,
            low=low, high=high, confidence=0.95, rows=500, positives=0, method="t", paired=True,
            task="regression", higher_is_better=False, units="squared label units",
        )  # fmt: skip

    v, msg = paired.verdict(reg(-1.5, 0.5))  # margin 2.0
    assert v == paired.NON_INFERIOR and "0.02 x the champion's MSE" in msg and "-2 " in msg
    assert paired.verdict(reg(-2.5, 0.5))[0] == paired.UNDECIDED
    assert paired.verdict(reg(-2.5, 0.5, champion=1000.0))[0] == paired.NON_INFERIOR  # margin 20
    assert paired.verdict(reg(-2.5, 0.5), dataclasses.replace(CFG, regression_margin=0.05))[0] == (
        paired.NON_INFERIOR
    )
    assert paired.verdict(reg(-2.5, -0.5))[0] == paired.WORSE
    assert paired.verdict(reg(-2.5, 0.5), at_limit=True)[0] == CFG.at_limit
    mc = dataclasses.replace(reg(-0.005, 0.01), metric="log_loss", task="multiclass", units="nats")
    v, msg = paired.verdict(mc)
    assert v == paired.NON_INFERIOR and "0.01 nats" in msg
    assert paired.verdict(dataclasses.replace(mc, low=-0.02))[0] == paired.UNDECIDED


def test_verdict_message_names_metric_values_orientation_units_rows_rule():
    y, good, bad = _regression_rows(n=500)
    c = paired.compare(y, good, bad, task="regression")
    v, msg = paired.verdict(c)
    assert v == paired.BETTER
    for part in (
        f"MSE challenger {c.challenger:.4g} vs champion {c.champion:.4g}",
        "champion - challenger (> 0: challenger better)",
        f"{c.diff:+.4g} [{c.low:+.4g}, {c.high:+.4g}] (95%, t) squared label units",
        "500 paired rows",
        "MAE challenger",
        "interval above 0: challenger better",
    ):
        assert part in msg, (part, msg)
    y, good, bad = _multiclass_rows(n=300)
    v, msg = paired.verdict(paired.compare(y[:100], good[:100], bad[:100], task="multiclass"))
    assert v == paired.UNDECIDED and "log loss challenger" in msg and "nats" in msg and "only 100 rows" in msg


def test_to_dict_is_json_ready_for_every_task():
    y, good, bad = _regression_rows(n=300)
    yc, gc, bc = _multiclass_rows(n=300)
    yb = (y > 0).astype(int)
    for c in (
        paired.compare(y, good, bad, task="regression"),
        paired.compare(yc, gc, bc, task="multiclass"),
        paired.compare(yb, good, bad),
        paired.compare([1.0], [1.5], [2.0], task="regression"),  # one row: no interval
    ):
        d = json.loads(json.dumps(c.to_dict(), allow_nan=False))
        assert {"task", "metric", "higher_is_better", "units", "secondary", "class_counts", "diff"} <= set(d)
    assert d["low"] is None and d["diff"] == pytest.approx(1.0 - 0.25)
    assert paired.verdict(c, dataclasses.replace(CFG, min_rows=1))[0] == paired.UNDECIDED


def test_binary_path_unchanged():
    """The binary numbers of the module before tasks existed (recorded from it), to 1e-12 (numpy's SIMD
    sums may differ in the last bit between processes: seen 0.0029098111718958847 vs ...871)."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, N)
    base = y * 1.2 + rng.normal(size=N)
    a = 1 / (1 + np.exp(-(base + rng.normal(scale=0.5, size=N))))
    b = 1 / (1 + np.exp(-(base + rng.normal(scale=0.7, size=N))))
    c = paired.compare(y, a, b)
    assert (c.challenger, c.champion, c.diff, c.low, c.high) == pytest.approx((
        0.7888899589111453, 0.7518297380585516, 0.03706022085259375, 0.002909811171895871,
        0.07121063053329163,
    ), rel=1e-12, abs=1e-15)  # fmt: skip
    assert paired.compare(y, a, b, task="binary") == c
    assert (c.task, c.metric, c.higher_is_better, c.units, c.secondary, c.positives) == (
        "binary", "auc", True, "AUC", None, 264,
    )  # fmt: skip
    bs = paired.compare(y, a, b, cfg=dataclasses.replace(CFG, method="bootstrap", bootstrap_samples=300))
    assert (bs.low, bs.high) == (0.006113592089565914, 0.06976791533209992)
    u = paired.compare(y[:300], a[:300], b[300:], champion_labels=y[300:], paired=False)
    assert (u.diff, u.low, u.high) == (0.04239500791339579, -0.040530335551094324, 0.12532035137788589)
    assert paired.verdict(c)[1] == (
        "AUC challenger 0.7889 vs champion 0.7518, diff +0.0371 [+0.0029, +0.0712] (95%, delong) on 500 "
        "paired rows (264 positive): interval above 0: challenger better"
    )
    assert paired.verdict(u)[1].endswith("(264 positive): interval spans -0.01 and 0: undecided")


def test_bad_input_is_named():
    y, good, bad = _multiclass_rows(n=10)
    cases = [
        (dict(labels=y, challenger=good[:, 0], champion=bad), "must be \\[n, K\\]"),
        (dict(labels=y, challenger=good, champion=bad[:, :3]), "3 classes, the challenger's 4"),
        (dict(labels=np.r_[y[:-1], 4], challenger=good, champion=bad), "class indices in 0..3, got 4"),
        (dict(labels=np.r_[y[:-1], 1.5], challenger=good, champion=bad), "class indices in 0..3"),
        (dict(labels=y, challenger=good * 2, champion=bad), "\\[0, 1\\]"),
        (dict(labels=y, challenger=good * 0.9, champion=bad), "sum to 1"),
        (dict(labels=y, challenger=np.where(good > 0.5, np.nan, good), champion=bad), "finite"),
    ]
    for kw, pattern in cases:
        with pytest.raises(paired.ComparisonError, match=pattern):
            paired.compare(**kw, task="multiclass")
    with pytest.raises(paired.ComparisonError, match="champion: predictions must be finite"):
        paired.compare([1.0, 2.0], [1.0, 2.0], [1.0, np.inf], task="regression")
    with pytest.raises(paired.ComparisonError, match="labels must be finite"):
        paired.compare([1.0, np.nan], [1.0, 2.0], [1.0, 2.0], task="regression")
    with pytest.raises(paired.ComparisonError, match="one length"):
        paired.compare([1.0, 2.0], [1.0, 2.0], [1.0], task="regression")
    with pytest.raises(paired.ComparisonError, match="labels must be numbers"):
        paired.compare(["a", "b"], [1.0, 2.0], [1.0, 2.0], task="regression")
    with pytest.raises(paired.ComparisonError, match="champion_labels"):
        paired.compare([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], task="regression", paired=False)
    with pytest.raises(paired.ComparisonError, match="task 'ordinal'"):
        paired.compare([1.0], [1.0], [1.0], task="ordinal")


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="ComparisonConfig.regression_margin"):
        config.ComparisonConfig(regression_margin=-0.1)
    with pytest.raises(ValueError, match="ComparisonConfig.multiclass_margin"):
        config.ComparisonConfig(multiclass_margin=float("nan"))
    with pytest.raises(ValueError, match="unknown task 'ordinal'"):
        CFG.margin_for("ordinal", 1.0)
    with pytest.raises(ValueError, match="champion's MSE"):
        CFG.margin_for("regression", None)
    with pytest.raises(ValueError, match="MonitoringConfig.output_drift_mode"):
        config.MonitoringConfig(output_drift_mode="alert")
    assert config.MonitoringConfig(output_drift_mode="trigger").output_drift_mode == "trigger"
    with pytest.raises(ValueError, match="EvaluationConfig.max_log_loss_ratio"):
        config.EvaluationConfig(max_log_loss_ratio=0)
    with pytest.raises(ValueError, match="EvaluationConfig.min_r2"):
        config.EvaluationConfig(min_r2=1.0)
    ev, mon = config.EvaluationConfig(), config.MonitoringConfig()
    assert (ev.min_r2, ev.max_log_loss_ratio, ev.max_slice_rmse_increase, ev.max_slice_accuracy_drop) == (
        0.05, 0.95, 0.10, 0.05,
    )  # fmt: skip
    assert (mon.max_live_rmse_increase, mon.max_live_accuracy_drop, mon.output_drift_threshold) == (
        0.25,
        0.05,
        0.1,
    )
    assert (ev.auc_floor, CFG.margin, mon.min_live_auc) == (0.75, 0.01, 0.7)  # binary unchanged
