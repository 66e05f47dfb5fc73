"""The blessing policy: thresholds applied to per-slice metrics and the paired comparison, as reasons.

Every check becomes a reason naming metric, slice, threshold, challenger value and champion value.
"""

from __future__ import annotations

import math

from components.evaluate.result import OVERALL, EvaluationError, SliceRow, _fmt, _sub
from kfloop.config import EvaluationConfig


def _reason(metric, slice_, threshold, challenger, champion, passed, message, kind, judged=True) -> dict:
    return {
        "metric": metric,
        "slice": slice_,
        "threshold": threshold,
        "challenger": challenger,
        "champion": champion,
        "passed": bool(passed),
        "message": message,
        "kind": kind,
        "judged": judged,
    }


def _finite(v) -> bool:
    return v is not None and not math.isnan(v)


def decide(
    slices: list[SliceRow],
    config: EvaluationConfig,
    has_champion: bool,
    paired: dict | None = None,
    *,
    task: str = "binary",
    eval_metrics: dict | None = None,
    prior: dict | None = None,
) -> list[dict]:
    """Applies the thresholds to per-slice metrics; returns the reasons (blessed = all passed).

    ``paired``: the paired comparison of the overall slice (:func:`paired_overall`); when given, it decides
    the overall change threshold (and its reason carries ``interval`` and ``verdict``).

    Per ``task``:

    * binary: value floor ``auc_floor`` on TFMA's overall AUC; change: the paired AUC interval (or the
      point estimates); slices: AUC loss at most ``max_slice_auc_regression``.
    * regression: value floor ``min_r2`` on ``eval_metrics["r2"]``; change: the paired MSE interval
      (margin ``regression_margin`` x the champion's MSE); slices: RMSE at most ``max_slice_rmse_increase``
      (relative) above the champion's.
    * multiclass: value floor: ``eval_metrics["log_loss"]`` at most ``max_log_loss_ratio`` x
      ``prior["log_loss"]`` (the log loss of predicting the class frequencies, ``prior["source"]`` says
      whose); change: the paired log-loss interval (margin ``multiclass_margin`` nats); slices: accuracy
      at most ``max_slice_accuracy_drop`` below the champion's.

    Each reason has ``metric``, ``slice``, ``threshold``, ``challenger``, ``champion``, ``passed``,
    ``message``, plus ``kind`` (``value`` | ``change`` | ``no_champion``) and ``judged`` (False for a
    slice reported but not judged: too few examples or a single class).
    """
    reasons: list[dict] = []
    overall = next((s for s in slices if s.slice == OVERALL), None)
    if overall is None:
        raise EvaluationError("TFMA produced no overall slice (no eval examples?)")
    ch_auc = overall.challenger.get("auc")
    champ_auc = overall.champion.get("auc") if overall.champion is not None else None
    primary = {"binary": "auc", "regression": "r2", "multiclass": "log_loss"}[task]

    # Value threshold: always.
    if task == "binary":
        ok = _finite(ch_auc) and ch_auc >= config.auc_floor
        reasons.append(
            _reason(
                "auc",
                OVERALL,
                config.auc_floor,
                ch_auc,
                champ_auc,
                ok,
                f"challenger AUC {_fmt(ch_auc)} {'>=' if ok else '<'} floor {config.auc_floor} "
                f"({'passed' if ok else 'failed'}; value threshold on {overall.examples} examples)",
                "value",
            )
        )
    elif task == "regression":
        r2 = (eval_metrics or {}).get("r2")
        champ_r2 = overall.champion.get("r2") if overall.champion is not None else None
        ok = _finite(r2) and r2 >= config.min_r2
        reasons.append(
            _reason(
                "r2",
                OVERALL,
                config.min_r2,
                r2,
                champ_r2,
                ok,
                f"challenger R² {_fmt(r2)} (unitless) {'>=' if ok else '<'} floor min_r2 {config.min_r2} "
                f"({'passed' if ok else 'failed'}; value threshold on {overall.examples} examples"
                f"{'' if _finite(r2) else '; R² undefined: the label is constant'})",
                "value",
            )
        )
    else:
        ll = (eval_metrics or {}).get("log_loss")
        champ_ll = overall.champion.get("log_loss") if overall.champion is not None else None
        base = (prior or {}).get("log_loss")
        ceiling = config.max_log_loss_ratio * base if _finite(base) else None
        ok = _finite(ll) and ceiling is not None and ll <= ceiling
        whose = {"training": "the training class frequencies", "eval": "the eval rows' class frequencies"}
        reasons.append(
            _reason(
                "log_loss",
                OVERALL,
                ceiling,
                ll,
                champ_ll,
                ok,
                f"challenger log loss {_fmt(ll)} nats {'<=' if ok else '>'} ceiling max_log_loss_ratio "
                f"{config.max_log_loss_ratio} x {_fmt(base)} nats (predicting "
                f"{whose.get((prior or {}).get('source'), 'the class frequencies')}) = {_fmt(ceiling)} "
                f"({'passed' if ok else 'failed'}; value threshold on {overall.examples} examples)",
                "value",
            )
        )
    if overall.examples < config.min_slice_examples:
        reasons.append(
            _reason(
                "example_count",
                OVERALL,
                config.min_slice_examples,
                overall.examples,
                overall.champion.get("example_count") if overall.champion else None,
                False,
                f"only {overall.examples} eval examples overall (< min_slice_examples "
                f"{config.min_slice_examples}): too few to bless any model",
                "value",
            )
        )

    if not has_champion:
        reasons.append(
            _reason(
                primary,
                OVERALL,
                None,
                reasons[0]["challenger"],
                None,
                True,
                "no champion in the model store: only value thresholds apply (first model); "
                "change thresholds and per-slice comparisons were not applied",
                "no_champion",
                judged=False,
            )
        )
        return reasons

    # Change threshold, overall: the paired interval when we have it, else the point estimates.
    if paired is not None:
        ok = paired["verdict"] != "worse"
        note = {
            "better": "passed",
            "non_inferior": "passed",
            "worse": "failed",
            "undecided": "passed as undecided: the canary decides on live traffic",
        }[paired["verdict"]]
        margin = paired.get("margin")
        rec = _reason(
            paired["comparison"].get("metric", "auc"),
            OVERALL,
            -config.max_auc_regression if task == "binary" or margin is None else -margin,
            paired["comparison"]["challenger"],
            paired["comparison"]["champion"],
            ok,
            f"paired comparison, {paired['message']} ({note})",
            "change",
        )
        rec.update(interval=paired["comparison"], verdict=paired["verdict"], comparison="evaluate")
        reasons.append(rec)
    elif task == "binary":
        diff = _sub(ch_auc, champ_auc)
        ok = _finite(diff) and diff >= -config.max_auc_regression
        reasons.append(
            _reason(
                "auc",
                OVERALL,
                -config.max_auc_regression,
                ch_auc,
                champ_auc,
                ok,
                f"challenger AUC {_fmt(ch_auc)} vs champion AUC {_fmt(champ_auc)}: change {_fmt(diff)} "
                f"{'>=' if ok else '<'} -{config.max_auc_regression} allowed ({'passed' if ok else 'failed'})",
                "change",
            )
        )

    # Change threshold per slice, only where the slice is large enough to judge.
    if task != "binary":
        reasons.extend(_slice_reasons(slices, config, task))
        return reasons
    for s in slices:
        if s.slice == OVERALL:
            continue
        a, b = s.challenger.get("auc"), (s.champion or {}).get("auc")
        n, pos = s.examples, s.positives
        if n < config.min_slice_examples:
            why = f"only {n} examples (< min_slice_examples {config.min_slice_examples})"
        elif pos == 0 or pos == n:
            why = f"{n} examples but a single class ({pos} positives): AUC is undefined"
        elif not (_finite(a) and _finite(b)):
            why = "AUC is not finite"
        else:
            why = None
        if why:
            reasons.append(
                _reason(
                    "auc",
                    s.slice,
                    -config.max_slice_auc_regression,
                    a,
                    b,
                    True,
                    f"not judged: {why}; reported, not a veto",
                    "change",
                    judged=False,
                )
            )
            continue
        d = a - b
        ok = d >= -config.max_slice_auc_regression
        reasons.append(
            _reason(
                "auc",
                s.slice,
                -config.max_slice_auc_regression,
                a,
                b,
                ok,
                f"challenger AUC {_fmt(a)} vs champion AUC {_fmt(b)} on {n} examples: change {_fmt(d)} "
                f"{'>=' if ok else '<'} -{config.max_slice_auc_regression} allowed "
                f"({'passed' if ok else 'failed'})",
                "change",
            )
        )
    return reasons


def _slice_reasons(slices: list[SliceRow], config: EvaluationConfig, task: str) -> list[dict]:
    """Regression (relative RMSE increase) and multiclass (accuracy drop) per-slice change reasons."""
    out = []
    metric, name = ("rmse", "RMSE") if task == "regression" else ("accuracy", "accuracy")
    for s in slices:
        if s.slice == OVERALL:
            continue
        a, b = s.challenger.get(metric), (s.champion or {}).get(metric)
        n = s.examples
        if task == "regression":
            threshold = config.max_slice_rmse_increase
        else:
            threshold = -config.max_slice_accuracy_drop
        if n < config.min_slice_examples:
            why = f"only {n} examples (< min_slice_examples {config.min_slice_examples})"
        elif not (_finite(a) and _finite(b)):
            why = f"{name} is not finite"
        elif task == "regression" and b <= 0:
            why = "the champion's RMSE is 0: no relative increase"
        else:
            why = None
        if why:
            out.append(
                _reason(
                    metric,
                    s.slice,
                    threshold,
                    a,
                    b,
                    True,
                    f"not judged: {why}; reported, not a veto",
                    "change",
                    judged=False,
                )
            )
            continue
        if task == "regression":
            rel = (a - b) / b
            ok = rel <= config.max_slice_rmse_increase
            msg = (
                f"challenger RMSE {_fmt(a)} vs champion RMSE {_fmt(b)} (label units) on {n} examples: "
                f"increase {rel:+.1%} {'<=' if ok else '>'} {config.max_slice_rmse_increase:.0%} allowed "
                f"(max_slice_rmse_increase; {'passed' if ok else 'failed'})"
            )
        else:
            d = a - b
            ok = d >= -config.max_slice_accuracy_drop
            msg = (
                f"challenger accuracy {_fmt(a)} vs champion accuracy {_fmt(b)} on {n} examples: change "
                f"{d:+.4f} {'>=' if ok else '<'} -{config.max_slice_accuracy_drop} allowed "
                f"(max_slice_accuracy_drop; {'passed' if ok else 'failed'})"
            )
        out.append(_reason(metric, s.slice, threshold, a, b, ok, msg, "change"))
    return out
