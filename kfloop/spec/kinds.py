"""Column kinds and the :class:`Feature` a dataset spec derives for every column (no pydantic here)."""

from __future__ import annotations

import dataclasses
import enum
import math


class Kind(str, enum.Enum):
    """How a column is interpreted (``timestamp``, ``label`` and ``target`` are kfloop's own, never a column kind).

    ``label`` is a class label (binary 0/1, or a multiclass class index); ``target`` is a regression label
    (a number in the label's own units).
    """

    NUMERIC = "numeric"
    CATEGORICAL_INT = "categorical_int"
    CATEGORICAL_STR = "categorical_string"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    LABEL = "label"
    TARGET = "target"

    @classmethod
    def _missing_(cls, value):
        return cls.CATEGORICAL_STR if value == "categorical_str" else None


#: Kinds a spec's ``columns[].kind`` may name.
COLUMN_KINDS = (Kind.NUMERIC, Kind.CATEGORICAL_INT, Kind.CATEGORICAL_STR, Kind.BOOLEAN)


class Task(str, enum.Enum):
    """What the model predicts (the spec's ``task``).

    * ``binary``: the probability of the positive class (``label.positive`` or ``label.derive``).
    * ``regression``: a number in the label's units (``label.column`` holds numbers).
    * ``multiclass``: one probability per class of ``label.classes``, in that order.
    """

    BINARY = "binary"
    REGRESSION = "regression"
    MULTICLASS = "multiclass"


class TimeFormat(str, enum.Enum):
    """How the raw time column is written."""

    EPOCH_SECONDS = "epoch_seconds"
    EPOCH_MILLIS = "epoch_millis"
    ISO8601 = "iso8601"


class DriftMode(str, enum.Enum):
    """What drift of a column does: trigger retraining, only be recorded, or not be checked."""

    TRIGGER = "trigger"
    RECORD = "record"
    OFF = "off"


_DTYPE = {
    Kind.NUMERIC: "float32",
    Kind.CATEGORICAL_INT: "int64",
    Kind.CATEGORICAL_STR: "string",
    Kind.BOOLEAN: "int64",
    Kind.TIMESTAMP: "int64",
    Kind.LABEL: "int64",
    Kind.TARGET: "float32",
}
_MISSING = {
    Kind.NUMERIC: math.nan,
    Kind.CATEGORICAL_INT: -1,
    Kind.CATEGORICAL_STR: "",
    Kind.BOOLEAN: -1,
    Kind.TIMESTAMP: -1,
    Kind.LABEL: -1,
    Kind.TARGET: math.nan,
}


@dataclasses.dataclass(frozen=True)
class Feature:
    """One column of a dataset (a model input, the event time or the label).

    Attributes:
        name: Column name, as in the CSV and in every tensor / tf.Example key.
        kind: How the column is interpreted.
        nullable: Whether a missing value is legitimate.
        description: One line for humans.
        range: Inclusive ``(min, max)`` of the values; either end may be ``None`` (open). None: no range.
        domain: The known values (categorical ints / strings). None: not declared.
        min_domain_mass: Smallest share of values that must fall inside the domain (categorical strings).
        drift_threshold: Drift score above which the column has drifted.
        drift_mode: ``trigger`` / ``record`` / ``off`` (see :class:`DriftMode`).
    """

    name: str
    kind: Kind
    nullable: bool
    description: str
    range: tuple[float | None, float | None] | None = None
    domain: tuple | None = None
    min_domain_mass: float | None = None
    drift_threshold: float = 0.3
    drift_mode: str = "trigger"

    @property
    def dtype(self) -> str:
        """The TensorFlow / KServe-v2 dtype name of the encoded column."""
        return _DTYPE[self.kind]

    @property
    def v2_datatype(self) -> str:
        """The Open Inference Protocol datatype for this feature."""
        return {"float32": "FP32", "int64": "INT64", "string": "BYTES"}[self.dtype]

    @property
    def missing(self) -> float | int | str:
        """The sentinel that encodes a missing value (NaN, -1 or ``""``)."""
        return _MISSING[self.kind]
