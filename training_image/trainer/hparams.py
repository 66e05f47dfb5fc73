"""The Keras trainer's typed hyperparameters and the trainer's error type."""

from __future__ import annotations

import dataclasses
import math


class TrainError(ValueError):
    """Bad input to the trainer (hyperparameters or data); the message names the field or column."""


#: The losses of each task (the first is the default).
LOSSES = {
    "binary": ("binary_crossentropy",),
    "regression": ("mse", "huber"),
    "multiclass": ("sparse_categorical_crossentropy",),
}
#: Huber's delta when ``loss: huber`` does not give one (standardised label units).
DEFAULT_HUBER_DELTA = 1.0


@dataclasses.dataclass(frozen=True)
class HParams:
    """Typed hyperparameters of the trainer, validated on construction.

    Attributes:
        learning_rate: Adam learning rate, > 0.
        epochs: Maximum number of epochs, >= 1 (early stopping may end sooner).
        batch_size: Rows per (global) batch, >= 1.
        hidden_units: Sizes of the hidden Dense layers, each >= 1 (may be empty: a linear model).
        dropout: Dropout rate after each hidden layer, in [0, 1).
        early_stopping_patience: Epochs without improvement of the task's eval metric before stopping
            (binary: ``val_auc``, max; regression: ``val_rmse``, min; multiclass: ``val_loss``, the log
            loss, min); 0 = no early stop.
        embedding_dim: Categorical vocabularies larger than this are embedded with this many dims,
            smaller ones are one-hot encoded; >= 1.
        min_category_count: A category needs this many training rows to get its own vocabulary entry
            (rarer ones share the out-of-vocabulary bucket); >= 1.
        clip_quantile: Numeric features are clipped to the training [q, 1 - q] quantiles, in [0, 0.5).
        shuffle_buffer: tf.data shuffle buffer (rows), >= 1.
        seed: Seed of weights init, dropout and shuffling.
        mixed_precision: Use ``mixed_float16`` (GPU only; ignored with a log line on CPU).
        loss: The training loss; None = the task's default (:data:`LOSSES`: binary
            ``binary_crossentropy``; regression ``mse`` or ``huber``; multiclass
            ``sparse_categorical_crossentropy``). Checked against the task by :meth:`loss_for`.
        huber_delta: Huber's delta in standardised label units (the regression label is standardised
            with the training split's mean and std), > 0; only with ``loss: huber`` (default 1.0).
    """

    learning_rate: float = 0.003
    epochs: int = 20
    batch_size: int = 256
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    early_stopping_patience: int = 3
    embedding_dim: int = 8
    min_category_count: int = 5
    clip_quantile: float = 0.001
    shuffle_buffer: int = 10_000
    seed: int = 42
    mixed_precision: bool = False
    loss: str | None = None
    huber_delta: float | None = None

    def __post_init__(self):
        def bad(field: str, value, rule: str):
            raise TrainError(f"hyperparameter {field}={value!r}: {rule}")

        def is_num(v) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        if not is_num(self.learning_rate) or not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            bad("learning_rate", self.learning_rate, "must be a finite number > 0")
        for name, lo in (
            ("epochs", 1),
            ("batch_size", 1),
            ("embedding_dim", 1),
            ("min_category_count", 1),
            ("shuffle_buffer", 1),
            ("early_stopping_patience", 0),
            ("seed", 0),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                bad(name, v, f"must be an integer >= {lo}")
        if not isinstance(self.hidden_units, tuple):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        for u in self.hidden_units:
            if not isinstance(u, int) or isinstance(u, bool) or u < 1:
                bad("hidden_units", self.hidden_units, "every layer size must be an integer >= 1")
        if not is_num(self.dropout) or not 0.0 <= self.dropout < 1.0:
            bad("dropout", self.dropout, "must be in [0, 1)")
        if not is_num(self.clip_quantile) or not 0.0 <= self.clip_quantile < 0.5:
            bad("clip_quantile", self.clip_quantile, "must be in [0, 0.5)")
        if not isinstance(self.mixed_precision, bool):
            bad("mixed_precision", self.mixed_precision, "must be true or false")
        known = sorted({x for losses in LOSSES.values() for x in losses})
        if self.loss is not None and self.loss not in known:
            bad("loss", self.loss, f"must be one of {', '.join(known)}")
        if self.huber_delta is not None and (
            not is_num(self.huber_delta) or not math.isfinite(self.huber_delta) or self.huber_delta <= 0
        ):
            bad("huber_delta", self.huber_delta, "must be a finite number > 0")

    def loss_for(self, task) -> str:
        """The loss for a task (``spec.task`` or its value): :attr:`loss`, or the task's default.

        Raises:
            TrainError: the loss is not one of the task's, or ``huber_delta`` is given without
                ``loss: huber``; the message names the key.
        """
        task = getattr(task, "value", task)
        allowed = LOSSES[task]
        loss = self.loss or allowed[0]
        if loss not in allowed:
            raise TrainError(
                f"hyperparameter loss={self.loss!r}: not a loss of task {task} (use: {', '.join(allowed)})"
            )
        if self.huber_delta is not None and loss != "huber":
            raise TrainError(
                f"hyperparameter huber_delta={self.huber_delta!r}: applies to loss huber only (loss is {loss})"
            )
        return loss

    def to_dict(self) -> dict:
        """JSON-ready hyperparameters."""
        d = dataclasses.asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d

    @classmethod
    def from_dict(cls, values: dict) -> HParams:
        """Builds HParams from a dict (unknown keys are refused, naming them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        values = dict(values)
        if "hidden_units" in values:
            values["hidden_units"] = parse_hidden_units(values["hidden_units"])
        return cls(**values)


def parse_hidden_units(value) -> tuple[int, ...]:
    """``"64,32"`` / ``[64, 32]`` / ``""`` -> ``(64, 32)`` / ``(64, 32)`` / ``()``."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise TrainError(f"hyperparameter hidden_units={value!r}: use comma-separated integers") from None
    return tuple(value)
