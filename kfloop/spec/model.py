"""The typed dataset spec: pydantic models of the YAML, and the feature vocabulary derived from them."""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import json
import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from kfloop.spec import values as V
from kfloop.spec._yaml import Located, Problems


class Kind(str, enum.Enum):
    """How a column is interpreted (``timestamp`` and ``label`` are kfloop's own, never a column kind)."""

    NUMERIC = "numeric"
    CATEGORICAL_INT = "categorical_int"
    CATEGORICAL_STR = "categorical_string"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    LABEL = "label"

    @classmethod
    def _missing_(cls, value):
        return cls.CATEGORICAL_STR if value == "categorical_str" else None


#: Kinds a spec's ``columns[].kind`` may name.
COLUMN_KINDS = (Kind.NUMERIC, Kind.CATEGORICAL_INT, Kind.CATEGORICAL_STR, Kind.BOOLEAN)


class Task(str, enum.Enum):
    """What the model predicts."""

    BINARY = "binary"


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
}
_MISSING = {
    Kind.NUMERIC: math.nan,
    Kind.CATEGORICAL_INT: -1,
    Kind.CATEGORICAL_STR: "",
    Kind.BOOLEAN: -1,
    Kind.TIMESTAMP: -1,
    Kind.LABEL: -1,
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


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TRAINER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _column_name(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"a column name must be a string, got {v!r}")
    if not _NAME.match(v):
        raise ValueError(
            f"{v!r} is not a valid column name (letters, digits and _, not starting with a digit)"
        )
    return v


def _threshold(v: Any) -> Any:
    if v is None:
        return v
    if not V.is_number(v) or not 0 < v <= 1:
        raise ValueError(f"threshold must be a number in (0, 1], got {v!r}")
    return float(v)


def _mode(v: Any) -> Any:
    # ``off`` read by a YAML 1.1 loader (yaml.safe_load) is False: accept it as what the author wrote.
    if v is False:
        return "off"
    if v is not None and v not in {m.value for m in DriftMode} and not isinstance(v, DriftMode):
        raise ValueError(f"unknown drift mode {v!r} (expected trigger, record, off)")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DriftOverride(_Strict):
    """A column's own drift settings; what it leaves out comes from ``drift.default``."""

    threshold: float | None = None
    mode: DriftMode | None = None

    _check_threshold = field_validator("threshold", mode="before")(_threshold)
    _check_mode = field_validator("mode", mode="before")(_mode)


class DriftPolicy(_Strict):
    """Drift settings of every column that does not override them."""

    threshold: float = 0.3
    mode: DriftMode = DriftMode.TRIGGER

    _check_threshold = field_validator("threshold", mode="before")(_threshold)
    _check_mode = field_validator("mode", mode="before")(_mode)


class DriftConfig(_Strict):
    """The ``drift`` section."""

    default: DriftPolicy = DriftPolicy()


def _expand_domain(items: list) -> list:
    """Expands ``[a, b, ..., z]`` (an ellipsis between integers) into the whole progression."""
    if "..." not in items:
        return items
    i = items.index("...")
    if items.count("...") > 1 or i < 1 or i == len(items) - 1:
        raise Located((), "'...' may appear once, between two integers (e.g. [0, 1, ..., 23])")
    head, last = items[:i], items[i + 1]
    ends = head[-2:] + [last]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in ends):
        raise Located((), "'...' may only stand between integers (e.g. [0, 1, ..., 23])")
    start = head[-1]
    step = head[-1] - head[-2] if len(head) >= 2 else (1 if last >= start else -1)
    if step == 0 or (last - start) % step or (last - start) * step < 0:
        raise Located((), f"'...' cannot step from {start} to {last} by {step}")
    return head + list(range(start + step, last + step, step)) + items[i + 2 :]


class Column(_Strict):
    """One model input (``columns[]``)."""

    name: str
    kind: Kind
    nullable: StrictBool = False
    description: str = ""
    range: tuple[int | float | None, int | float | None] | None = None
    domain: tuple[int | str, ...] | None = None
    min_domain_mass: float | None = None
    drift: DriftOverride | None = None

    _check_name = field_validator("name", mode="before")(_column_name)

    @field_validator("kind", mode="before")
    @classmethod
    def _check_kind(cls, v: Any) -> Any:
        try:
            kind = Kind(v)
        except ValueError:
            kind = None
        if kind not in COLUMN_KINDS:
            expected = ", ".join(k.value for k in COLUMN_KINDS)
            raise ValueError(f"unknown kind {v!r} (expected {expected})")
        return kind

    @field_validator("range", mode="before")
    @classmethod
    def _check_range(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list | tuple) or len(v) != 2:
            raise ValueError(f"range must be [min, max] (null for an open end), got {v!r}")
        for i, x in enumerate(v):
            if x is not None and not V.is_number(x):
                raise Located((i,), f"range bound must be a finite number or null, got {x!r}")
        if v[0] is None and v[1] is None:
            raise ValueError("range [null, null] says nothing: leave range out")
        if v[0] is not None and v[1] is not None and v[0] > v[1]:
            raise ValueError(f"range min {v[0]} is greater than max {v[1]}")
        return tuple(v)

    @field_validator("domain", mode="before")
    @classmethod
    def _check_domain(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list | tuple) or not v:
            raise ValueError(f"domain must be a non-empty list of values, got {v!r}")
        items = _expand_domain(list(v))
        seen: dict = {}
        for i, x in enumerate(items):
            if isinstance(x, bool) or not isinstance(x, int | str):
                raise Located((i,), f"a domain value must be an integer or a string, got {x!r}")
            if x in seen:
                raise Located((i,), f"duplicate domain value {x!r}")
            seen[x] = i
        return tuple(items)

    @field_validator("min_domain_mass", mode="before")
    @classmethod
    def _check_mass(cls, v: Any) -> Any:
        if v is not None and (not V.is_number(v) or not 0 < v <= 1):
            raise ValueError(f"min_domain_mass must be a number in (0, 1], got {v!r}")
        return v

    @model_validator(mode="after")
    def _check_kind_facts(self) -> Column:
        kind = self.kind
        if self.range is not None:
            if kind not in (Kind.NUMERIC, Kind.CATEGORICAL_INT):
                raise Located(
                    ("range",), f"a {kind.value} column has no range (numeric, categorical_int only)"
                )
            if kind is Kind.CATEGORICAL_INT and any(isinstance(x, float) for x in self.range):
                raise Located(
                    ("range",), f"a categorical_int range needs integer bounds, got {list(self.range)}"
                )
            if kind is Kind.NUMERIC:
                floats = tuple(None if x is None else float(x) for x in self.range)
                object.__setattr__(self, "range", floats)
        if self.domain is not None:
            if kind is Kind.CATEGORICAL_INT:
                if any(isinstance(x, str) for x in self.domain):
                    raise Located(("domain",), "a categorical_int domain holds integers only")
            elif kind is Kind.CATEGORICAL_STR:
                if any(not isinstance(x, str) for x in self.domain):
                    raise Located(
                        ("domain",), "a categorical_string domain holds strings only (quote numbers)"
                    )
            else:
                raise Located(("domain",), f"a {kind.value} column has no domain (categorical kinds only)")
        if self.min_domain_mass is not None and kind is not Kind.CATEGORICAL_STR:
            raise Located(
                ("min_domain_mass",),
                f"only a categorical_string column has min_domain_mass, not {kind.value}",
            )
        return self


class TimeSpec(_Strict):
    """The event-time column (``time``)."""

    column: str
    format: TimeFormat
    description: str | None = None

    _check_column = field_validator("column", mode="before")(_column_name)

    @field_validator("format", mode="before")
    @classmethod
    def _check_format(cls, v: Any) -> Any:
        if v not in {f.value for f in TimeFormat} and not isinstance(v, TimeFormat):
            raise ValueError(f"unknown time format {v!r} (expected epoch_seconds, epoch_millis, iso8601)")
        return v


_DERIVE_NODES = (
    ast.Expression, ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Invert, ast.USub,
    ast.UAdd, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd,
    ast.BitOr, ast.BitXor, ast.Name, ast.Load, ast.Constant, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
    ast.GtE, ast.In, ast.NotIn, ast.List, ast.Tuple,
)  # fmt: skip


def derive_names(expr: str) -> tuple[str, ...]:
    """The column names a derive expression reads, in order of first use.

    Raises:
        ValueError: the expression does not parse, uses something beyond comparisons / arithmetic /
            and-or-not over columns and constants, reads no column, or is not a boolean expression.
    """
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"{expr!r} does not parse: {e.msg}") from None
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, _DERIVE_NODES):
            what = "a function call" if isinstance(node, ast.Call) else type(node).__name__
            raise ValueError(f"{expr!r}: {what} is not allowed (comparisons, arithmetic, and/or/not only)")
        if isinstance(node, ast.Name) and node.id not in names:
            names.append(node.id)
    body = tree.body
    boolean = isinstance(body, ast.Compare | ast.BoolOp) or (
        isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.Not | ast.Invert)
    )
    boolean = boolean or (
        isinstance(body, ast.BinOp) and isinstance(body.op, ast.BitAnd | ast.BitOr | ast.BitXor)
    )
    if not boolean:
        raise ValueError(f"{expr!r} is not a boolean expression (e.g. 'tips > 0.2 * fare')")
    if not names:
        raise ValueError(f"{expr!r} reads no column")
    return tuple(names)


class LabelSpec(_Strict):
    """The label (``label``): a raw column and its positive class, or a derivation over raw columns."""

    column: str
    derive: str | None = None
    positive: str | int | None = None
    description: str | None = None

    _check_column = field_validator("column", mode="before")(_column_name)

    @field_validator("derive", mode="before")
    @classmethod
    def _check_derive(cls, v: Any) -> Any:
        if v is not None:
            if not isinstance(v, str):
                raise ValueError(f"derive must be an expression string, got {v!r}")
            derive_names(v)
        return v

    @field_validator("positive", mode="before")
    @classmethod
    def _check_positive(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"{str(v).lower()} is a YAML boolean: quote the value as the data writes it")
        if v is not None and not isinstance(v, str | int):
            raise ValueError(f"positive must be a string or an integer, got {v!r}")
        return v

    @model_validator(mode="after")
    def _positive_xor_derive(self) -> LabelSpec:
        if self.derive is None and self.positive is None:
            raise Located(("positive",), "required without label.derive (the label value meaning class 1)")
        if self.derive is not None and self.positive is not None:
            raise Located(("positive",), "not allowed with label.derive (derive gives the class itself)")
        return self


def _json_value(v: Any, where: str) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} is not a string")
            _json_value(x, f"{where}.{k}")
    elif isinstance(v, list | tuple):
        for i, x in enumerate(v):
            _json_value(x, f"{where}[{i}]")
    elif isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{where}: {v} is not a finite number")
    elif v is not None and not isinstance(v, str | int | float | bool):
        raise ValueError(f"{where}: {v!r} is not a JSON value")


def _lines_seen(values: list) -> str:
    shown = ", ".join(repr(v) for v in values[:10])
    return (shown + (", ..." if len(values) > 10 else "")) or "none"


class DatasetSpec(_Strict):
    """A dataset spec: what the data is, what the model predicts, how it is checked.

    The YAML fields are below; the vocabulary of :mod:`kfloop.features` (``model_features``,
    ``event_time``, ``label``, ``dataset_columns``, ``raw_columns``, :meth:`feature`, ...) is derived from
    them. The YAML ``label`` section is the ``label_spec`` attribute (``label`` is the label's
    :class:`Feature`).
    """

    name: str
    task: Task = Task.BINARY
    description: str = ""
    missing_values: tuple[str, ...] = ("",)
    time: TimeSpec | None = None
    label_spec: LabelSpec = Field(alias="label")
    exclude: tuple[str, ...] = ()
    columns: tuple[Column, ...]
    slices: tuple[str | tuple[str, ...], ...] = ()
    drift: DriftConfig = DriftConfig()
    trainer: str = "keras"
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, v: Any) -> Any:
        if not isinstance(v, str) or len(v) > 63 or not _DNS_LABEL.match(v):
            raise ValueError(
                f"{v!r} is not a valid model name (a DNS-1123 label: at most 63 lowercase letters, digits and"
                " '-', starting and ending with a letter or digit)"
            )
        return v

    @field_validator("task", mode="before")
    @classmethod
    def _check_task(cls, v: Any) -> Any:
        if v not in {t.value for t in Task} and not isinstance(v, Task):
            raise ValueError(f"unknown task {v!r} (expected {', '.join(t.value for t in Task)})")
        return v

    @field_validator("missing_values", mode="before")
    @classmethod
    def _check_missing(cls, v: Any) -> Any:
        if not isinstance(v, list | tuple):
            raise ValueError(f"missing_values must be a list of tokens, got {v!r}")
        out = []
        for i, x in enumerate(v):
            if isinstance(x, bool) or not isinstance(x, str | int | float):
                raise Located((i,), f"a missing-value token must be a string, got {x!r}")
            out.append(x if isinstance(x, str) else str(x))
        return tuple(out)

    @field_validator("exclude", mode="before")
    @classmethod
    def _check_exclude(cls, v: Any) -> Any:
        if not isinstance(v, list | tuple):
            raise ValueError(f"exclude must be a list of column names, got {v!r}")
        for i, x in enumerate(v):
            try:
                _column_name(x)
            except ValueError as e:
                raise Located((i,), str(e)) from None
            if x in v[:i]:
                raise Located((i,), f"{x!r} is listed twice")
        return tuple(v)

    @field_validator("columns", mode="before")
    @classmethod
    def _check_columns(cls, v: Any) -> Any:
        if not isinstance(v, list | tuple) or not v:
            raise ValueError("columns must be a non-empty list of model inputs")
        return v

    @field_validator("slices", mode="before")
    @classmethod
    def _check_slices(cls, v: Any) -> Any:
        if not isinstance(v, list | tuple):
            raise ValueError(f"slices must be a list of features or [feature, feature] crosses, got {v!r}")
        out: list = []
        for i, s in enumerate(v):
            if isinstance(s, str):
                out.append(s)
            elif isinstance(s, list | tuple) and len(s) >= 2 and all(isinstance(x, str) for x in s):
                if len(set(s)) != len(s):
                    raise Located((i,), f"a slice cross names a feature twice: {list(s)}")
                out.append(tuple(s))
            else:
                raise Located((i,), f"a slice is a feature name or a list of 2+ feature names, got {s!r}")
        return tuple(out)

    @field_validator("trainer", mode="before")
    @classmethod
    def _check_trainer(cls, v: Any) -> Any:
        if not isinstance(v, str) or (v != "keras" and not _TRAINER.match(v)):
            raise ValueError(f"trainer must be 'keras' or 'package.module:function', got {v!r}")
        return v

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _check_hyperparameters(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValueError(f"hyperparameters must be a mapping, got {v!r}")
        _json_value(v, "hyperparameters")
        return v

    @model_validator(mode="after")
    def _check_whole(self) -> DatasetSpec:
        problems: list[Located] = []
        first: dict[str, int] = {}
        for i, c in enumerate(self.columns):
            if c.name in first:
                problems.append(
                    Located(
                        ("columns", i, "name"), f"duplicate column {c.name!r} (also columns[{first[c.name]}])"
                    )
                )
            first.setdefault(c.name, i)

        def clash(path, name, role):
            if name in first:
                problems.append(Located(path, f"{role} {name!r} is also a feature (columns[{first[name]}])"))

        clash(("label", "column"), self.label_spec.column, "label column")
        if self.time is not None:
            clash(("time", "column"), self.time.column, "time column")
            if self.time.column == self.label_spec.column:
                problems.append(Located(("time", "column"), f"{self.time.column!r} is also the label column"))
        for i, x in enumerate(self.exclude):
            clash(("exclude", i), x, "excluded column")
        for i, s in enumerate(self.slices):
            for j, name in enumerate((s,) if isinstance(s, str) else s):
                if name not in first:
                    path = ("slices", i) if isinstance(s, str) else ("slices", i, j)
                    problems.append(Located(path, f"{name!r} is not a feature"))
        if self.label_spec.derive is not None:
            known = set(first) | set(self.exclude)
            for name in derive_names(self.label_spec.derive):
                if name not in known:
                    problems.append(
                        Located(
                            ("label", "derive"),
                            f"{name!r} is not a raw column of the spec: a derive reads features and columns"
                            " listed in exclude",
                        )
                    )
        if problems:
            raise Problems(problems)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetSpec):
            return NotImplemented
        return self.model_dump(mode="json") == other.model_dump(mode="json")

    __hash__ = None  # type: ignore[assignment]

    # ----- derived vocabulary (same names as kfloop.features) -----

    def _feature(self, c: Column) -> Feature:
        d = c.drift or DriftOverride()
        default = self.drift.default
        return Feature(
            name=c.name,
            kind=c.kind,
            nullable=c.nullable,
            description=c.description,
            range=c.range,
            domain=c.domain,
            min_domain_mass=c.min_domain_mass,
            drift_threshold=d.threshold if d.threshold is not None else default.threshold,
            drift_mode=(d.mode or default.mode).value,
        )

    @functools.cached_property
    def model_features(self) -> tuple[Feature, ...]:
        """Model inputs, in model order."""
        return tuple(self._feature(c) for c in self.columns)

    @functools.cached_property
    def event_time(self) -> Feature | None:
        """The event-time feature (epoch seconds, UTC, in kfloop's Dataset form); None without ``time``."""
        if self.time is None:
            return None
        text = (
            self.time.description or f"Event time, seconds since epoch (UTC), from {self.time.format.value}"
        )
        return Feature(self.time.column, Kind.TIMESTAMP, False, text, drift_mode=DriftMode.OFF.value)

    @functools.cached_property
    def label(self) -> Feature:
        """The label feature: 0/1, named ``label.column``."""
        lab = self.label_spec
        text = lab.description or (
            f"1 when {lab.derive}, else 0"
            if lab.derive is not None
            else f"1 when {lab.column} is {lab.positive!r}"
        )
        d = self.drift.default
        return Feature(
            lab.column, Kind.LABEL, False, text, drift_threshold=d.threshold, drift_mode=d.mode.value
        )

    @functools.cached_property
    def input_names(self) -> tuple[str, ...]:
        """Names of the model inputs, in model order."""
        return tuple(f.name for f in self.model_features)

    @property
    def model_name(self) -> str:
        """The model's name in the store and in KServe (= ``name``)."""
        return self.name

    @functools.cached_property
    def derive_inputs(self) -> tuple[str, ...]:
        """Raw columns the label derivation reads (empty without ``label.derive``)."""
        return derive_names(self.label_spec.derive) if self.label_spec.derive is not None else ()

    @functools.cached_property
    def dataset_columns(self) -> tuple[str, ...]:
        """Columns of every Dataset artifact, in order: the time column (if any), the features, the label."""
        head = (self.event_time.name,) if self.event_time is not None else ()
        return head + self.input_names + (self.label.name,)

    @functools.cached_property
    def raw_columns(self) -> tuple[str, ...]:
        """Columns a raw extract must contain: the features, the time column, then the label column or the
        derive inputs that are not features (the order of :data:`kfloop.features.RAW_COLUMNS`)."""
        out = list(self.input_names)
        if self.time is not None:
            out.append(self.time.column)
        extra = self.derive_inputs if self.label_spec.derive is not None else (self.label_spec.column,)
        out.extend(c for c in extra if c not in out)
        return tuple(out)

    @functools.cached_property
    def _by_name(self) -> dict[str, Feature]:
        every = self.model_features + ((self.event_time,) if self.event_time else ()) + (self.label,)
        return {f.name: f for f in every}

    def feature(self, name: str) -> Feature:
        """The feature (model input, time column or label) called ``name``.

        Raises:
            KeyError: ``name`` is none of them.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown feature {name!r}") from None

    def features_of(self, kind: Kind | str) -> tuple[Feature, ...]:
        """Model features of one kind, in model order."""
        kind = Kind(kind)
        return tuple(f for f in self.model_features if f.kind == kind)

    def describe(self) -> list[dict]:
        """A JSON-ready description of the model inputs (for metadata files and model metadata)."""
        return [
            {
                "name": f.name,
                "kind": f.kind.value,
                "dtype": f.dtype,
                "nullable": f.nullable,
                "description": f.description,
            }
            for f in self.model_features
        ]

    def drift_threshold(self, name: str) -> float:
        """The drift threshold of a feature or the label (KeyError naming an unknown one)."""
        return self.feature(name).drift_threshold

    def drift_mode(self, name: str) -> str:
        """``trigger`` / ``record`` / ``off`` for a feature or the label (the time column: ``off``)."""
        return self.feature(name).drift_mode

    # ----- canonical forms -----

    def to_dict(self) -> dict:
        """The spec as plain data in YAML key order (``None`` values left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_yaml(self) -> str:
        """Canonical YAML: every field, defaults included, in field order, normalised values."""
        from kfloop.spec._yaml import dump

        return dump(self.to_dict())

    def digest(self) -> str:
        """sha256 hex of the canonical JSON of the spec (stable across key order, comments, aliases)."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    # ----- value conversions -----

    def is_missing(self, series):
        """Boolean mask: NaN / None, or one of ``missing_values``."""
        return V.is_missing(series, self.missing_values)

    def event_seconds(self, series, first_line: int = 2):
        """The raw time column as Int64 epoch seconds (NA where missing), per ``time.format``.

        Raises:
            SpecDataError: a value does not parse (names the column, CSV line and value).
            ValueError: the spec has no ``time``.
        """
        if self.time is None:
            raise ValueError("the spec has no time column")
        return V.event_seconds(
            series, self.time.format.value, self.time.column, self.missing_values, first_line
        )

    def label_values(self, raw_frame):
        """The label of every raw row as Int64 0/1 (NA where the label, or a derive input, is missing).

        With ``derive``: the expression over the raw columns (numbers where a column holds only numbers).
        With ``positive``: 1 where the label column equals it (an integer ``positive`` compares numerically,
        so ``"1"`` and ``1.0`` match 1), 0 for any other value.

        Raises:
            SpecDataError: a needed column is missing, or the derivation fails or is not boolean.
        """
        import pandas as pd

        lab = self.label_spec
        needed = self.derive_inputs or (lab.column,)
        for c in needed:
            if c not in raw_frame.columns:
                key = "label.derive" if lab.derive is not None else "label.column"
                raise V.SpecDataError(f"{key}: {c!r} is not a column of the data", c)
        missing = pd.Series(False, index=raw_frame.index)
        if lab.derive is not None:
            cols = {}
            for c in needed:
                m = self.is_missing(raw_frame[c])
                missing = missing | m
                cols[c] = V.maybe_numbers(raw_frame[c], m)
            try:
                result = pd.DataFrame(cols, index=raw_frame.index).eval(lab.derive, engine="python")
            except Exception as e:
                raise V.SpecDataError(
                    f"label.derive: {lab.derive!r} fails on the data: {e}", lab.column
                ) from None
            if not isinstance(result, pd.Series) or not pd.api.types.is_bool_dtype(result.dtype):
                raise V.SpecDataError(
                    f"label.derive: {lab.derive!r} does not give True/False per row", lab.column
                )
            ones = result.to_numpy(dtype=bool)
        else:
            s = raw_frame[lab.column]
            missing = self.is_missing(s)
            if isinstance(lab.positive, int):
                ones = (pd.to_numeric(s.where(~missing), errors="coerce") == lab.positive).to_numpy(
                    dtype=bool
                )
            else:
                ones = (s.astype(str) == lab.positive).to_numpy(dtype=bool)
        out = V._int_array(ones.astype("int64"), missing.to_numpy(dtype=bool), raw_frame.index, lab.column)
        return out

    def label_of(self, value) -> int:
        """The 0/1 label of one raw label value (the feedback path).

        With ``positive``: 1 if ``value`` is the positive class, else 0. With ``derive`` (feedback carries
        the class itself): 0/1, true/false, yes/no, t/f.

        Raises:
            SpecDataError: ``value`` is missing, or (with derive) not a boolean value.
        """
        import pandas as pd

        lab = self.label_spec
        s = pd.Series([value], dtype=object)
        if self.is_missing(s).iloc[0]:
            raise V.SpecDataError(f"label {lab.column!r}: the label value is missing ({value!r})", lab.column)
        if lab.derive is not None:
            try:
                return int(V.booleans(s, pd.Series([False]), lab.column).iloc[0])
            except V.SpecDataError:
                raise V.SpecDataError(
                    f"label {lab.column!r}: {value!r} is not a class (0/1, true/false, yes/no, t/f)",
                    lab.column,
                ) from None
        return int(self.label_values(pd.DataFrame({lab.column: s})).iloc[0])

    def check_data(self, frame) -> list[str]:
        """What in a sample of raw data does not fit the spec: one line per problem, naming the spec key.

        Checks that every feature, the time column and the label column (or derive inputs) are columns of
        the data, that feature values fit their kind, that the time column parses, that the derive
        evaluates and that the positive class occurs. An empty list: the sample fits.
        """
        problems: list[str] = []
        cols = set(frame.columns)
        for i, c in enumerate(self.columns):
            if c.name not in cols:
                problems.append(f"columns[{i}].name: {c.name!r} is not a column of the data")
                continue
            s = frame[c.name]
            m = self.is_missing(s)
            try:
                if c.kind is Kind.NUMERIC:
                    V.numbers(s, m, c.name, "a number")
                elif c.kind is Kind.CATEGORICAL_INT:
                    V.integers(s, m, c.name)
                elif c.kind is Kind.BOOLEAN:
                    V.booleans(s, m, c.name)
            except V.SpecDataError as e:
                problems.append(f"columns[{i}].kind: {c.kind.value} column {e}")
        if self.time is not None:
            if self.time.column not in cols:
                problems.append(f"time.column: {self.time.column!r} is not a column of the data")
            else:
                try:
                    self.event_seconds(frame[self.time.column])
                except V.SpecDataError as e:
                    problems.append(f"time.format: {self.time.format.value}: {e}")
        lab = self.label_spec
        absent = [c for c in (self.derive_inputs or (lab.column,)) if c not in cols]
        key = "label.derive" if lab.derive is not None else "label.column"
        problems.extend(f"{key}: {c!r} is not a column of the data" for c in absent)
        if not absent:
            try:
                labels = self.label_values(frame)
            except V.SpecDataError as e:
                problems.append(str(e))
            else:
                if lab.derive is None and int(labels.fillna(0).sum()) == 0:
                    s = frame[lab.column]
                    seen = list(dict.fromkeys(s[~self.is_missing(s)].tolist()))
                    problems.append(
                        f"label.positive: {lab.positive!r} never occurs in label column {lab.column!r}"
                        f" (values seen: {_lines_seen(seen)})"
                    )
        return problems
