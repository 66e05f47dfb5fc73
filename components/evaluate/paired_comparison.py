"""The rows both models scored: their outputs on the eval tf.Examples, the paired comparison, and the
metrics our code computes from the rows (the task's ``eval_metrics``, regression R² per slice)."""

from __future__ import annotations

import dataclasses

from kfloop import contract
from kfloop.config import EvaluationConfig


def predict_examples(
    model_dir: str, examples: list[bytes], output_key: str = contract.OUTPUT_KEY, batch_rows: int = 4096
):
    """A SavedModel's tf.Example signature on serialized tf.Examples: its ``output_key`` output (float64).

    Returns:
        Binary probabilities / regression predictions ``[n]``; multiclass probabilities ``[n, K]``.
    """
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures[contract.EXAMPLES_SIGNATURE]
    out = []
    for lo in range(0, len(examples), batch_rows):
        batch = tf.constant(examples[lo : lo + batch_rows])
        values = np.asarray(fn(**{contract.EXAMPLES_INPUT: batch})[output_key], dtype=np.float64)
        out.append(values if values.ndim == 2 else values.reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def comparison_config(config: EvaluationConfig):
    """The :class:`kfloop.config.ComparisonConfig` of the evaluation: the defaults, with the binary margin
    ``max_auc_regression`` (the regression and multiclass margins are its ``regression_margin`` and
    ``multiclass_margin``, see :meth:`~kfloop.config.ComparisonConfig.margin_for`)."""
    from kfloop import config as kconfig

    return dataclasses.replace(kconfig.ComparisonConfig(), margin=config.max_auc_regression)


def paired_overall(labels, challenger, champion, config: EvaluationConfig, task: str = "binary") -> dict:
    """The paired comparison of challenger and champion on the same eval rows, and its verdict.

    ``task``: binary (DeLong interval of the AUC change), regression (paired t interval of the MSE change,
    secondary MAE), multiclass (of the log loss change, secondary accuracy); :func:`kfloop.paired.compare`
    orients the difference so that > 0 means the challenger is better.

    Eval rows are fixed (no more will come), so the comparison is judged without the collection limit:
    ``undecided`` stays ``undecided`` (:func:`components.evaluate.policy.decide` lets it pass to the canary,
    and says so).
    """
    from kfloop import paired

    cmp_cfg = comparison_config(config)
    c = paired.compare(labels, challenger, champion, task=task, cfg=cmp_cfg)
    verdict, message = paired.verdict(c, cmp_cfg)
    margin = None
    if c.champion is not None:
        margin = cmp_cfg.margin_for(task, c.champion)
    return {
        "comparison": c.to_dict(),
        "verdict": verdict,
        "message": message,
        "margin": margin,
        "config": dataclasses.asdict(cmp_cfg),
    }


def slice_members(examples: list[bytes], slicing: list[tuple[str, ...]]) -> dict[tuple, list[int]]:
    """Which rows fall in which slice, read from the tf.Examples as TFMA slices them.

    Returns:
        ``{(("col", "value"), ...): [row indices]}`` per slice value (columns sorted); a row missing a
        slice's feature is in no slice of it (as in TFMA).
    """
    import tensorflow as tf

    parsed = [tf.train.Example.FromString(e).features.feature for e in examples]
    out: dict[tuple, list[int]] = {}
    for keys in slicing:
        for i, fmap in enumerate(parsed):
            parts = []
            for k in keys:
                f = fmap.get(k)
                kind = f.WhichOneof("kind") if f is not None else None
                values = list(getattr(f, kind).value) if kind else []
                if len(values) != 1:
                    break
                v = values[0]
                parts.append((k, v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)))
            else:
                out.setdefault(tuple(sorted(parts)), []).append(i)
    return out


def row_key(feature: str | None, value: str | None) -> tuple:
    """The :func:`slice_members` key of a TFMA slice row (``feature`` "a, b", ``value`` "x, y")."""
    if feature is None:
        return ()
    return tuple(sorted(zip(feature.split(", "), (value or "").split(", "), strict=False)))


def add_r2(slices, members: dict, labels, challenger, champion=None) -> None:
    """Adds ``r2`` (:func:`kfloop.metrics.task_metrics`) to each regression slice row, from the scored rows
    of that slice (TFMA has no regression R²): the overall row from all rows."""
    import numpy as np

    from kfloop import metrics as km

    for s in slices:
        idx = (
            np.arange(len(labels))
            if s.feature is None
            else np.asarray(members.get(row_key(s.feature, s.value), []))
        )
        for target, outputs in ((s.challenger, challenger), (s.champion, champion)):
            if target is None or outputs is None:
                continue
            target["r2"] = (
                km.task_metrics("regression", labels[idx], outputs[idx])["r2"] if idx.size else None
            )
