"""YAML reading for dataset specs: a YAML 1.2-style loader, the line of every key, and one-line errors.

The loader is PyYAML's ``SafeLoader`` except that only ``true`` / ``false`` are booleans (YAML 1.2): in
YAML 1.1 ``mode: off`` or ``positive: yes`` would silently become booleans. Every mapping key and sequence
item is located by its start line, so an error found by pydantic (whose ``loc`` is a key path) names the
line it comes from.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

Path = tuple[str | int, ...]


class SpecError(ValueError):
    """A dataset spec is not valid. ``str(error)`` is one line: ``<origin>:<line>: <key path>: <what>``.

    Attributes:
        origin: Where the spec came from (a file name, URI or ``spec.yaml`` for text).
        line: 1-based line of the offending key or item (the nearest enclosing one when the key is missing).
        path: The key path, e.g. ``columns[3].kind``.
        problem: What is wrong.
        problems: Every problem found, as one-line strings in the same form, first one first.
    """

    def __init__(self, origin: str, line: int, path: str, problem: str, problems: list[str] | None = None):
        self.origin, self.line, self.path = origin, line, path
        self.problem = " ".join(str(problem).split())
        first = f"{origin}:{line}: {path}: {self.problem}"
        self.problems = problems or [first]
        super().__init__(first)


class Located(ValueError):
    """A validation problem at ``suffix`` below the key path where pydantic reports it (internal)."""

    def __init__(self, suffix: Path, message: str):
        self.suffix = tuple(suffix)
        super().__init__(message)


class Problems(ValueError):
    """Several :class:`Located` problems found by one whole-spec check (internal)."""

    def __init__(self, problems: list[Located]):
        self.problems = problems
        super().__init__("; ".join(f"{format_path(p.suffix)}: {p}" for p in problems))


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false (any of three cases) are booleans."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def format_path(path: Path) -> str:
    """``("columns", 3, "kind")`` -> ``columns[3].kind``; the empty path is ``(top level)``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _walk(node, path: Path, lines: dict[Path, int], origin: str) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            p = path + (key.value if isinstance(key, yaml.ScalarNode) else str(key.value),)
            line = key.start_mark.line + 1
            if p in lines:
                raise SpecError(
                    origin, line, format_path(p), f"duplicate key {p[-1]!r} (also line {lines[p]})"
                )
            lines[p] = line
            _walk(value, p, lines, origin)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            p = path + (i,)
            lines[p] = item.start_mark.line + 1
            _walk(item, p, lines, origin)


def parse(text: str, origin: str) -> tuple[Any, dict[Path, int]]:
    """Parses YAML text into plain data plus the line of every key path.

    Raises:
        SpecError: the text is not YAML, holds several documents, or repeats a key in one mapping.
    """
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise SpecError(origin, line, "(top level)", f"not valid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise SpecError(origin, 1, "(top level)", f"not valid YAML: {e}") from None
    lines: dict[Path, int] = {(): 1}  # a missing top-level key is reported on line 1
    if node is not None:
        _walk(node, (), lines, origin)
    return data, lines


def line_of(lines: dict[Path, int], path: Path) -> int:
    """The line of ``path``, or of its nearest located ancestor (a missing key: its parent's line)."""
    path = tuple(path)
    while path not in lines:
        path = path[:-1]
    return lines[path]


def dump(data: Any) -> str:
    """Block-style YAML of plain data, keys in the given order, leaf lists in flow style.

    Non-ASCII text is written as is, unless PyYAML would not read it back (it writes some line-break
    characters such as U+0085 unescaped inside quotes, and reads them as a space): then escaped.
    """
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=110)
    if yaml.safe_load(text) != data:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=False, width=110)
    return text
