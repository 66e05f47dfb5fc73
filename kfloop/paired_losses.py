"""Per-row losses of two models and the interval of their mean difference (regression and multiclass).

The regression and multiclass comparisons of :mod:`kfloop.paired` are means of per-row losses (squared and
absolute errors; log loss in nats and correctness of the arg-max class), so their difference is a mean of
per-row differences: this module checks the inputs, computes the per-row values and the interval (Student
t of the paired mean, Welch's t unpaired, or a seeded percentile bootstrap). Only numpy and the standard
library are imported.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from kfloop.config import ComparisonConfig

#: Probabilities are clipped to at least this before the log (a confident miss costs 34.5 nats, not inf).
LOG_LOSS_EPS = 1e-15
#: How far a multiclass row's probabilities may sum from 1 (float32 softmax rounding is ~1e-7).
SUM_TOLERANCE = 1e-3


class ComparisonError(ValueError):
    """Bad comparison input (lengths, shapes, labels, method, task); the message names it."""


def z_quantile(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``df`` degrees of freedom.

    Exact for ``df`` <= 2 (Cauchy at 1, closed form at 2); above, the Cornish-Fisher expansion around the
    normal quantile (Abramowitz & Stegun 26.7.5; error < 1e-3 at df 3, < 1e-5 from df 10).
    """
    p = 0.5 + confidence / 2.0
    if df < 2:  # a fractional Welch df below 2 gets df 1's (wider) quantile
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = z_quantile(confidence)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def numbers(x, what: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ComparisonError(f"{what} must be numbers") from None


def check_regression(y, s, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Regression labels (floats) and predictions of one side: 1-d, one length, finite."""
    y = numbers(y, f"{what}: labels")
    s = numbers(s, f"{what}: predictions")
    if y.ndim != 1 or s.shape != y.shape:
        raise ComparisonError(
            f"{what}: labels {y.shape} and predictions {s.shape} must be 1-d of one length (regression)"
        )
    if not np.isfinite(y).all():
        raise ComparisonError(f"{what}: labels must be finite numbers (regression)")
    if not np.isfinite(s).all():
        raise ComparisonError(f"{what}: predictions must be finite (regression)")
    return y, s


def check_multiclass(y, p, what: str, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and [n, K] probabilities of one side; ``k``: the other side's K, which must match."""
    y = numbers(y, f"{what}: labels")
    p = numbers(p, f"{what}: probabilities")
    if y.ndim != 1:
        raise ComparisonError(f"{what}: labels {y.shape} must be 1-d (class indices)")
    if p.ndim != 2 or p.shape[0] != y.size or p.shape[1] < 2:
        raise ComparisonError(
            f"{what}: probabilities {p.shape} must be [n, K] with n = {y.size} labels and K >= 2 classes"
        )
    if k is not None and p.shape[1] != k:
        raise ComparisonError(f"{what}: probabilities have {p.shape[1]} classes, the challenger's {k}")
    kk = p.shape[1]
    if not np.isfinite(p).all():
        raise ComparisonError(f"{what}: probabilities must be finite")
    if ((p < 0) | (p > 1)).any():
        raise ComparisonError(f"{what}: probabilities must lie in [0, 1]")
    if y.size and np.abs(p.sum(axis=1) - 1.0).max() > SUM_TOLERANCE:
        row = int(np.argmax(np.abs(p.sum(axis=1) - 1.0)))
        raise ComparisonError(
            f"{what}: probabilities of a row must sum to 1 (row {row} sums to {p[row].sum():.6g})"
        )
    if y.size and (~np.isfinite(y) | (y != np.round(y)) | (y < 0) | (y > kk - 1)).any():
        bad = y[~np.isfinite(y) | (y != np.round(y)) | (y < 0) | (y > kk - 1)][0]
        raise ComparisonError(f"{what}: labels must be class indices in 0..{kk - 1}, got {bad!r}")
    return y.astype(np.int64), p


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row log loss in nats: -ln p[label], the probability clipped to [LOG_LOSS_EPS, 1]."""
    chosen = p[np.arange(y.size), y] if y.size else np.zeros(0)
    return -np.log(np.clip(chosen, LOG_LOSS_EPS, 1.0))


def row_correct(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per row 1.0 where the arg-max class (the first of ties) is the label, else 0.0."""
    return (np.argmax(p, axis=1) == y).astype(np.float64) if y.size else np.zeros(0)


def mean_difference(a: np.ndarray, b: np.ndarray, higher_is_better: bool, paired: bool, cfg):
    """Means of per-row values ``a`` (challenger) and ``b`` (champion), oriented difference and interval.

    Returns:
        ``(mean a, mean b, diff, low, high)``; ``diff = ±(mean a - mean b)`` with the sign making > 0 mean
        the challenger is better; all None without rows, the interval None below 2 rows a side.
    """
    if a.size == 0 or b.size == 0:
        return None, None, None, None, None
    sign = 1.0 if higher_is_better else -1.0
    ma, mb = float(a.mean()), float(b.mean())
    d = sign * (a - b) if paired else None
    diff = float(d.mean()) if paired else sign * (ma - mb)
    if a.size < 2 or b.size < 2:
        return ma, mb, diff, None, None
    if cfg.method == "bootstrap":
        low, high = bootstrap_means(d, sign * a, sign * b, paired, cfg)
        return ma, mb, diff, low, high
    if paired:
        var, df = float(np.var(d, ddof=1)) / d.size, d.size - 1
    else:
        va, vb = float(np.var(a, ddof=1)) / a.size, float(np.var(b, ddof=1)) / b.size
        var = va + vb
        den = va**2 / (a.size - 1) + vb**2 / (b.size - 1)
        df = var**2 / den if den > 0 else math.inf  # Welch-Satterthwaite
    half = (t_quantile(cfg.confidence, df) if math.isfinite(df) else z_quantile(cfg.confidence)) * math.sqrt(
        var
    )
    return ma, mb, diff, diff - half, diff + half


def bootstrap_means(d, a, b, paired: bool, cfg: ComparisonConfig) -> tuple[float, float]:
    """Percentile interval of the mean of ``d`` (paired) or of ``mean a - mean b`` over seeded resamples."""
    rng = np.random.default_rng(cfg.seed)
    out = []
    n = max(a.size, b.size)
    chunk = max(1, int(4_000_000 // n))
    done = 0
    while done < cfg.bootstrap_samples:
        k = min(chunk, cfg.bootstrap_samples - done)
        if paired:
            out.append(d[rng.integers(0, d.size, size=(k, d.size))].mean(axis=1))
        else:
            ia = rng.integers(0, a.size, size=(k, a.size))
            ib = rng.integers(0, b.size, size=(k, b.size))
            out.append(a[ia].mean(axis=1) - b[ib].mean(axis=1))
        done += k
    m = np.concatenate(out)
    alpha = (1.0 - cfg.confidence) / 2.0
    return float(np.quantile(m, alpha)), float(np.quantile(m, 1.0 - alpha))
