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
    slices: list[SliceRow], config: EvaluationConfig, has_champion: bool, paired: dict | None = None
) -> list[dict]:
    """Applies the thresholds to per-slice metrics; returns the reasons (blessed = all passed).

    ``paired``: the paired comparison of the overall slice (:func:`paired_overall`); when given, it decides
    the overall change threshold (and its reason carries ``interval`` and ``verdict``).

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

    # Value threshold: always.
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
                "auc",
                OVERALL,
                None,
                ch_auc,
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
        rec = _reason(
            "auc",
            OVERALL,
            -config.max_auc_regression,
            paired["comparison"]["challenger"],
            paired["comparison"]["champion"],
            ok,
            f"paired comparison, {paired['message']} ({note})",
            "change",
        )
        rec.update(interval=paired["comparison"], verdict=paired["verdict"], comparison="evaluate")
        reasons.append(rec)
    else:
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
