"""The floors, no import cycles, and module sizes of the source tree (issue 25), from its import graph.

The checker is :mod:`tests.import_graph` (pure :mod:`ast`, nothing imported). Each debt the tree still has is
one allowlist entry below, with its comment; a new wrong arrow, cycle or oversized module fails, and so does an
entry that is no longer needed (the lists only shrink: delete the entry with the fix).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests import import_graph as G

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------ allowlists

#: Arrows the floors forbid, as (importer, imported).
LAYER_ALLOW: set[tuple[str, str]] = set()

#: Import cycles, as the chain the checker prints (rotated to start at the smallest module).
CYCLE_ALLOW: set[str] = set()

#: Modules over G.MAX_LINES lines with no `Size:` reason in their docstring, as (path, reason to split).
SIZE_ALLOW: set[tuple[str, str]] = set()

# ----------------------------------------------------------------------------------------------- real tree


@pytest.fixture(scope="module")
def graph() -> G.Graph:
    g = G.build(REPO)
    # a wrong root or package list would make every check pass on nothing
    floors = {G.floor_of(name) for name in g.modules}
    assert floors == {"ground", "components", "serving", "training_image", "pipelines", "examples", "roof"}
    assert len(g.modules) > 100 and len(g.arrows) > 300
    return g


def test_floors(graph):
    found = {v.key: str(v) for v in G.layer_violations(graph)}
    problems = G.ledger(found, LAYER_ALLOW, "wrong arrow")
    assert not problems, "\n".join(problems)


def test_no_import_cycles(graph):
    found = {c: " ; ".join(G.cycle_arrows(graph, c)) for c in G.cycles(graph)}
    problems = G.ledger(found, CYCLE_ALLOW, "import cycle")
    shown = problems[:40] + ([f"... and {len(problems) - 40} more"] if len(problems) > 40 else [])
    assert not problems, "\n".join(shown)


def test_module_sizes(graph):
    found = {
        path: f"{path}: {n} lines (over {G.MAX_LINES}; split it or say why in a `Size:` docstring line)"
        for path, n in G.oversized(graph)
    }
    problems = G.ledger(found, {path for path, _ in SIZE_ALLOW}, "oversized module")
    assert not problems, "\n".join(problems)


def test_allowlists_are_explained():
    assert len({p for p, _ in SIZE_ALLOW}) == len(SIZE_ALLOW)
    assert all(reason.strip() for _, reason in SIZE_ALLOW)
    assert all(" -> " in c and c.split(" -> ")[0] == c.split(" -> ")[-1] for c in CYCLE_ALLOW)


# ------------------------------------------------------------------------------------- the checks can fail


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


_PACKAGES = {
    "kfloop/__init__.py": "",
    "kfloop/app/__init__.py": "",
    "components/__init__.py": "",
    "components/_kfp.py": "from kfloop import store\n",
    "components/push/__init__.py": "",
    "components/evaluate/__init__.py": "",
    "serving/__init__.py": "",
    "training_image/__init__.py": "",
    "pipelines/__init__.py": "",
    "examples/__init__.py": "",
    "examples/taxi/__init__.py": "",
}


def test_a_ground_module_importing_the_roof_fails(tmp_path):
    root = _tree(
        tmp_path,
        {
            **_PACKAGES,
            "kfloop/store.py": """\
                import json

                import numpy as np
                from kfp import dsl


                def report():
                    from kfloop.app import loop

                    return loop
            """,
            "kfloop/clean.py": """\
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from kfloop.app.loop import Loop
            """,
            "kfloop/app/loop.py": "from kfloop import store\nfrom pipelines import training\n",
            "pipelines/training.py": "from components.push import push\n",
            "components/push/push.py": "from kfloop import store\n",
        },
    )
    got = G.layer_violations(G.build(root))
    assert [(v.importer, v.imported, v.rule, v.where) for v in got] == [
        ("kfloop.clean", "kfloop.app.loop", "ground imports the roof (kfloop/app/)", ("kfloop/clean.py:4",)),
        ("kfloop.store", "kfloop.app.loop", "ground imports the roof (kfloop/app/)", ("kfloop/store.py:8",)),
    ]


def test_a_component_importing_another_component_fails(tmp_path):
    root = _tree(
        tmp_path,
        {
            **_PACKAGES,
            "components/push/push.py": """\
                from components import _kfp
                from components.push import util
                from kfloop import store


                def push():
                    from components.evaluate.evaluate import read_blessing

                    return read_blessing
            """,
            "components/push/util.py": "from . import push\n",
            "components/evaluate/evaluate.py": "import importlib\n\nM = importlib.import_module('pipelines.training')\n",
            "pipelines/training.py": "from components.push import push\nfrom components.evaluate import evaluate\n",
            "serving/model.py": "from components.evaluate import evaluate\nfrom training_image import trainer\n",
            "training_image/trainer.py": "from serving import model\n",
            "examples/taxi/fetch.py": "from kfloop import store\nfrom components.push import push\n",
            "kfloop/store.py": "",
            "kfloop/datasets.py": "def fetch():\n    import examples.taxi.fetch\n",
            "pipelines/monitoring.py": "from examples.taxi import fetch\n",
            "kfloop/app/cli.py": "from examples.taxi import fetch\nfrom pipelines import training\n",
        },
    )
    got = {v.key: v.rule for v in G.layer_violations(G.build(root))}
    assert got == {
        (
            "components.evaluate.evaluate",
            "pipelines.training",
        ): "components imports pipelines, a floor above it",
        ("components.push.push", "components.evaluate.evaluate"): (
            "component folder components.push imports another component's folder (components.evaluate)"
        ),
        (
            "examples.taxi.fetch",
            "components.push.push",
        ): "examples may import the ground floor only, not components",
        ("kfloop.datasets", "examples.taxi.fetch"): "only the roof may import examples/, not ground",
        ("pipelines.monitoring", "examples.taxi.fetch"): "only the roof may import examples/, not pipelines",
        ("serving.model", "components.evaluate.evaluate"): "serving may not import components/",
    }


def test_a_two_module_cycle_fails(tmp_path):
    root = _tree(
        tmp_path,
        {
            **_PACKAGES,
            "kfloop/a.py": "from . import b\n",
            "kfloop/b.py": "import importlib\n\n\ndef f():\n    return importlib.import_module('kfloop.a')\n",
            # type-only arrows never run: no cycle
            "kfloop/c.py": "from kfloop import d\n",
            "kfloop/d.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from kfloop.c import C\n",
            # a package re-exporting a submodule that imports the package back
            "kfloop/tfdv/__init__.py": "from kfloop.tfdv.ops import check\n",
            "kfloop/tfdv/ops.py": "from kfloop.tfdv import SCHEMA\n",
            # importlib over a package (f-string: one dotted segment per placeholder), relative import back
            "kfloop/app/cli.py": """\
                import importlib


                def build(names):
                    for name in names:
                        importlib.import_module(f"kfloop.app.commands.{name}")
            """,
            "kfloop/app/commands/__init__.py": "",
            "kfloop/app/commands/run.py": "def main():\n    from ..cli import build\n",
            "kfloop/app/commands/plain.py": "",
        },
    )
    g = G.build(root)
    assert G.cycles(g) == [
        "kfloop.a -> kfloop.b -> kfloop.a",
        "kfloop.app.cli -> kfloop.app.commands.run -> kfloop.app.cli",
        "kfloop.tfdv -> kfloop.tfdv.ops -> kfloop.tfdv",
    ]
    assert G.cycle_arrows(g, "kfloop.a -> kfloop.b -> kfloop.a") == [
        "kfloop.a -> kfloop.b at kfloop/a.py:1",
        "kfloop.b -> kfloop.a at kfloop/b.py:5",
    ]
    assert ("kfloop.app.cli", "kfloop.app.commands.plain") in {(a.importer, a.imported) for a in g.arrows}


def test_a_longer_cycle_is_one_chain_from_its_smallest_module(tmp_path):
    root = _tree(
        tmp_path,
        {
            "kfloop/__init__.py": "",
            "kfloop/z.py": "import kfloop.m\n",
            "kfloop/m.py": "import kfloop.a\n",
            "kfloop/a.py": "import kfloop.z\nimport kfloop.m\n",
        },
    )
    assert G.cycles(G.build(root)) == [
        "kfloop.a -> kfloop.m -> kfloop.a",
        "kfloop.a -> kfloop.z -> kfloop.m -> kfloop.a",
    ]


def test_a_600_line_module_without_a_reason_fails(tmp_path):
    filler = "x = 1\n"
    root = _tree(
        tmp_path,
        {
            **_PACKAGES,
            "kfloop/big.py": '"""Many jobs."""\n' + filler * 599,
            "kfloop/mentions.py": '"""Its size is fine, it says (no reason line)."""\n' + filler * 599,
            "kfloop/reasoned.py": '"""A machine.\n\nSize: one cohesive state machine\n"""\n' + filler * 596,
            "kfloop/edge.py": filler * 500,
            "tests/huge.py": filler * 900,
        },
    )
    assert G.oversized(G.build(root)) == [("kfloop/big.py", 600), ("kfloop/mentions.py", 600)]


def test_an_allowlist_entry_no_longer_needed_fails():
    found = {("a", "b"): "a -> b: wrong"}
    assert G.ledger(found, {("a", "b")}, "wrong arrow") == []
    assert G.ledger(found, {("a", "b"), ("c", "d")}, "wrong arrow") == [
        "stale allowlist entry, the wrong arrow is gone (remove it): ('c', 'd')"
    ]
    assert G.ledger(found, set(), "wrong arrow") == ["new wrong arrow: a -> b: wrong"]


def test_an_unreadable_module_names_its_file(tmp_path):
    root = _tree(tmp_path, {"kfloop/__init__.py": "", "kfloop/broken.py": "def f(:\n"})
    with pytest.raises(G.ParseError, match=r"kfloop/broken\.py: cannot parse"):
        G.build(root)
