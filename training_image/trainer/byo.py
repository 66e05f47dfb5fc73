"""Bring your own model: resolving ``spec.trainer = "package.module:function"`` and running it.

The function's contract is in the package docstring (:mod:`training_image.trainer`).
"""

from __future__ import annotations

import importlib
import inspect

from training_image.trainer.hparams import TrainError

#: The built-in trainer's name in ``spec.trainer``.
KERAS = "keras"


def resolve(trainer: str):
    """The callable that ``spec.trainer`` names (``package.module:function``).

    Raises:
        TrainError: malformed name, module not importable, no such function, or not callable with the
            contract's five arguments.
    """
    module_name, sep, attr = trainer.partition(":")
    if not sep or not module_name or not attr:
        raise TrainError(f"trainer {trainer!r}: expected 'keras' or 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TrainError(f"trainer {trainer!r}: module {module_name!r} does not import ({e})") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise TrainError(f"trainer {trainer!r}: module {module_name!r} has no {attr!r}")
    if not callable(fn):
        raise TrainError(f"trainer {trainer!r}: {attr!r} is not callable")
    try:
        inspect.signature(fn).bind(None, None, None, {}, "")
    except TypeError:
        raise TrainError(
            f"trainer {trainer!r}: must take (train, eval, spec, hyperparameters, output_dir)"
        ) from None
    except ValueError:  # no signature (a builtin): let the call decide
        pass
    return fn


def scores(model_dir: str, frame, spec):
    """Probabilities of an exported model's raw signature on a Dataset-form frame (float64 array)."""
    import numpy as np
    import tensorflow as tf

    from kfloop import contract

    fn = tf.saved_model.load(model_dir).signatures[contract.RAW_SIGNATURE]
    enc = contract.encode_inputs(frame, spec)
    dtypes = contract.input_specs(spec)
    out = []
    for lo in range(0, len(frame), 8192):
        batch = {k: tf.constant(v[lo : lo + 8192], dtype=getattr(tf, dtypes[k])) for k, v in enc.items()}
        out.append(np.asarray(fn(**batch)[contract.OUTPUT_KEY], dtype=np.float64).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def metrics_of(labels, probs) -> dict:
    """AUC, log loss and accuracy at 0.5 of probabilities against 0/1 labels."""
    import numpy as np

    from kfloop import paired

    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    auc = paired.auc(y, p)
    return {
        "auc": float("nan") if auc is None else auc,
        "loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else float("nan"),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))) if y.size else float("nan"),
    }
