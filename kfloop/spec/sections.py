"""The sections of a dataset spec below the top level: columns, time, label, drift (pydantic models)."""

from __future__ import annotations

import ast
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, field_validator, model_validator

from kfloop.spec import values as V
from kfloop.spec._yaml import Located
from kfloop.spec.kinds import COLUMN_KINDS, DriftMode, Kind, TimeFormat

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def column_name(v: Any) -> str:
    """Validates a column name (letters, digits, ``_``; not starting with a digit)."""
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


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DriftOverride(Strict):
    """A column's own drift settings; what it leaves out comes from ``drift.default``."""

    threshold: float | None = None
    mode: DriftMode | None = None

    _check_threshold = field_validator("threshold", mode="before")(_threshold)
    _check_mode = field_validator("mode", mode="before")(_mode)


class DriftPolicy(Strict):
    """Drift settings of every column that does not override them."""

    threshold: float = 0.3
    mode: DriftMode = DriftMode.TRIGGER

    _check_threshold = field_validator("threshold", mode="before")(_threshold)
    _check_mode = field_validator("mode", mode="before")(_mode)


class DriftConfig(Strict):
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


class Column(Strict):
    """One model input (``columns[]``)."""

    name: str
    kind: Kind
    nullable: StrictBool = False
    description: str = ""
    range: tuple[int | float | None, int | float | None] | None = None
    domain: tuple[int | str, ...] | None = None
    min_domain_mass: float | None = None
    drift: DriftOverride | None = None

    _check_name = field_validator("name", mode="before")(column_name)

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


class TimeSpec(Strict):
    """The event-time column (``time``)."""

    column: str
    format: TimeFormat
    description: str | None = None

    _check_column = field_validator("column", mode="before")(column_name)

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


class LabelSpec(Strict):
    """The label (``label``): a raw column and, per task, its positive class, a derivation or the classes.

    Which keys a task takes is checked by the spec as a whole (it knows the task): binary needs ``positive``
    or ``derive``; multiclass needs ``classes``; regression takes neither.
    """

    column: str
    derive: str | None = None
    positive: str | int | None = None
    classes: tuple[str | int, ...] | None = None
    description: str | None = None

    _check_column = field_validator("column", mode="before")(column_name)

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

    @field_validator("classes", mode="before")
    @classmethod
    def _check_classes(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list | tuple) or len(v) < 3:
            raise ValueError(
                f"classes must be a list of at least 3 class values (two classes: task binary with"
                f" label.positive), got {v!r}"
            )
        kinds = set()
        for i, x in enumerate(v):
            if isinstance(x, bool):
                raise Located(
                    (i,), f"{str(x).lower()} is a YAML boolean: quote the class as the data writes it"
                )
            if not isinstance(x, str | int):
                raise Located((i,), f"a class must be a string or an integer, got {x!r}")
            if x in v[:i]:
                raise Located((i,), f"class {x!r} is listed twice")
            kinds.add(type(x))
        if len(kinds) > 1:
            raise ValueError(
                "classes must be all strings or all integers (quote numbers to make them strings)"
            )
        return tuple(v)

    @model_validator(mode="after")
    def _positive_or_derive(self) -> LabelSpec:
        if self.derive is not None and self.positive is not None:
            raise Located(("positive",), "not allowed with label.derive (derive gives the class itself)")
        return self
