"""The one description of the Chicago taxi data that every part of kfloop reads.

Feature facts (names, kinds, dtypes, how a missing value is encoded) live here and nowhere else:
ingest, the TFDV schema, the trainer, the evaluator, the KServe predictor and the monitor all read
them from this module.

Missing values are empty cells in CSV artifacts (so TFDV sees them as missing). In tf.Examples (an
absent key) and serving tensors they are encoded by a sentinel:

* ``NUMERIC`` (float32): NaN. The model imputes it and sees a missing-indicator.
* ``CATEGORICAL_INT`` (int64): ``-1``. The model maps it to the out-of-vocabulary bucket.
* ``CATEGORICAL_STR`` (string): ``""``. The model maps it to the out-of-vocabulary bucket.
"""

from __future__ import annotations

import dataclasses
import enum
import math


class Kind(str, enum.Enum):
    """How a column is interpreted."""

    NUMERIC = "numeric"
    CATEGORICAL_INT = "categorical_int"
    CATEGORICAL_STR = "categorical_str"
    TIMESTAMP = "timestamp"
    LABEL = "label"


@dataclasses.dataclass(frozen=True)
class Feature:
    """One column of the taxi data.

    Attributes:
        name: Column name, as in the CSV and in every tensor / tf.Example key.
        kind: How the column is interpreted.
        nullable: Whether a missing value is legitimate (the raw data has gaps there).
        description: One line for humans (reports, model metadata).
    """

    name: str
    kind: Kind
    nullable: bool
    description: str

    @property
    def dtype(self) -> str:
        """The TensorFlow / KServe-v2 dtype name of the encoded column."""
        return {
            Kind.NUMERIC: "float32",
            Kind.CATEGORICAL_INT: "int64",
            Kind.CATEGORICAL_STR: "string",
            Kind.TIMESTAMP: "int64",
            Kind.LABEL: "int64",
        }[self.kind]

    @property
    def v2_datatype(self) -> str:
        """The Open Inference Protocol datatype for this feature."""
        return {"float32": "FP32", "int64": "INT64", "string": "BYTES"}[self.dtype]

    @property
    def missing(self) -> float | int | str:
        """The sentinel that encodes a missing value."""
        return {
            Kind.NUMERIC: math.nan,
            Kind.CATEGORICAL_INT: -1,
            Kind.CATEGORICAL_STR: "",
            Kind.TIMESTAMP: -1,
            Kind.LABEL: -1,
        }[self.kind]


#: Event time of a trip (seconds since the epoch, UTC). Used to split by time; not a model input.
EVENT_TIME = Feature("trip_start_timestamp", Kind.TIMESTAMP, False, "Trip start, seconds since epoch (UTC)")

#: Raw column the label is derived from. Never a model input (it would leak the label).
TIPS = "tips"

#: The label, as TFX's taxi example defines it: the tip is more than 20% of the fare.
LABEL = Feature("big_tipper", Kind.LABEL, False, "1 when tips > 20% of fare, else 0")

#: Share of the fare above which a tip makes a big tipper.
BIG_TIP_SHARE = 0.2

#: Model inputs, in a fixed order.
MODEL_FEATURES: tuple[Feature, ...] = (
    Feature("trip_miles", Kind.NUMERIC, False, "Trip distance in miles"),
    Feature("fare", Kind.NUMERIC, False, "Fare in USD"),
    Feature("trip_seconds", Kind.NUMERIC, True, "Trip duration in seconds"),
    Feature("pickup_latitude", Kind.NUMERIC, True, "Pickup latitude (census tract centroid)"),
    Feature("pickup_longitude", Kind.NUMERIC, True, "Pickup longitude (census tract centroid)"),
    Feature("dropoff_latitude", Kind.NUMERIC, True, "Dropoff latitude (census tract centroid)"),
    Feature("dropoff_longitude", Kind.NUMERIC, True, "Dropoff longitude (census tract centroid)"),
    Feature("trip_start_hour", Kind.CATEGORICAL_INT, False, "Hour of day the trip started, 0-23"),
    Feature("trip_start_day", Kind.CATEGORICAL_INT, False, "Day of week, 1=Sunday .. 7=Saturday"),
    Feature("trip_start_month", Kind.CATEGORICAL_INT, False, "Month, 1-12"),
    Feature("pickup_census_tract", Kind.CATEGORICAL_INT, True, "Pickup census tract"),
    Feature("dropoff_census_tract", Kind.CATEGORICAL_INT, True, "Dropoff census tract"),
    Feature("pickup_community_area", Kind.CATEGORICAL_INT, True, "Pickup community area, 1-77"),
    Feature("dropoff_community_area", Kind.CATEGORICAL_INT, True, "Dropoff community area, 1-77"),
    Feature("payment_type", Kind.CATEGORICAL_STR, False, "How the trip was paid"),
    Feature("company", Kind.CATEGORICAL_STR, True, "Taxi company"),
)

#: Columns the raw CSV must have.
RAW_COLUMNS: tuple[str, ...] = tuple(f.name for f in MODEL_FEATURES) + (EVENT_TIME.name, TIPS)

#: Columns of every Dataset artifact kfloop writes (train / eval / live), in order.
DATASET_COLUMNS: tuple[str, ...] = (EVENT_TIME.name,) + tuple(f.name for f in MODEL_FEATURES) + (LABEL.name,)

_BY_NAME = {f.name: f for f in MODEL_FEATURES + (EVENT_TIME, LABEL)}


def feature(name: str) -> Feature:
    """Returns the feature called ``name``.

    Raises:
        KeyError: ``name`` is not a known column.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown feature {name!r}") from None


def features_of(kind: Kind) -> tuple[Feature, ...]:
    """Model features of one kind, in model order."""
    return tuple(f for f in MODEL_FEATURES if f.kind == kind)


def spec() -> list[dict]:
    """A JSON-ready description of the model inputs (for metadata files and model metadata)."""
    return [
        {
            "name": f.name,
            "kind": f.kind.value,
            "dtype": f.dtype,
            "nullable": f.nullable,
            "description": f.description,
        }
        for f in MODEL_FEATURES
    ]
