"""The log's Arrow schemas: the prediction schema a dataset spec gives, the fixed feedback schema.

A prediction log file holds the fixed columns (``request_id``, ``row``, ``timestamp``, ``model_version``,
``source`` first, ``probability`` last) and, between them, one typed nullable column per model feature of
the spec the predicting model was trained on (``float32`` numeric, ``int64`` categorical int and boolean,
``string`` categorical string). Each feature field carries its kind in its metadata (``kfloop.kind``) and
the schema carries the spec's name and digest (``kfloop.spec_name``, ``kfloop.spec_sha256``), so a reader
learns a file's features from the file itself.
"""

from __future__ import annotations

import pyarrow as pa

from kfloop import layout

PREDICTIONS = layout.PREDICTIONS
FEEDBACK = layout.FEEDBACK
KINDS = layout.LOG_KINDS
SOURCES = ("online", "batch")

#: Metadata keys: a feature field's kind, the spec a prediction schema was built from.
KIND_KEY = b"kfloop.kind"
SPEC_NAME_KEY = b"kfloop.spec_name"
SPEC_DIGEST_KEY = b"kfloop.spec_sha256"

TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
#: Arrow type of a feature column, by the feature's dtype (:attr:`kfloop.spec.Feature.dtype`).
ARROW_TYPES = {"float32": pa.float32(), "int64": pa.int64(), "string": pa.string()}

#: The columns before the features, and the one after them.
HEAD_FIELDS = (
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("row", pa.int32(), nullable=False),
    pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
)
PROBABILITY_FIELD = pa.field("probability", pa.float32(), nullable=False)
#: Names of the columns every prediction file has whatever its spec.
FIXED_COLUMNS = tuple(f.name for f in HEAD_FIELDS) + (PROBABILITY_FIELD.name,)

#: A prediction schema without features: the fixed columns only (what readers that ignore features need).
BASE_PREDICTION_SCHEMA = pa.schema([*HEAD_FIELDS, PROBABILITY_FIELD])

#: One row per arrived label.
FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("prediction_timestamp", TIMESTAMP_TYPE, nullable=True),
        pa.field("delay_s", pa.float64(), nullable=True),
        # Who sent the label (the feedback token's labeler name; null: unauthenticated or written directly).
        pa.field("labeler", pa.string(), nullable=True),
    ]
)
#: Nullable columns added after files were written without them: such a file reads as nulls there.
OPTIONAL_COLUMNS = frozenset({"labeler"})


class LogError(ValueError):
    """A bad argument to a log function (unknown kind, wrong column length); the message names it."""


def check_kind(kind: str) -> str:
    """``kind`` if it is a log kind (``predictions`` / ``feedback``), else :class:`LogError`."""
    if kind not in KINDS:
        raise LogError(f"log kind must be one of {KINDS}, got {kind!r}")
    return kind


def feature_field(f) -> pa.Field:
    """The log column of one :class:`kfloop.spec.Feature` (typed, nullable, its kind in the metadata)."""
    return pa.field(f.name, ARROW_TYPES[f.dtype], nullable=True, metadata={KIND_KEY: f.kind.value.encode()})


def prediction_schema(spec) -> pa.Schema:
    """The prediction log schema of a :class:`kfloop.spec.DatasetSpec`: fixed columns, one column per model
    feature in model order, ``probability``; the spec's name and digest in the schema metadata.

    Raises:
        LogError: a model feature has the name of a fixed column (names the ``columns[i].name``).
    """
    for i, f in enumerate(spec.model_features):
        if f.name in FIXED_COLUMNS:
            raise LogError(
                f"columns[{i}].name: {f.name!r} is a column of the prediction log itself "
                f"({', '.join(FIXED_COLUMNS)}); rename the feature"
            )
    return pa.schema(
        [*HEAD_FIELDS, *(feature_field(f) for f in spec.model_features), PROBABILITY_FIELD],
        metadata={SPEC_NAME_KEY: spec.name.encode(), SPEC_DIGEST_KEY: spec.digest().encode()},
    )


def as_prediction_schema(spec_or_schema) -> pa.Schema:
    """A prediction schema from a spec, or a given schema checked (:func:`normalize_prediction_schema`)."""
    if isinstance(spec_or_schema, pa.Schema):
        return normalize_prediction_schema(spec_or_schema)
    if hasattr(spec_or_schema, "model_features"):
        return prediction_schema(spec_or_schema)
    raise LogError(f"expected a DatasetSpec or a pyarrow schema, got {type(spec_or_schema).__name__}")


def feature_fields(schema: pa.Schema) -> list[pa.Field]:
    """The feature columns of a prediction schema (every column that is not a fixed one), in order."""
    return [f for f in schema if f.name not in FIXED_COLUMNS]


def feature_names(schema: pa.Schema) -> tuple[str, ...]:
    """Names of the feature columns of a prediction schema."""
    return tuple(f.name for f in feature_fields(schema))


def spec_digest(schema: pa.Schema) -> str | None:
    """The digest of the spec a prediction schema was built from (None: not recorded)."""
    meta = schema.metadata or {}
    v = meta.get(SPEC_DIGEST_KEY)
    return v.decode() if v is not None else None


#: The plain log type of each feature kind (a field's ``kfloop.kind`` metadata).
_KIND_TYPES = {
    "numeric": pa.float32(),
    "categorical_int": pa.int64(),
    "boolean": pa.int64(),
    "categorical_string": pa.string(),
}


def _plain_feature_type(name: str, t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_floating(t):
        return pa.float32()
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return pa.int64()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
        return pa.string()
    raise LogError(f"column {name!r} has type {t}: a feature column is a number or a string")


def normalize_prediction_schema(schema: pa.Schema) -> pa.Schema:
    """A prediction schema in the log's plain types: the fixed columns as :data:`BASE_PREDICTION_SCHEMA`
    has them (head first, ``probability`` last), every other column a nullable feature column (float32,
    int64 or string; its kind metadata kept). Metadata of the schema is kept.

    Raises:
        LogError: a fixed column is missing or of another kind of type, or a feature column is neither a
            number nor a string (names the column).
    """
    names = schema.names
    for fixed in [*HEAD_FIELDS, PROBABILITY_FIELD]:
        if fixed.name not in names:
            raise LogError(f"column {fixed.name!r} missing")
    feats = []
    for f in schema:
        if f.name in FIXED_COLUMNS:
            continue
        kind = (f.metadata or {}).get(KIND_KEY)
        want = _KIND_TYPES.get(kind.decode() if kind is not None else None)
        if want is not None and _plain_feature_type(f.name, f.type) != want:
            raise LogError(f"column {f.name!r} has type {f.type}, its kind {kind.decode()} needs {want}")
        feats.append(
            pa.field(f.name, _plain_feature_type(f.name, f.type), nullable=True, metadata=f.metadata)
        )
    return pa.schema([*HEAD_FIELDS, *feats, PROBABILITY_FIELD], metadata=schema.metadata)


def schema_for(kind: str, schema: pa.Schema | None = None) -> pa.Schema:
    """The schema of a kind: feedback's fixed one; for predictions ``schema`` normalized (None: the base)."""
    check_kind(kind)
    if kind == FEEDBACK:
        return FEEDBACK_SCHEMA
    return BASE_PREDICTION_SCHEMA if schema is None else normalize_prediction_schema(schema)
