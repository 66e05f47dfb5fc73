"""The bad CLI inputs of issue #18 ("Clear errors everywhere"), as data for tests/test_cli_errors.py.

``build(tmp)`` creates a small world (a model store with two committed versions and a champion, a raw taxi
CSV, a binary file, an empty file, a directory) and returns ``[(case id, argv, damage, file that must be
named)]``; ``damage(store_root)`` (or None) breaks one store file before the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

NAME = "taxi-tips"
ROOT = Path(__file__).resolve().parents[1]


def make_store(root: Path, model_dir: Path) -> Path:
    from kfloop import store

    ms = store.ModelStore(str(root))
    v1 = ms.publish(NAME, str(model_dir), {"run_id": "r1"})
    ms.set_alias(NAME, store.CHAMPION, v1)
    v2 = ms.publish(NAME, str(model_dir), {"run_id": "r2"})
    ms.set_alias(NAME, store.CHAMPION, v2)
    ms.set_alias(NAME, store.CANARY, v1)  # promote / deploy / rollback all read v0001
    return root


def _break(rel: str, how: str):
    def damage(store_root: Path) -> Path:
        if rel == "history":
            path = sorted((store_root / "models" / NAME / "history").iterdir())[0]
        else:
            path = store_root / "models" / NAME / rel
        if how == "garbage":
            path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff garbage")
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "list":
            path.write_text(json.dumps(["v0001"]))
        elif how == "truncated":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        elif how == "dir":
            path.unlink()
            path.mkdir()
            (path / "x").write_text("{}")
        return path

    return damage


def make_world(tmp: Path, model_dir: Path) -> None:
    """The files :func:`case_table` refers to, under ``tmp``."""
    make_store(tmp / "store", model_dir)
    lines = (ROOT / "data" / "chicago_taxi.csv").read_text().splitlines()[:300]
    (tmp / "taxi.csv").write_text("\n".join(lines) + "\n")
    (tmp / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    (tmp / "empty.pbtxt").write_text("")
    (tmp / "a_dir").mkdir()
    (tmp / "a_file").write_text("x")


def build(tmp: Path, model_dir: Path) -> list[tuple[str, list[str], object, str]]:
    """:func:`make_world` then :func:`case_table`."""
    make_world(tmp, model_dir)
    return case_table(tmp, model_dir)


def case_table(tmp: Path, model_dir: Path) -> list[tuple[str, list[str], object, str]]:
    """Every bad input: ``(id, argv, damage or None, text the error line must contain)``; no disk access."""
    store_root = tmp / "store"
    csv, binary, empty = tmp / "taxi.csv", tmp / "binary.yaml", tmp / "empty.pbtxt"
    a_dir, a_file = tmp / "a_dir", tmp / "a_file"
    st = ["--store", str(store_root)]
    cases: list[tuple[str, list[str], object, str]] = []
    # Store files that are garbage, empty, the wrong JSON type or a directory.
    files = {
        "alias": "aliases/champion.json",
        "metadata": "v0001/metadata.json",
        "history": "history",
        "counter": "_next_version.json",
        "marker": "v0001/_COMMITTED",
    }
    commands = {
        "models-list": ["models", "list", *st],
        "models-history": ["models", "history", *st],
        "deploy": ["deploy", *st, "--version", "v0001", "--canary-percent", "0", "--dry-run"],
        "promote": ["promote", *st],
        "rollback": ["rollback", *st],
        "serve": ["serve", "--store-uri", str(store_root), "--model-ref", "canary", "--dry-run"],
    }
    needs = {  # which store files each command reads
        "models-list": {"alias", "metadata", "history", "counter", "marker"},
        "models-history": {"alias", "history"},
        "deploy": {"alias", "metadata", "marker"},
        "promote": {"alias", "metadata", "marker"},
        "rollback": {"alias", "history", "metadata", "marker"},
        "serve": {"alias", "metadata", "marker"},
    }
    for cmd, argv in commands.items():
        for kind, rel in files.items():
            if kind not in needs[cmd]:
                continue
            for how in ("garbage", "empty", "list", "dir"):
                if kind == "history" and how == "dir":
                    continue
                if cmd == "serve" and kind == "alias":
                    rel = "aliases/canary.json"  # the alias it serves
                cases.append((f"{cmd}-{kind}-{how}", argv, _break(rel, how), "<damaged>"))
    # A directory where a file is expected, or a file where a directory is expected.
    spec = ["--spec", str(ROOT / "examples" / "taxi" / "spec.yaml")]
    cases += [
        ("validate-spec-dir", ["validate", "--spec", str(a_dir), "--data", str(csv)], None, str(a_dir)),
        (
            "schema-infer-spec-empty",
            ["schema", "infer", "--spec", str(empty), "--data", str(csv)],
            None,
            str(empty),
        ),
        (
            "ingest-spec-binary",
            ["ingest", "--spec", str(tmp / "binary.yaml"), "--source", str(csv)],
            None,
            "binary.yaml",
        ),
        ("validate-data-dir", ["validate", *spec, "--data", str(a_dir)], None, str(a_dir)),
        (
            "validate-schema-dir",
            ["validate", *spec, "--data", str(csv), "--schema", str(a_dir)],
            None,
            str(a_dir),
        ),
        (
            "validate-schema-empty",
            ["validate", *spec, "--data", str(csv), "--schema", str(empty)],
            None,
            str(empty),
        ),
        (
            "validate-output-file",
            ["validate", *spec, "--data", str(csv), "--output-dir", str(a_file)],
            None,
            str(a_file),
        ),
        (
            "validate-beam-workers",
            ["validate", *spec, "--data", str(csv), "--beam-arg=--direct_num_workers=-1"],
            None,
            "--direct_num_workers",
        ),
        ("evaluate-model-file", ["evaluate", "--model", str(a_file), "--data", str(csv)], None, str(a_file)),
        (
            "evaluate-data-dir",
            ["evaluate", "--model", str(model_dir), "--data", str(a_dir)],
            None,
            str(a_dir),
        ),
        (
            "train-data-dir",
            [
                "train",
                *spec,
                "--train-data",
                str(a_dir),
                "--eval-data",
                str(csv),
                "--model-dir",
                str(tmp / "m"),
            ],
            None,
            str(a_dir),
        ),
        (
            "train-model-dir-file",
            ["train", *spec, "--train-data", str(csv), "--eval-data", str(csv), "--model-dir", str(a_file)],
            None,
            str(a_file),
        ),
        ("schema-infer-data-dir", ["schema", "infer", *spec, "--data", str(a_dir)], None, str(a_dir)),
        (
            "schema-infer-schema-dir",
            ["schema", "infer", *spec, "--data", str(csv), "--schema", str(a_dir)],
            None,
            str(a_dir),
        ),
        (
            "schema-infer-schema-missing",
            ["schema", "infer", *spec, "--data", str(csv), "--schema", str(tmp / "missing.pbtxt")],
            None,
            str(tmp / "missing.pbtxt"),
        ),
        (
            "schema-infer-schema-empty",
            ["schema", "infer", *spec, "--data", str(csv), "--schema", str(empty)],
            None,
            str(empty),
        ),
        ("data-fetch-dir-file", ["data", "fetch", "--data-dir", str(a_file)], None, str(a_file)),
        (
            "data-fetch-wheel-dir",
            ["data", "fetch", "--data-dir", str(tmp / "d"), "--wheel", str(a_dir)],
            None,
            str(a_dir),
        ),
        ("compile-output-file", ["compile", "--output-dir", str(a_file)], None, str(a_file)),
        (
            "init-data-dir",
            ["init", "--data", str(a_dir), "--label", "tips", "--output", str(tmp / "init")],
            None,
            str(a_dir),
        ),
        (
            "init-data-binary",
            ["init", "--data", str(binary), "--label", "tips", "--output", str(tmp / "init")],
            None,
            str(binary),
        ),
        (
            "init-output-file",
            ["init", "--data", str(csv), "--label", "tips", "--output", str(a_file)],
            None,
            str(a_file),
        ),
        (
            "init-label-missing",
            ["init", "--data", str(csv), "--label", "no_such", "--output", str(tmp / "init")],
            None,
            "no_such",
        ),
        (
            "monitor-store-file",
            ["monitor", "--store-uri", str(a_file), "--source", str(csv)],
            None,
            str(a_file),
        ),
        (
            "monitor-source-dir",
            ["monitor", "--store-uri", str(store_root), "--source", str(a_dir)],
            None,
            str(a_dir),
        ),
        (
            "monitor-model-name",
            ["monitor", "--store-uri", str(store_root), "--source", str(csv), "--model-name", "../../x"],
            None,
            "../../x",
        ),
        ("run-workdir-file", ["run", *spec, "--workdir", str(a_file), "--data", str(csv)], None, str(a_file)),
        ("run-data-dir", ["run", *spec, "--workdir", str(tmp / "w"), "--data", str(a_dir)], None, str(a_dir)),
        ("serve-model-dir-file", ["serve", "--model-dir", str(a_file), "--dry-run"], None, str(a_file)),
        (
            "submit-binary-package",
            ["submit", "--package", str(binary), "--host", "http://127.0.0.1:9"],
            None,
            str(binary),
        ),
        (
            "deploy-huge-version",
            ["deploy", *st, "--version", "v" + "9" * 5000, "--dry-run"],
            None,
            "invalid version",
        ),
        (
            "serve-huge-ref",
            ["serve", "--store-uri", str(store_root), "--model-ref", "v" + "9" * 5000, "--dry-run"],
            None,
            "invalid version",
        ),
        ("deploy-bad-namespace", ["deploy", *st, "--namespace", "Bad_NS!", "--dry-run"], None, "Bad_NS!"),
        (
            "schedule-bad-name",
            ["schedule", "--store-uri", "gs://b/s", "--source", "gs://b/x.csv", "--model-name", "a/../b"],
            None,
            "a/../b",
        ),
        (
            "monitor-cluster-bad-name",
            ["monitor", "--store-uri", "gs://b/s", "--source", "gs://b/x.csv", "--model-name", "x\n"]
            + ["--host", "http://127.0.0.1:9"],
            None,
            "invalid model name",
        ),
        (
            "models-list-bad-name",
            ["models", "list", *st, "--name", "taxi-tips\n"],
            None,
            "invalid model name",
        ),
        (
            "serve-bad-name",
            ["serve", "--store-uri", str(store_root), "--model-name", "../../x", "--dry-run"],
            None,
            "../../x",
        ),
    ]
    return cases
