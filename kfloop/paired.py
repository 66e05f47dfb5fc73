"""Comparing two models on the same rows: the task's metric, its difference with an interval, the verdict.

Every place the loop compares a challenger with the champion (evaluate's change threshold, the canary
verdict) calls :func:`compare` and :func:`verdict`, so the statistics and the policy live in one place.

The metric per task (``diff`` is always oriented so that **> 0 means the challenger is better**):

=============  ============  ==============================  ==============================================
task           ``metric``    ``diff``                        interval
=============  ============  ==============================  ==============================================
binary         ``auc``       AUC challenger - champion       DeLong, or a paired bootstrap
regression     ``mse``       MSE champion - challenger       mean of the per-row differences of squared
                                                             errors (Student t), or a paired bootstrap
multiclass     ``log_loss``  log loss champion - challenger  the same on per-row -log p[label] (nats)
=============  ============  ==============================  ==============================================

``secondary`` carries a second statistic with its own interval, computed the same way: regression ``mae``
(absolute errors, champion - challenger), multiclass ``accuracy`` (per-row correctness of the arg-max class,
challenger - champion).

* :func:`compare` with ``paired=True`` (both models scored the same rows). Binary: DeLong's test for two
  correlated ROC curves (DeLong, DeLong & Clarke-Pearson 1988, in the O(n log n) form of Sun & Xu 2014), or
  a paired bootstrap (rows resampled with a seeded RNG, percentile interval). Regression and multiclass:
  the metrics are means of per-row losses, so the difference is the mean of the per-row differences and
  its interval the Student t interval of that mean (``method`` recorded as ``t`` when ``cfg.method`` is
  ``delong``), or the seeded paired bootstrap's percentile interval. With ``paired=False`` (each model
  scored its own rows, e.g. a traffic split) the two estimates are independent and their variances add
  (DeLong's unpaired form; for means, Welch's t interval with the Welch-Satterthwaite degrees of freedom).
* :func:`verdict` applies :class:`kfloop.config.ComparisonConfig`: ``better`` when the interval of ``diff``
  lies above 0; ``non_inferior`` when its lower end lies above ``-margin`` (``cfg.margin_for(task, champion
  value)``); ``worse`` when its upper end lies below 0 (and it is not non-inferior); otherwise
  ``undecided``. Too few rows (or a single class, binary) is ``undecided`` too. At the collection limit an
  undecided comparison is decided by ``cfg.at_limit``.

Only numpy and the standard library are imported.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from kfloop.config import ComparisonConfig
from kfloop.paired_losses import (  # noqa: F401 (LOG_LOSS_EPS, SUM_TOLERANCE, t_quantile: re-exported)
    LOG_LOSS_EPS,
    SUM_TOLERANCE,
    ComparisonError,
    bootstrap_means,
    check_multiclass,
    check_regression,
    mean_difference,
    row_correct,
    row_log_loss,
    t_quantile,
    z_quantile,
)

BETTER = "better"
NON_INFERIOR = "non_inferior"
WORSE = "worse"
UNDECIDED = "undecided"
#: Verdict -> what the loop does with the challenger.
ACTION = {BETTER: "promote", NON_INFERIOR: "promote", WORSE: "reject", UNDECIDED: "wait"}

TASKS = ("binary", "regression", "multiclass")
#: Task -> (metric, higher_is_better, units) of the primary statistic.
PRIMARY = {
    "binary": ("auc", True, "AUC"),
    "regression": ("mse", False, "squared label units"),
    "multiclass": ("log_loss", False, "nats"),
}
#: Task -> (metric, higher_is_better, units) of the secondary statistic (binary has none).
SECONDARY = {
    "regression": ("mae", False, "label units"),
    "multiclass": ("accuracy", True, "fraction of rows"),
}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The task's metric for challenger and champion, their oriented difference and its interval.

    Attributes:
        metric: ``auc`` (binary), ``mse`` (regression) or ``log_loss`` (multiclass).
        challenger: Challenger's value of ``metric`` (None: undefined, a single class or no rows).
        champion: Champion's value.
        diff: The difference oriented so that > 0 means the challenger is better: ``challenger -
            champion`` when ``higher_is_better`` (AUC), ``champion - challenger`` for a loss (MSE, log loss).
        low: Lower end of the ``confidence`` interval of ``diff`` (None: fewer than 2 rows a side).
        high: Upper end.
        confidence: Two-sided confidence level of the interval.
        rows: Rows compared (per model when unpaired: ``rows`` = challenger rows + champion rows).
        positives: Binary: positive labels among them. Regression and multiclass: 0 (see
            ``class_counts``).
        method: ``delong`` or ``bootstrap`` (binary); ``t`` or ``bootstrap`` (regression, multiclass).
        paired: Both models scored the same rows.
        task: ``binary``, ``regression`` or ``multiclass``.
        higher_is_better: Whether a higher ``metric`` value is better (AUC yes; MSE, log loss no).
        units: Unit of ``metric``, ``diff`` and the interval: ``AUC``, ``squared label units``, ``nats``.
        secondary: Regression and multiclass: the second statistic, JSON-ready: ``metric`` (``mae`` |
            ``accuracy``), ``challenger``, ``champion``, ``diff`` (oriented the same way: > 0 = challenger
            better), ``low``, ``high``, ``higher_is_better``, ``units`` (``label units`` | ``fraction of
            rows``); None for binary.
        class_counts: Multiclass: labels per class index 0..K-1 among the rows compared (both sides when
            unpaired); ``()`` for binary and regression.
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
    task: str = "binary"
    higher_is_better: bool = True
    units: str = "AUC"
    secondary: dict | None = None
    class_counts: tuple[int, ...] = ()

    def interval_text(self) -> str:
        if self.diff is None:
            return "no interval (a single class or no rows)"
        if self.low is None or self.high is None:
            return f"{_num(self.diff, self.task, True)} (no interval: too few rows)"
        pct = f"{self.confidence * 100:g}%"
        lo, hi = _num(self.low, self.task, True), _num(self.high, self.task, True)
        return f"{_num(self.diff, self.task, True)} [{lo}, {hi}] ({pct}, {self.method})"

    def to_dict(self) -> dict:
        """All fields, JSON-ready: non-finite numbers as None, ``class_counts`` as a list."""
        d = dataclasses.asdict(self)
        for k in ("challenger", "champion", "diff", "low", "high"):
            d[k] = _finite_or_none(d[k])
        d["class_counts"] = [int(x) for x in self.class_counts]
        if self.secondary is not None:
            d["secondary"] = {
                k: _finite_or_none(v) if k in ("challenger", "champion", "diff", "low", "high") else v
                for k, v in self.secondary.items()
            }
        return d


def _finite_or_none(v):
    return None if v is None or not math.isfinite(v) else float(v)


def _num(v: float, task: str, signed: bool = False) -> str:
    """4 decimals (AUC, nats, accuracy); 4 significant digits for regression (label units of any scale)."""
    fmt = ".4g" if task == "regression" else ".4f"
    return format(v, ("+" if signed else "") + fmt)


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


def _task(task) -> str:
    name = getattr(task, "value", task)
    if name not in TASKS:
        raise ComparisonError(f"comparison task {task!r}: use one of {', '.join(TASKS)}")
    return name


def compare(
    labels,
    challenger,
    champion,
    *,
    task="binary",
    champion_labels=None,
    paired: bool = True,
    cfg: ComparisonConfig = ComparisonConfig(),
) -> Comparison:
    """The task's metric of challenger vs champion with an interval of the (oriented) difference.

    Args:
        labels: Labels of the challenger's rows (paired: of both models' rows): binary 0/1, regression
            floats, multiclass class indices 0..K-1.
        challenger: The challenger's outputs for those rows: binary probabilities (any scores) [n],
            regression predictions [n], multiclass probabilities [n, K] (rows sum to 1).
        champion: The champion's outputs (paired: of the same rows, same order).
        task: ``binary`` (default), ``regression`` or ``multiclass`` (a string or ``kfloop.spec.Task``).
        champion_labels: Unpaired only: the labels of the champion's rows.
        paired: Whether both models scored the same rows.
        cfg: ``method``, ``confidence``, ``bootstrap_samples``, ``seed``.

    Returns:
        A :class:`Comparison`; values and interval are None when a side has a single class (binary) or no
        rows, the interval alone when a side has a single row.

    Raises:
        ComparisonError: unknown task or method, mismatched lengths or shapes, labels outside the task's
            values, non-finite outputs; the message names which.
    """
    name = _task(task)
    if cfg.method not in ("delong", "bootstrap"):
        raise ComparisonError(f"comparison method {cfg.method!r}: use 'delong' or 'bootstrap'")
    if name == "binary":
        return _compare_binary(labels, challenger, champion, champion_labels, paired, cfg)
    if paired and champion_labels is not None:
        raise ComparisonError("paired comparison: champion_labels must not be given (same rows)")
    if not paired and champion_labels is None:
        raise ComparisonError(
            "unpaired comparison: champion_labels (the champion's rows' labels) are required"
        )
    counts: tuple[int, ...] = ()
    if name == "regression":
        y, a = check_regression(labels, challenger, "challenger")
        yb, b = (
            (y, check_regression(labels, champion, "champion")[1])
            if paired
            else (check_regression(champion_labels, champion, "champion"))
        )
        la, lb = (a - y) ** 2, (b - yb) ** 2
        sa, sb = np.abs(a - y), np.abs(b - yb)
    else:
        y, a = check_multiclass(labels, challenger, "challenger")
        k = a.shape[1]
        yb, b = (
            (y, check_multiclass(labels, champion, "champion", k)[1])
            if paired
            else (check_multiclass(champion_labels, champion, "champion", k))
        )
        la, lb = row_log_loss(y, a), row_log_loss(yb, b)
        sa, sb = row_correct(y, a), row_correct(yb, b)
        both = y if paired else np.concatenate([y, yb])
        counts = tuple(int(c) for c in np.bincount(both, minlength=k))
    metric, hib, units = PRIMARY[name]
    rows = int(y.size + (0 if paired else yb.size))
    method = "t" if cfg.method == "delong" else "bootstrap"
    chal, champ, diff, low, high = mean_difference(la, lb, hib, paired, cfg)
    s_metric, s_hib, s_units = SECONDARY[name]
    s = mean_difference(sa, sb, s_hib, paired, cfg)
    secondary = dict(zip(("challenger", "champion", "diff", "low", "high"), s, strict=True))
    secondary = {"metric": s_metric, **secondary, "higher_is_better": s_hib, "units": s_units}
    return Comparison(
        metric=metric,
        challenger=chal,
        champion=champ,
        diff=diff,
        low=low,
        high=high,
        confidence=cfg.confidence,
        rows=rows,
        positives=0,
        method=method,
        paired=paired,
        task=name,
        higher_is_better=hib,
        units=units,
        secondary=secondary,
        class_counts=counts,
    )


def _compare_binary(labels, challenger, champion, champion_labels, paired: bool, cfg) -> Comparison:
    """AUC of challenger vs champion (DeLong or bootstrap), as this module always computed it."""
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
    half = z_quantile(confidence) * float(np.sqrt(max(var, 0.0)))
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

    The margin is ``cfg.margin_for(c.task, c.champion)``: AUC (binary), ``regression_margin`` x the
    champion's MSE (regression), nats (multiclass). The message names the metric, both values, the oriented
    difference with its interval and units, the rows and the rule that decided.
    """
    few = c.rows < cfg.min_rows
    no_interval = c.diff is not None and (c.low is None or not math.isfinite(c.low))
    if c.diff is None or few or no_interval:
        if few:
            why = f"only {c.rows} rows (< min_rows {cfg.min_rows})"
        elif no_interval:
            why = "no finite interval"
        else:
            why = "AUC undefined (a single class)" if c.task == "binary" else "no rows"
        out = UNDECIDED
        if at_limit:
            out = cfg.at_limit
            why += f"; at the limit: {out} by the stated rule (at_limit={cfg.at_limit!r})"
        return out, f"{_values(c)}: {why}"
    margin = cfg.margin_for(c.task, c.champion)
    shown = _margin_text(c, cfg, margin)
    if c.low > 0:
        out, rule = BETTER, "interval above 0: challenger better"
    elif c.low >= -margin:
        out, rule = NON_INFERIOR, f"interval above -{shown}: not worse than the margin"
    elif c.high < 0:
        out, rule = WORSE, "interval below 0: challenger worse"
    else:
        out, rule = UNDECIDED, f"interval spans -{shown} and 0: undecided"
        if at_limit:
            out = cfg.at_limit
            rule += f"; at the limit: {out} by the stated rule (at_limit={cfg.at_limit!r})"
    return out, f"{_values(c)}: {rule}"


def _margin_text(c: Comparison, cfg: ComparisonConfig, margin: float) -> str:
    if c.task == "regression":
        return f"{margin:.4g} ({cfg.regression_margin:g} x the champion's MSE)"
    if c.task == "multiclass":
        return f"{margin:g} nats"
    return f"{margin}"


def _values(c: Comparison) -> str:
    def f(v):
        return "n/a" if v is None else _num(v, c.task)

    kind = "paired rows" if c.paired else "rows (unpaired)"
    if c.task == "binary":
        return (
            f"AUC challenger {f(c.challenger)} vs champion {f(c.champion)}, diff {c.interval_text()} "
            f"on {c.rows} {kind} ({c.positives} positive)"
        )
    name = {"mse": "MSE", "log_loss": "log loss"}[c.metric]
    text = (
        f"{name} challenger {f(c.challenger)} vs champion {f(c.champion)} (lower is better), "
        f"diff champion - challenger (> 0: challenger better) {c.interval_text()} {c.units} "
        f"on {c.rows} {kind}"
    )
    s = c.secondary
    if s and s.get("diff") is not None:
        s_name = {"mae": "MAE", "accuracy": "accuracy"}[s["metric"]]
        order = "challenger - champion" if s["higher_is_better"] else "champion - challenger"
        iv = _num(s["diff"], c.task, True)
        if s.get("low") is not None:
            iv += f" [{_num(s['low'], c.task, True)}, {_num(s['high'], c.task, True)}]"
        text += (
            f" ({s_name} challenger {f(s['challenger'])} vs champion {f(s['champion'])}, "
            f"{order} {iv} {s['units']})"
        )
    return text
