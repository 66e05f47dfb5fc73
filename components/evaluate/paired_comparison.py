"""The paired comparison on the eval rows: both models' scores of the same tf.Examples, DeLong interval."""

from __future__ import annotations

import dataclasses

from kfloop import contract
from kfloop.config import EvaluationConfig


def predict_examples(model_dir: str, examples: list[bytes], batch_rows: int = 4096):
    """The probability of a SavedModel's tf.Example signature for serialized tf.Examples (float64 array)."""
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures[contract.EXAMPLES_SIGNATURE]
    out = []
    for lo in range(0, len(examples), batch_rows):
        batch = tf.constant(examples[lo : lo + batch_rows])
        probs = fn(**{contract.EXAMPLES_INPUT: batch})[contract.OUTPUT_KEY]
        out.append(np.asarray(probs, dtype=np.float64).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def paired_overall(labels, challenger, champion, config: EvaluationConfig) -> dict:
    """The paired comparison of challenger and champion on the same eval rows, and its verdict.

    Eval rows are fixed (no more will come), so the comparison is judged without the collection limit:
    ``undecided`` stays ``undecided`` (:func:`components.evaluate.policy.decide` lets it pass to the canary, and says so).
    """
    from kfloop import config as kconfig
    from kfloop import paired

    cmp_cfg = dataclasses.replace(kconfig.ComparisonConfig(), margin=config.max_auc_regression)
    c = paired.compare(labels, challenger, champion, cfg=cmp_cfg)
    verdict, message = paired.verdict(c, cmp_cfg)
    return {
        "comparison": c.to_dict(),
        "verdict": verdict,
        "message": message,
        "config": dataclasses.asdict(cmp_cfg),
    }
