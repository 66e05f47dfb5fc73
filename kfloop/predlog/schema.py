"""The log's Arrow schemas: the prediction schema a dataset spec gives, the feedback schema of its task.

A prediction log file holds the fixed columns (``request_id``, ``row``, ``timestamp``, ``model_version``,
``source`` first, the model's output last) and, between them, one typed nullable column per model feature
of the spec the predicting model was trained on (``float32`` numeric, ``int64`` categorical int and
boolean, ``string`` categorical string). Each feature field carries its kind in its metadata
(``kfloop.kind``) and the schema carries the spec's name and digest (``kfloop.spec_name``,
``kfloop.spec_sha256``), so a reader learns a file's features from the file itself.

The output column per task (:data:`OUTPUT_COLUMNS`): binary ``probability`` float32 (the schema exactly as
before tasks existed, no task metadata); regression ``prediction`` float32 (label units); multiclass
``probabilities`` ``list<float32>`` of K values in the spec's class order. A regression or multiclass schema
names its task in the metadata (``kfloop.task``; multiclass also ``kfloop.classes``, a JSON list). The
feedback ``label`` per task (:func:`feedback_schema`): binary int8 0/1 (:data:`FEEDBACK_SCHEMA`), multiclass
int32 class index, regression float64.
"""

from __future__ import annotations

import json

import pyarrow as pa

from kfloop import layout
from kfloop.contract import OUTPUT_KEYS

PREDICTIONS = layout.PREDICTIONS
FEEDBACK = layout.FEEDBACK
KINDS = layout.LOG_KINDS
SOURCES = ("online", "batch")

#: Metadata keys: a feature field's kind, the spec a prediction schema was built from.
KIND_KEY = b"kfloop.kind"
SPEC_NAME_KEY = b"kfloop.spec_name"
SPEC_DIGEST_KEY = b"kfloop.spec_sha256"
#: Metadata keys of a regression / multiclass schema: its task and (multiclass) its classes (JSON list).
TASK_KEY = b"kfloop.task"
CLASSES_KEY = b"kfloop.classes"

#: The tasks, and the prediction log's output column of each (the model contract's output keys).
TASKS = ("binary", "regression", "multiclass")
OUTPUT_COLUMNS = OUTPUT_KEYS

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
#: The output field (the last column) of a prediction schema per task.
OUTPUT_FIELDS = {
    "binary": PROBABILITY_FIELD,
    "regression": pa.field("prediction", pa.float32(), nullable=False),
    "multiclass": pa.field("probabilities", pa.list_(pa.float32()), nullable=False),
}
#: Names of the columns that are never features: the head columns and every task's output column (a
#: prediction file has the head columns and exactly one output column).
FIXED_COLUMNS = tuple(f.name for f in HEAD_FIELDS) + tuple(OUTPUT_COLUMNS.values())

#: A prediction schema without features: the fixed columns only (what readers that ignore features need).
BASE_PREDICTION_SCHEMA = pa.schema([*HEAD_FIELDS, PROBABILITY_FIELD])

#: The feedback ``label`` type per task.
LABEL_TYPES = {"binary": pa.int8(), "regression": pa.float64(), "multiclass": pa.int32()}


def _feedback_fields(task: str) -> list[pa.Field]:
    return [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("label", LABEL_TYPES[task], nullable=False),
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("prediction_timestamp", TIMESTAMP_TYPE, nullable=True),
        pa.field("delay_s", pa.float64(), nullable=True),
        # Who sent the label (the feedback token's labeler name; null: unauthenticated or written directly).
        pa.field("labeler", pa.string(), nullable=True),
    ]


#: One row per arrived label of a binary model (``label`` 0/1 int8; :func:`feedback_schema` per task).
FEEDBACK_SCHEMA = pa.schema(_feedback_fields("binary"))
#: Nullable columns added after files were written without them: such a file reads as nulls there.
OPTIONAL_COLUMNS = frozenset({"labeler"})


class LogError(ValueError):
    """A bad argument to a log function (unknown kind, wrong column length); the message names it."""


def task_name(spec_or_task) -> str:
    """The task name of a :class:`kfloop.spec.DatasetSpec`, a ``Task`` or a task name (None: binary).

    Raises:
        LogError: not one of :data:`TASKS`.
    """
    if spec_or_task is None:
        return "binary"
    task = getattr(spec_or_task, "task", spec_or_task)
    name = getattr(task, "value", task)
    if name not in TASKS:
        raise LogError(f"task must be one of {TASKS}, got {name!r}")
    return name


def _task_metadata(task: str, classes) -> dict:
    """Schema metadata naming a non-binary task (binary schemas carry none: they stay as they were)."""
    if task == "binary":
        return {}
    meta = {TASK_KEY: task.encode()}
    if task == "multiclass" and classes is not None:
        meta[CLASSES_KEY] = json.dumps(list(classes)).encode()
    return meta


def schema_task(schema: pa.Schema) -> str:
    """The task a log schema is of: its ``kfloop.task`` metadata (no metadata: binary).

    Raises:
        LogError: the metadata names no task kfloop knows.
    """
    v = (schema.metadata or {}).get(TASK_KEY)
    return task_name(v.decode(errors="replace")) if v is not None else "binary"


def schema_classes(schema: pa.Schema) -> tuple | None:
    """The classes (in order) a multiclass log schema records (``kfloop.classes``); None: not recorded.

    Raises:
        LogError: the metadata is not a JSON list.
    """
    v = (schema.metadata or {}).get(CLASSES_KEY)
    if v is None:
        return None
    try:
        classes = json.loads(v)
    except ValueError:
        classes = None
    if not isinstance(classes, list) or not classes:
        raise LogError(f"schema metadata {CLASSES_KEY.decode()} is not a JSON list of classes: {v[:80]!r}")
    return tuple(classes)


def output_column(spec_or_schema) -> str:
    """The output column name of a spec's (or a prediction schema's, or a task's) task."""
    if isinstance(spec_or_schema, pa.Schema):
        return OUTPUT_COLUMNS[prediction_task(spec_or_schema)]
    return OUTPUT_COLUMNS[task_name(spec_or_schema)]


def feedback_schema(spec_or_task=None) -> pa.Schema:
    """The feedback log schema of a spec's task (or a ``Task`` / task name; None: binary).

    Binary is :data:`FEEDBACK_SCHEMA` (``label`` int8 0/1, no metadata); multiclass ``label`` int32 (the
    class index in ``spec.classes`` order; the classes in the metadata when a spec is given); regression
    ``label`` float64. A non-binary schema names its task in the metadata (``kfloop.task``).
    """
    task = task_name(spec_or_task)
    if task == "binary":
        return FEEDBACK_SCHEMA
    classes = getattr(spec_or_task, "classes", None) if task == "multiclass" else None
    return pa.schema(_feedback_fields(task), metadata=_task_metadata(task, classes))


def as_feedback_schema(spec_or_schema=None) -> pa.Schema:
    """The feedback schema of a spec / task, or of a given schema's ``kfloop.task`` metadata (its classes
    kept); None: :data:`FEEDBACK_SCHEMA`."""
    if isinstance(spec_or_schema, pa.Schema):
        task = schema_task(spec_or_schema)
        if task == "binary":
            return FEEDBACK_SCHEMA
        return pa.schema(
            _feedback_fields(task), metadata=_task_metadata(task, schema_classes(spec_or_schema))
        )
    return feedback_schema(spec_or_schema)


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
    feature in model order, the task's output column (:data:`OUTPUT_FIELDS`); the spec's name and digest
    in the schema metadata (regression / multiclass: also the task, and multiclass its classes).

    Raises:
        LogError: a model feature has the name of a fixed column (names the ``columns[i].name``).
    """
    for i, f in enumerate(spec.model_features):
        if f.name in FIXED_COLUMNS:
            raise LogError(
                f"columns[{i}].name: {f.name!r} is a column of the prediction log itself "
                f"({', '.join(FIXED_COLUMNS)}); rename the feature"
            )
    task = task_name(spec)
    meta = {SPEC_NAME_KEY: spec.name.encode(), SPEC_DIGEST_KEY: spec.digest().encode()}
    meta.update(_task_metadata(task, getattr(spec, "classes", None)))
    return pa.schema(
        [*HEAD_FIELDS, *(feature_field(f) for f in spec.model_features), OUTPUT_FIELDS[task]], metadata=meta
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


def prediction_task(schema: pa.Schema) -> str:
    """The task of a prediction schema: the one output column it has (exactly one of
    :data:`OUTPUT_COLUMNS`), which must agree with its ``kfloop.task`` metadata when it has some.

    Raises:
        LogError: no output column, more than one, or one that contradicts the ``kfloop.task`` metadata.
    """
    present = [t for t, c in OUTPUT_COLUMNS.items() if c in schema.names]
    if not present:
        raise LogError(
            f"no output column: a prediction schema has one of {', '.join(OUTPUT_COLUMNS.values())}"
        )
    if len(present) > 1:
        cols = ", ".join(repr(OUTPUT_COLUMNS[t]) for t in present)
        raise LogError(f"output columns {cols}: a prediction schema has exactly one (one task)")
    task = present[0]
    if TASK_KEY in (schema.metadata or {}) and schema_task(schema) != task:
        raise LogError(
            f"column {OUTPUT_COLUMNS[task]!r} is the output of task {task}, but the schema's "
            f"{TASK_KEY.decode()} is {schema_task(schema)} (output {OUTPUT_COLUMNS[schema_task(schema)]!r})"
        )
    return task


def _check_output_type(field: pa.Field, task: str) -> None:
    t = field.type
    if task == "multiclass":
        ok = (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
            pa.types.is_floating(t.value_type)
        )
        want = "a list of floats (one probability per class)"
    else:
        ok = pa.types.is_floating(t)
        want = "a float"
    if not ok:
        raise LogError(f"column {field.name!r} has type {t}: the {task} output is {want}")


def normalize_prediction_schema(schema: pa.Schema) -> pa.Schema:
    """A prediction schema in the log's plain types: the fixed columns as :func:`prediction_schema` has
    them (head first, the task's output column last: :data:`OUTPUT_FIELDS`), every other column a nullable
    feature column (float32, int64 or string; its kind metadata kept). Metadata of the schema is kept.

    Raises:
        LogError: a fixed column is missing or of another kind of type, no output column or more than one
            (or one that contradicts the ``kfloop.task`` metadata), or a feature column is neither a number
            nor a string (names the column).
    """
    names = schema.names
    for fixed in HEAD_FIELDS:
        if fixed.name not in names:
            raise LogError(f"column {fixed.name!r} missing")
    task = prediction_task(schema)
    out_field = OUTPUT_FIELDS[task]
    _check_output_type(schema.field(out_field.name), task)
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
    return pa.schema([*HEAD_FIELDS, *feats, out_field], metadata=schema.metadata)


def schema_for(kind: str, schema: pa.Schema | None = None) -> pa.Schema:
    """The schema of a kind: feedback's of ``schema``'s task (:func:`as_feedback_schema`; None: binary);
    for predictions ``schema`` normalized (None: the binary base)."""
    check_kind(kind)
    if kind == FEEDBACK:
        return as_feedback_schema(schema)
    return BASE_PREDICTION_SCHEMA if schema is None else normalize_prediction_schema(schema)
