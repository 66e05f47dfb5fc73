"""Comparing two models on the same rows: AUC difference with a confidence interval, and the verdict.

Every place the loop compares a challenger with the champion (evaluate's change threshold, the canary
verdict) calls :func:`compare` and :func:`verdict`, so the statistics and the policy live in one place.

* :func:`compare` with ``paired=True`` (both models scored the same rows): DeLong's test for two correlated
  ROC curves (DeLong, DeLong & Clarke-Pearson 1988, in the O(n log n) form of Sun & Xu 2014), or a paired
  bootstrap (rows resampled with a seeded RNG, percentile interval). With ``paired=False`` (each model
  scored its own rows, e.g. a traffic split) the two AUCs are independent and their variances add.
* :func:`verdict` applies :class:`kfloop.config.ComparisonConfig`: ``better`` when the interval of
  ``challenger - champion`` lies above 0; ``non_inferior`` when its lower end lies above ``-margin``;
  ``worse`` when its upper end lies below 0 (and it is not non-inferior); otherwise ``undecided``. Too few
  rows (or a single class) is ``undecided`` too. At the collection limit an undecided comparison is
  decided by ``cfg.at_limit``.

Only numpy and the standard library are imported.
"""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np

from kfloop.config import ComparisonConfig

BETTER = "better"
NON_INFERIOR = "non_inferior"
WORSE = "worse"
UNDECIDED = "undecided"
#: Verdict -> what the loop does with the challenger.
ACTION = {BETTER: "promote", NON_INFERIOR: "promote", WORSE: "reject", UNDECIDED: "wait"}


class ComparisonError(ValueError):
    """Bad comparison input (lengths, labels, method); the message names it."""


@dataclasses.dataclass(frozen=True)
class Comparison:
    """AUC of challenger and champion, their difference and its interval.

    Attributes:
        metric: Always ``auc``.
        challenger: Challenger AUC (None: undefined, a single class).
        champion: Champion AUC.
        diff: ``challenger - champion``.
        low: Lower end of the ``confidence`` interval of ``diff``.
        high: Upper end.
        confidence: Two-sided confidence level of the interval.
        rows: Rows compared (per model when unpaired: ``rows`` = challenger rows + champion rows).
        positives: Positive labels among them.
        method: ``delong`` or ``bootstrap``.
        paired: Both models scored the same rows.
    """

    metric: str
    challenger: float | None
    champion: float | None
    diff: float | None
    low: float | None
    high: float | None
    confidence: float
    rows: int
    positives: int
    method: str
    paired: bool

    def interval_text(self) -> str:
        if self.diff is None:
            return "no interval (a single class or no rows)"
        pct = f"{self.confidence * 100:g}%"
        return f"{self.diff:+.4f} [{self.low:+.4f}, {self.high:+.4f}] ({pct}, {self.method})"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _midrank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (vectorised)."""
    _uniq, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def auc(labels, scores) -> float | None:
    """ROC AUC (Mann-Whitney; ties count half), ``None`` unless both classes are present."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    m = int(y.sum())
    n = y.size - m
    if m == 0 or n == 0:
        return None
    r = _midrank(s)
    return float((r[y].sum() - m * (m + 1) / 2.0) / (m * n))


def _delong_parts(y: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components (positives ``v10``, negatives ``v01``) of one model."""
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    tx, ty, tz = _midrank(pos), _midrank(neg), _midrank(np.concatenate([pos, neg]))
    a = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    return float(a), v10, v01


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check(y, s, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ComparisonError(f"{what}: labels {y.shape} and scores {s.shape} must be 1-d of one length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ComparisonError(f"{what}: labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ComparisonError(f"{what}: scores must be finite")
    return y.astype(bool), s


def compare(
    labels,
    challenger,
    champion,
    *,
    champion_labels=None,
    paired: bool = True,
    cfg: ComparisonConfig = ComparisonConfig(),
) -> Comparison:
    """AUC of challenger vs champion with an interval of the difference.

    Args:
        labels: 0/1 labels of the challenger's rows (paired: of both models' rows).
        challenger: The challenger's scores of those rows.
        champion: The champion's scores (paired: of the same rows, same order).
        champion_labels: Unpaired only: the labels of the champion's rows.
        paired: Whether both models scored the same rows.
        cfg: ``method``, ``confidence``, ``bootstrap_samples``, ``seed``.

    Returns:
        A :class:`Comparison`; AUCs and interval are None when a side has a single class.

    Raises:
        ComparisonError: mismatched lengths, labels other than 0/1, non-finite scores, unknown method.
    """
    if cfg.method not in ("delong", "bootstrap"):
        raise ComparisonError(f"comparison method {cfg.method!r}: use 'delong' or 'bootstrap'")
    y, a = _check(labels, challenger, "challenger")
    if paired:
        if champion_labels is not None:
            raise ComparisonError("paired comparison: champion_labels must not be given (same rows)")
        _, b = _check(labels, champion, "champion")
        yb = y
    else:
        yb, b = _check(champion_labels, champion, "champion")
    rows = int(y.size + (0 if paired else yb.size))
    positives = int(y.sum() + (0 if paired else yb.sum()))
    base = dict(metric="auc", confidence=cfg.confidence, rows=rows, positives=positives)
    base.update(method=cfg.method, paired=paired)
    auc_a, auc_b = auc(y, a), auc(yb, b)
    if auc_a is None or auc_b is None:
        return Comparison(challenger=auc_a, champion=auc_b, diff=None, low=None, high=None, **base)
    diff = auc_a - auc_b
    if cfg.method == "bootstrap":
        low, high = _bootstrap(y, a, yb, b, paired, cfg)
    else:
        low, high = _delong(y, a, yb, b, paired, cfg.confidence)
    return Comparison(challenger=auc_a, champion=auc_b, diff=diff, low=low, high=high, **base)


def _delong(y, a, yb, b, paired: bool, confidence: float) -> tuple[float, float]:
    auc_a, v10a, v01a = _delong_parts(y, a)
    auc_b, v10b, v01b = _delong_parts(yb, b)
    if paired:
        s10 = np.cov(np.vstack([v10a, v10b])) if v10a.size > 1 else np.zeros((2, 2))
        s01 = np.cov(np.vstack([v01a, v01b])) if v01a.size > 1 else np.zeros((2, 2))
        var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / v10a.size
        var += (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / v01a.size
    else:

        def one(v10, v01):
            return (np.var(v10, ddof=1) if v10.size > 1 else 0.0) / v10.size + (
                np.var(v01, ddof=1) if v01.size > 1 else 0.0
            ) / v01.size

        var = one(v10a, v01a) + one(v10b, v01b)
    half = _z(confidence) * float(np.sqrt(max(var, 0.0)))
    d = auc_a - auc_b
    return d - half, d + half


def _aucs_of_resamples(y: np.ndarray, s: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """AUC of each resample (rows of ``idx``), NaN where a resample has a single class."""
    ys, ss = y[idx], s[idx]
    order = np.argsort(ss, axis=1, kind="stable")
    ss = np.take_along_axis(ss, order, axis=1)
    ys = np.take_along_axis(ys, order, axis=1)
    n = idx.shape[1]
    ranks = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), ss.shape).copy()
    # Average ranks over ties, per resample: ties are runs of equal sorted values.
    for i in range(ss.shape[0]):
        row = ss[i]
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        if starts.size != n:
            counts = np.diff(np.r_[starts, n])
            mid = starts + (counts + 1) / 2.0
            ranks[i] = np.repeat(mid, counts)
    m = ys.sum(axis=1)
    k = n - m
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((ranks * ys).sum(axis=1) - m * (m + 1) / 2.0) / (m * k)
    out[(m == 0) | (k == 0)] = np.nan
    return out


def _bootstrap(y, a, yb, b, paired: bool, cfg: ComparisonConfig) -> tuple[float, float]:
    rng = np.random.default_rng(cfg.seed)
    diffs = []
    chunk = max(1, int(4_000_000 // max(y.size, 1)))
    done = 0
    while done < cfg.bootstrap_samples:
        k = min(chunk, cfg.bootstrap_samples - done)
        ia = rng.integers(0, y.size, size=(k, y.size))
        ib = ia if paired else rng.integers(0, yb.size, size=(k, yb.size))
        diffs.append(_aucs_of_resamples(y, a, ia) - _aucs_of_resamples(yb, b, ib))
        done += k
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - cfg.confidence) / 2.0
    return float(np.quantile(d, alpha)), float(np.quantile(d, 1.0 - alpha))


def verdict(
    c: Comparison, cfg: ComparisonConfig = ComparisonConfig(), *, at_limit: bool = False
) -> tuple[str, str]:
    """The policy: ``(better|non_inferior|worse|undecided, message)``.

    ``at_limit``: no more rows will come (the collection limit is reached, or the rows are fixed as in an
    evaluation); an undecided comparison then becomes ``cfg.at_limit`` (``worse``: the champion stays
    unless the challenger earned promotion; ``non_inferior``: it is promoted).

    The message names the metric, both values, the interval, the rows and the rule that decided.
    """
    few = c.rows < cfg.min_rows
    if c.diff is None or few or not np.isfinite(c.low):
        why = f"only {c.rows} rows (< min_rows {cfg.min_rows})" if few else "AUC undefined (a single class)"
        if c.diff is not None and not few:
            why = "no finite interval"
        out = UNDECIDED
        if at_limit:
            out = cfg.at_limit
            why += f"; at the limit: {out} by the stated rule (at_limit={cfg.at_limit!r})"
        return out, f"{_values(c)}: {why}"
    margin = cfg.margin
    if c.low > 0:
        out, rule = BETTER, "interval above 0: challenger better"
    elif c.low >= -margin:
        out, rule = NON_INFERIOR, f"interval above -{margin}: not worse than the margin"
    elif c.high < 0:
        out, rule = WORSE, "interval below 0: challenger worse"
    else:
        out, rule = UNDECIDED, f"interval spans -{margin} and 0: undecided"
        if at_limit:
            out = cfg.at_limit
            rule += f"; at the limit: {out} by the stated rule (at_limit={cfg.at_limit!r})"
    return out, f"{_values(c)}: {rule}"


def _values(c: Comparison) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    kind = "paired rows" if c.paired else "rows (unpaired)"
    return (
        f"AUC challenger {f(c.challenger)} vs champion {f(c.champion)}, diff {c.interval_text()} "
        f"on {c.rows} {kind} ({c.positives} positive)"
    )
