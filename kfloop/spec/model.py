"""The typed dataset spec (:class:`DatasetSpec`) and the feature vocabulary derived from it."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from kfloop.spec import values as V
from kfloop.spec._yaml import Located, Problems
from kfloop.spec.kinds import DriftMode, Feature, Kind, Task
from kfloop.spec.sections import (
    Column,
    DriftConfig,
    DriftOverride,
    LabelSpec,
    Strict,
    TimeSpec,
    column_name,
    derive_names,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TRAINER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


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


class DatasetSpec(Strict):
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
                column_name(x)
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

        problems.extend(self._task_label_problems())
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

    def _task_label_problems(self) -> list[Located]:
        lab, task = self.label_spec, self.task
        out: list[Located] = []
        if task is Task.BINARY:
            if lab.derive is None and lab.positive is None:
                out.append(
                    Located(
                        ("label", "positive"),
                        "required without label.derive (the label value meaning class 1)",
                    )
                )
            if lab.classes is not None:
                out.append(
                    Located(
                        ("label", "classes"), "only a multiclass task has classes (binary: label.positive)"
                    )
                )
            return out
        for key in ("derive", "positive"):
            if getattr(lab, key) is not None:
                hint = (
                    "label.classes lists the classes"
                    if task is Task.MULTICLASS
                    else "the column holds numbers"
                )
                out.append(Located(("label", key), f"not allowed with task {task.value} ({hint})"))
        if task is Task.MULTICLASS and lab.classes is None:
            out.append(
                Located(
                    ("label", "classes"), "required with task multiclass (the class values, in a fixed order)"
                )
            )
        if task is Task.REGRESSION and lab.classes is not None:
            out.append(
                Located(("label", "classes"), "not allowed with task regression (the column holds numbers)")
            )
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatasetSpec):
            return NotImplemented
        return self.model_dump(mode="json") == other.model_dump(mode="json")

    __hash__ = None  # type: ignore[assignment]

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> DatasetSpec:
        """A copy with ``update`` (field names, e.g. ``label_spec``) applied, validated again.

        Unlike pydantic's default, the copy is checked like a loaded spec and its derived members
        (``model_features``, ...) are computed afresh.
        """
        data = self.model_dump()
        data.update(update or {})
        return type(self).model_validate(data)

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
        """The label feature, named ``label.column``: 0/1 (binary), the class index 0..K-1 in ``classes``
        order (multiclass, kind ``label``), or the number itself (regression, kind ``target``)."""
        lab = self.label_spec
        if self.task is Task.REGRESSION:
            text = lab.description or f"The value of {lab.column}"
        elif self.task is Task.MULTICLASS:
            text = lab.description or f"The index of {lab.column} in {list(lab.classes or ())}"
        else:
            text = lab.description or (
                f"1 when {lab.derive}, else 0"
                if lab.derive is not None
                else f"1 when {lab.column} is {lab.positive!r}"
            )
        d = self.drift.default
        kind = Kind.TARGET if self.task is Task.REGRESSION else Kind.LABEL
        return Feature(lab.column, kind, False, text, drift_threshold=d.threshold, drift_mode=d.mode.value)

    @property
    def classes(self) -> tuple:
        """The class values of a multiclass task, in model order (``()`` for binary and regression)."""
        return tuple(self.label_spec.classes or ()) if self.task is Task.MULTICLASS else ()

    @property
    def n_classes(self) -> int:
        """Number of classes: K (multiclass), 2 (binary), 0 (regression)."""
        return {Task.BINARY: 2, Task.REGRESSION: 0}.get(self.task, len(self.classes))

    def class_name(self, index: int):
        """The class value of class index ``index`` (multiclass), as the spec writes it.

        Raises:
            IndexError: no such class (or the task is not multiclass).
        """
        if not 0 <= int(index) < len(self.classes):
            raise IndexError(f"class index {index} is not in 0..{len(self.classes) - 1} ({self.task.value})")
        return self.classes[int(index)]

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
        from kfloop.spec import data

        return data.label_values(self, raw_frame)

    def label_of(self, value) -> int:
        """The 0/1 label of one raw label value (the feedback path).

        With ``positive``: 1 if ``value`` is the positive class, else 0. With ``derive`` (feedback carries
        the class itself): 0/1, true/false, yes/no, t/f.

        Raises:
            SpecDataError: ``value`` is missing, or (with derive) not a boolean value.
        """
        from kfloop.spec import data

        return data.label_of(self, value)

    def check_data(self, frame) -> list[str]:
        """What in a sample of raw data does not fit the spec: one line per problem, naming the spec key.

        Checks that every feature, the time column and the label column (or derive inputs) are columns of
        the data, that feature values fit their kind, that the time column parses, that the derive
        evaluates and that the positive class occurs. An empty list: the sample fits.
        """
        from kfloop.spec import data

        return data.check_data(self, frame)
