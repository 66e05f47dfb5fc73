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
    """The task's output of an exported model's raw signature on a Dataset-form frame (float64 numpy):
    binary probabilities [n]; regression predictions [n]; multiclass probabilities [n, K]."""
    import numpy as np
    import tensorflow as tf

    from kfloop import contract

    fn = tf.saved_model.load(model_dir).signatures[contract.RAW_SIGNATURE]
    key = contract.output_key(spec)
    multiclass = contract.task_of(spec) == "multiclass"
    enc = contract.encode_inputs(frame, spec)
    dtypes = contract.input_specs(spec)
    out = []
    for lo in range(0, len(frame), 8192):
        batch = {k: tf.constant(v[lo : lo + 8192], dtype=getattr(tf, dtypes[k])) for k, v in enc.items()}
        got = np.asarray(fn(**batch)[key], dtype=np.float64)
        out.append(got.reshape(-1, spec.n_classes) if multiclass else got.reshape(-1))
    if out:
        return np.concatenate(out)
    return np.zeros((0, spec.n_classes) if multiclass else 0)


def metrics_of(labels, outputs, task="binary") -> dict:
    """The trainer's eval metrics of a model's outputs against Dataset-form labels, per task.

    * binary (probabilities, 0/1 labels): ``auc``, ``loss`` (log loss), ``accuracy`` at 0.5.
    * regression (predictions, numbers): ``rmse``, ``mae``, ``r2`` (in the label's units; r2 NaN for a
      constant label).
    * multiclass (probabilities [n, K], class indices): ``accuracy`` (of the most probable class),
      ``log_loss`` (and ``loss``, the same: the multiclass cross-entropy).
    """
    import numpy as np

    from kfloop import paired

    task = getattr(task, "value", task)
    nan = float("nan")
    if task == "regression":
        y = np.asarray(labels, dtype=np.float64)
        pred = np.asarray(outputs, dtype=np.float64).reshape(-1)
        if not y.size:
            return {"rmse": nan, "mae": nan, "r2": nan}
        err = pred - y
        var = float(y.var())
        mse = float(np.mean(err**2))
        return {
            "rmse": float(np.sqrt(mse)),
            "mae": float(np.mean(np.abs(err))),
            "r2": 1.0 - mse / var if var > 0 else nan,
        }
    if task == "multiclass":
        y = np.asarray(labels, dtype=np.int64)
        p = np.asarray(outputs, dtype=np.float64)
        if not y.size:
            return {"accuracy": nan, "log_loss": nan, "loss": nan}
        picked = np.clip(p[np.arange(y.size), y], 1e-7, 1.0)
        log_loss = float(-np.mean(np.log(picked)))
        return {"accuracy": float(np.mean(p.argmax(axis=1) == y)), "log_loss": log_loss, "loss": log_loss}
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(outputs, dtype=np.float64), 1e-7, 1 - 1e-7)
    auc = paired.auc(y, p)
    return {
        "auc": nan if auc is None else auc,
        "loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if y.size else nan,
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))) if y.size else nan,
    }
