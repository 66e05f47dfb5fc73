"""No dataset in the shipped code (issue 24): no module outside examples/ names a column of an example.

The column names of every example spec (``examples/*/spec.yaml``: features, time column, label, excluded
columns and what the label is derived from) are looked for in what kfloop ships: the Python under
kfloop/, components/, pipelines/, serving/ and training_image/ (with :mod:`ast`: a string constant equal to
a column name, or a column name as an attribute, keyword, variable or parameter), and the Dockerfiles and
manifests/ (as a whole word). Each hit is reported as ``file:line: ...``, naming the column and its spec.

Documentation strings and comments may still mention a column inside a sentence (they are not a string
equal to the name, nor code); the data itself belongs in the example's folder.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kfloop import spec as S

ROOT = Path(__file__).resolve().parents[1]
#: Folders whose Python is shipped in the images.
CODE_DIRS = ("kfloop", "components", "pipelines", "serving", "training_image")

#: Column names of some example that are also ordinary words of code, each with the reason it may appear.
#: Keep it short: a name listed here is not checked anywhere.
ALLOWED = {
    # mpls_stops' event date; kfloop's own time code has ``date`` everywhere (datetime.date, date=... log
    # partitions, the prediction log's day folders), none of it about that column.
    "date": "datetime.date and the prediction log's date=YYYY-MM-DD partitions",
    # mpls_stops' dispatch reason; in code the usual name of one found problem (a spec error, a bad request
    # field, a validation finding), never that column.
    "problem": "the usual variable / attribute name of one error found (spec, request, validation)",
    # diamonds' label (the cut grade); in code the cut point of a time range or of the row order (the plan's
    # and clean's history cutoff), never that column.
    "cut": "the cut point of a time range or of the row order (the plan, clean's split)",
    # diamonds' colour grade; in code the colour of an HTML heading or plot line, never that column.
    "color": "the colour of an HTML report's heading or plot line (canary, decide, train and loop reports)",
}


def spec_columns(root: Path = ROOT) -> dict[str, list[str]]:
    """``{column name: [spec files naming it]}`` over every ``examples/*/spec.yaml``."""
    out: dict[str, list[str]] = {}
    for path in sorted(root.glob("examples/*/spec.yaml")):
        s = S.load(path)
        names = {*s.input_names, s.label_spec.column, *s.exclude, *s.derive_inputs}
        if s.time is not None:
            names.add(s.time.column)
        for name in names:
            out.setdefault(name, []).append(str(path.relative_to(root)))
    return out


def _python_hits(path: Path, columns: dict[str, list[str]]) -> list[tuple[int, str, str]]:
    """``(line, column, how)`` for every column name in a Python file's code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        found = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = (node.value, "string")
        elif isinstance(node, ast.Attribute):
            found = (node.attr, "attribute")
        elif isinstance(node, ast.keyword) and node.arg:
            found = (node.arg, "keyword")
        elif isinstance(node, ast.Name):
            found = (node.id, "name")
        elif isinstance(node, ast.arg):
            found = (node.arg, "parameter")
        if found and found[0] in columns:
            hits.append((getattr(node, "lineno", 0), found[0], found[1]))
    return hits


def _text_hits(path: Path, columns: dict[str, list[str]]) -> list[tuple[int, str, str]]:
    """``(line, column, "word")`` for every column name as a whole word of a text.

    Word characters are letters, digits, ``_`` and ``-``: column names are identifiers, so a part of a
    hyphenated Kubernetes name (``my-model-predictor``) is not one.
    """
    names = "|".join(map(re.escape, sorted(columns, key=len, reverse=True)))
    pattern = re.compile(r"(?<![A-Za-z0-9_-])(" + names + r")(?![A-Za-z0-9_-])")
    hits = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        hits.extend((i, m.group(1), "word") for m in pattern.finditer(line))
    return hits


def shipped_files(root: Path = ROOT) -> list[Path]:
    """The Python of :data:`CODE_DIRS`, every Dockerfile in them, and the YAML of manifests/."""
    files: list[Path] = []
    for d in CODE_DIRS:
        files += sorted((root / d).rglob("*.py"))
        files += sorted((root / d).rglob("Dockerfile*"))
    files += sorted((root / "manifests").rglob("*.yaml")) + sorted((root / "manifests").rglob("*.yml"))
    return [f for f in files if "__pycache__" not in f.parts]


def dataset_names_in(files: list[Path], columns: dict[str, list[str]], root: Path = ROOT) -> list[str]:
    """One line per column name found in ``files``: ``file:line: <how> 'name' is a column of <spec>``."""
    check = {k: v for k, v in columns.items() if k not in ALLOWED}
    out = []
    for path in files:
        hits = _python_hits(path, check) if path.suffix == ".py" else _text_hits(path, check)
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        out += [
            f"{rel}:{line}: {how} {name!r} is a column of {', '.join(check[name])}"
            for line, name, how in sorted(hits)
        ]
    return out


def test_the_examples_have_columns_to_look_for():
    columns = spec_columns()
    assert {"trip_miles", "big_tipper", "tips", "trip_start_timestamp"} <= set(columns)  # taxi
    assert {"vehicleSearch", "idNum", "policePrecinct"} <= set(columns)  # mpls_stops
    assert {"arr_delay", "dep_delay", "tailnum", "origin_airport", "time_hour"} <= set(columns)  # flights
    assert {"cut", "clarity", "carat", "x_mm", "price"} <= set(columns)  # diamonds
    assert set(ALLOWED) <= set(columns), "an allowlisted word is no column any more: drop it"


def test_no_shipped_module_names_a_column_of_an_example():
    problems = dataset_names_in(shipped_files(), spec_columns())
    assert problems == [], "dataset knowledge in shipped code (move it to examples/):\n" + "\n".join(problems)


def test_the_checker_names_file_line_and_column(tmp_path):
    columns = spec_columns()
    code = tmp_path / "leak.py"
    code.write_text(
        '"""Mentions trip_miles in prose: allowed."""\n'
        "def score(frame, fare=1.0):\n"
        '    return frame["trip_miles"] * frame.tips + fare\n'
        "x = dict(big_tipper=1, date=2)\n"
    )
    docker = tmp_path / "Dockerfile"
    docker.write_text("FROM python:3.11\nENV LABEL_COLUMN=big_tipper\nENV X=trip_milesX\n")
    got = dataset_names_in([code, docker], columns, root=tmp_path)
    taxi = "examples/taxi/spec.yaml"
    assert got == [
        f"leak.py:2: parameter 'fare' is a column of {taxi}",
        f"leak.py:3: name 'fare' is a column of {taxi}",
        f"leak.py:3: attribute 'tips' is a column of {taxi}",
        f"leak.py:3: string 'trip_miles' is a column of {taxi}",
        f"leak.py:4: keyword 'big_tipper' is a column of {taxi}",
        f"Dockerfile:2: word 'big_tipper' is a column of {taxi}",
    ]


@pytest.mark.parametrize("word", sorted(ALLOWED))
def test_allowlisted_words_are_explained(word):
    assert len(ALLOWED[word]) > 20, f"say why {word!r} may appear in code"
