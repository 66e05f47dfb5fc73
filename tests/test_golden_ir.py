"""Golden IR: the compiled pipelines must match the committed YAML in tests/golden/ (normalized).

An IR change (a component's code, a parameter, a setting) shows up here and in the pull request's diff
of tests/golden/. Refresh on purpose with:

    KFLOOP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_ir.py
"""

import difflib
import os
import re
from pathlib import Path

import pytest
import yaml

from kfloop.app import compile as kc

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("KFLOOP_UPDATE_GOLDEN") == "1"
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_VOLATILE_KEYS = {"sdkVersion"}


def normalize(obj):
    """Drops SDK-version keys and masks timestamps, recursively."""
    if isinstance(obj, dict):
        return {k: normalize(v) for k, v in obj.items() if k not in _VOLATILE_KEYS}
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    if isinstance(obj, str):
        return _TIMESTAMP.sub("<timestamp>", obj)
    return obj


def _docs(path: Path) -> list:
    with open(path) as f:
        return [normalize(d) for d in yaml.safe_load_all(f) if d is not None]


def test_normalize_ignores_only_volatile_parts():
    a = {"sdkVersion": "kfp-2.13.0", "x": ["built 2026-11-23T12:00:00.123Z"], "y": 1}
    b = {"sdkVersion": "kfp-2.14.0", "x": ["built 2027-01-01T00:00:00Z"], "y": 1}
    assert normalize(a) == normalize(b)
    assert normalize(a) != normalize(dict(b, y=2))


@pytest.fixture(scope="module")
def fresh_dir(tmp_path_factory):
    return GOLDEN if UPDATE else tmp_path_factory.mktemp("fresh")


@pytest.mark.parametrize("name", sorted(kc.PIPELINES))
def test_compiled_ir_matches_golden(fresh_dir, name):
    fresh = kc.compile_all(fresh_dir, names=[name])
    golden = GOLDEN / f"{name}.yaml"
    assert golden.exists(), f"{golden} missing; create it with KFLOOP_UPDATE_GOLDEN=1 pytest {__file__}"
    want, got = _docs(golden), _docs(fresh[name])
    if want != got:
        diff = difflib.unified_diff(
            yaml.safe_dump_all(want, sort_keys=True).splitlines(),
            yaml.safe_dump_all(got, sort_keys=True).splitlines(),
            f"golden/{name}.yaml",
            f"compiled {name}",
            lineterm="",
            n=2,
        )
        shown = "\n".join(list(diff)[:80])
        pytest.fail(
            f"compiled {name} pipeline differs from {golden} (normalized). If the change is intended, refresh:\n"
            f"  KFLOOP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_ir.py\n{shown}"
        )
