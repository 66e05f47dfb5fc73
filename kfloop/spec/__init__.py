"""Dataset specs: one reviewed YAML file that describes a user's data to every stage of kfloop.

A spec names the model (``name``), the task, the event-time column, the label (a column plus its positive
class, or a derivation over raw columns), the model inputs in order with their kinds and known facts
(ranges, domains), the evaluation slices, the drift policy and the trainer. :func:`load` parses and
validates it into a frozen :class:`DatasetSpec`, which exposes the vocabulary of :mod:`kfloop.features`
(``model_features``, ``event_time``, ``label``, ``dataset_columns``, ``raw_columns``, ``feature()``,
``features_of()``) plus value conversions (``label_values``, ``event_seconds``, ``is_missing``) and
:meth:`DatasetSpec.check_data` for a data sample.

Errors: a bad spec raises :class:`SpecError`, whose message is one line
``<origin>:<line>: <key path>: <what is wrong>``; data that does not fit raises :class:`SpecDataError`
naming the column, CSV line and value.

Only the standard library, pydantic, PyYAML and :mod:`kfloop.fs` are imported here (pandas and numpy inside
the functions that need them), so both the pipeline and the serving env import this package.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from kfloop.spec._yaml import Located, Problems, SpecError, format_path, line_of, parse
from kfloop.spec.kinds import COLUMN_KINDS, DriftMode, Feature, Kind, Task, TimeFormat
from kfloop.spec.model import DatasetSpec
from kfloop.spec.sections import (
    Column,
    DriftConfig,
    DriftOverride,
    DriftPolicy,
    LabelSpec,
    TimeSpec,
    derive_names,
)
from kfloop.spec.values import SpecDataError

__all__ = [
    "COLUMN_KINDS",
    "SPEC_FILE",
    "Column",
    "DatasetSpec",
    "DriftConfig",
    "DriftMode",
    "DriftOverride",
    "DriftPolicy",
    "Feature",
    "Kind",
    "LabelSpec",
    "SpecDataError",
    "SpecError",
    "Task",
    "TimeFormat",
    "TimeSpec",
    "derive_names",
    "dump",
    "load",
    "loads",
]

#: File name of the spec stored next to a model version.
SPEC_FILE = "spec.yaml"


def _problem(err: dict) -> tuple[tuple, str]:
    """(key path, message) of one pydantic error."""
    loc = tuple(err.get("loc", ()))
    kind = err.get("type")
    exc = (err.get("ctx") or {}).get("error")
    if isinstance(exc, Located):
        return loc + exc.suffix, str(exc)
    if kind == "extra_forbidden":
        return loc, f"unknown key {loc[-1]!r}" if loc else "unknown key"
    if kind == "missing":
        return loc, "required key missing"
    msg = str(exc) if exc is not None else err.get("msg", "invalid")
    if exc is None and "input" in err and kind not in ("model_type", "dict_type"):
        return loc, f"{msg} (got {err['input']!r})"
    if kind in ("model_type", "dict_type"):
        return loc, f"expected a mapping, got {err.get('input')!r}"
    return loc, msg


def loads(text: str, origin: str = SPEC_FILE) -> DatasetSpec:
    """Parses and validates spec YAML text.

    Args:
        text: The YAML.
        origin: Where it came from, for error messages.

    Raises:
        SpecError: the spec is not valid (one line: origin, line, key path, what is wrong; ``problems``
            holds every problem found).
    """
    data, lines = parse(text, origin)
    if not isinstance(data, dict):
        raise SpecError(
            origin, 1, "(top level)", f"a spec is a mapping of keys (name, label, columns, ...), got {data!r}"
        )
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as e:
        found: list[tuple[int, str, str]] = []
        for err in e.errors(include_url=False):
            exc = (err.get("ctx") or {}).get("error")
            if isinstance(exc, Problems):
                pairs = [(tuple(err.get("loc", ())) + p.suffix, str(p)) for p in exc.problems]
            else:
                pairs = [_problem(err)]
            for path, msg in pairs:
                found.append((line_of(lines, path), format_path(path), msg))
        found.sort(key=lambda t: t[0])
        line, path, msg = found[0]
        all_lines = [f"{origin}:{n}: {p}: {' '.join(m.split())}" for n, p, m in found]
        raise SpecError(origin, line, path, msg, all_lines) from None


def load(source: str | os.PathLike) -> DatasetSpec:
    """Loads a spec from a file path, a ``file://`` or ``gs://`` URI, or the YAML text itself.

    A string is read as YAML text when no file of that name exists and it contains a newline or a ``:``
    (a one-line spec such as ``{name: x, ...}`` has one); a URI is always read as a file.

    Raises:
        FileNotFoundError: the source names a file (or URI) that does not exist.
        SpecError: the spec is not valid.
    """
    from kfloop import fs

    if isinstance(source, os.PathLike):
        path = Path(source)
        return loads(path.read_text(encoding="utf-8"), origin=str(path))
    source = str(source)
    if source.startswith("gs://"):
        return loads(fs.read_text(source), origin=source)
    if source.startswith("file://"):
        return loads(Path(source[len("file://") :]).read_text(encoding="utf-8"), origin=source)
    if os.path.isfile(source):
        return loads(Path(source).read_text(encoding="utf-8"), origin=source)
    if "\n" in source or ":" in source:
        return loads(source)
    raise FileNotFoundError(f"dataset spec {source!r} does not exist")


def dump(spec: DatasetSpec) -> str:
    """The canonical YAML of a spec (``loads(dump(s)) == s``)."""
    return spec.to_yaml()
