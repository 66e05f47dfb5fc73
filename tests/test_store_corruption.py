"""Store fault injection (issue #12): every store file truncated or garbled in turn.

For each damaged store, ``kfloop models list``, ``kfloop deploy --dry-run``, ``kfloop serve`` (its
pre-flight in the pipeline env, and the server's own start-up in the serving env up to where it would bind)
and ``kfloop monitor`` (up to where the pipeline would start) either stop with ONE readable line naming the
damaged file - never a traceback - or go on with a model whose every file still matches its manifest:
never a silently used broken model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kfloop import store
from kfloop.app import cli
from kfloop.store import ModelStore

NAME = "taxi-tips"
ROOT = Path(__file__).resolve().parents[1]
SERVING_PYTHON = ROOT / ".venv-serving" / "bin" / "python"


@pytest.fixture(scope="module")
def template(trained_model, tmp_path_factory) -> Path:
    """A store with v0001 (champion) and v0002 (canary) of a real SavedModel, and a history."""
    root = tmp_path_factory.mktemp("corruption") / "store"
    ms = ModelStore(str(root))
    v1 = ms.publish(NAME, trained_model, {"run_id": "r1", "metrics": {"auc": 0.9}})
    ms.set_alias(NAME, store.CHAMPION, v1)
    v2 = ms.publish(NAME, trained_model, {"run_id": "r2"})
    ms.set_alias(NAME, store.CANARY, v2)
    return root


def damaged_files(template: Path) -> list[str]:
    return sorted(
        p.relative_to(template).as_posix() for p in template.rglob("*") if p.is_file() and p.name != ".lock"
    )


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # garbled: same size, every byte flipped
        path.write_bytes(bytes(b ^ 0xA5 for b in data) or b"\xa5")


def _cases(template: Path):
    return [(rel, how) for rel in damaged_files(template) for how in ("truncated", "garbled")]


def _used_by_champion(rel: str) -> bool:
    """Files that serving / deploying / monitoring the champion (v0001) reads (not its ``_CLAIM``, which
    only keeps the version number taken)."""
    v1 = f"models/{NAME}/v0001/"
    return (rel.startswith(v1) and rel != v1 + "_CLAIM") or rel == f"models/{NAME}/aliases/champion.json"


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # the interpreter prints a str code on stderr and exits 1
        rc = e.code
        if isinstance(rc, str):
            print(rc, file=sys.stderr)
            rc = 1
    _, err = capsys.readouterr()
    return rc, err


def _assert_one_line(err: str, path: Path, what: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"{what}: {err!r}"
    assert str(path) in lines[0] or path.name in lines[0], f"{what} does not name {path}: {lines[0]}"


def _champion_intact(root: Path) -> bool:
    try:
        ModelStore(str(root)).verify(NAME, "v0001")
        return True
    except store.StoreError:
        return False


class _PipelineWouldStart(BaseException):  # not an Exception: passes the CLI handler
    pass


def test_every_file_truncated_or_garbled(template, tmp_path, capsys, monkeypatch):
    import kfloop.app.local

    def no_pipeline(*a, **kw):
        raise _PipelineWouldStart

    monkeypatch.setattr(kfloop.app.local, "run_pipeline", no_pipeline)
    source = tmp_path / "taxi.csv"
    source.write_text((ROOT / "data" / "chicago_taxi.csv").read_text().splitlines()[0] + "\n")
    cases = _cases(template)
    assert len(cases) >= 40
    counts = {"models list": 0, "deploy": 0, "serve": 0, "monitor": 0, "went on": 0}
    for i, (rel, how) in enumerate(cases):
        root = tmp_path / f"s{i}"
        shutil.copytree(template, root)
        path = root / rel
        damage(path, how)
        what = f"{rel} {how}"

        rc, err = run_cli(["models", "list", "--store", str(root)], capsys)
        assert rc == 1, f"models list accepted {what}"
        _assert_one_line(err, path, f"models list, {what}")
        counts["models list"] += 1

        for cmd, argv in (
            (
                "deploy",
                [
                    "deploy",
                    "--store",
                    str(root),
                    "--version",
                    "champion",
                    "--canary-percent",
                    "0",
                    "--dry-run",
                ],
            ),
            ("serve", ["serve", "--store-uri", str(root), "--dry-run"]),
            ("monitor", ["monitor", "--store-uri", str(root), "--source", str(source)]),
        ):
            try:
                rc, err = run_cli(argv, capsys)
            except _PipelineWouldStart:
                rc, err = 0, ""
            if rc == 0:
                # It went on: only with an intact champion, and never when a file it reads is damaged.
                assert not _used_by_champion(rel), f"{cmd} used the damaged {what}"
                assert _champion_intact(root)
                counts["went on"] += 1
            else:
                _assert_one_line(err, path, f"{cmd}, {what}")
                counts[cmd] += 1
    print("corruption cases:", len(cases), "refusals:", counts)
    assert counts["deploy"] and counts["serve"] and counts["monitor"]


@pytest.mark.skipif(not SERVING_PYTHON.exists(), reason="serving env (.venv-serving) not built")
def test_server_start_up_refuses_damaged_files(template, tmp_path):
    """``python -m serving`` itself (kserve + TF in the serving env), up to where it would bind."""
    cases, paths = [], {}
    for i, (rel, how) in enumerate(_cases(template)):
        if not (_used_by_champion(rel) or i % 8 == 0):  # every file the server reads, a sample of the rest
            continue
        root = tmp_path / f"s{i}"
        shutil.copytree(template, root)
        damage(root / rel, how)
        cid = f"{rel} {how}"
        paths[cid] = (rel, root / rel)
        argv = [
            "--store-uri",
            str(root),
            "--model-name",
            NAME,
            "--no-prediction-log",
            "--workdir",
            str(tmp_path / f"w{i}"),
        ]
        cases.append({"id": cid, "argv": argv})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run(
        [str(SERVING_PYTHON), "-m", "tests.serving_corruption_driver"],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases)
    refused = 0
    for res in results:
        rel, path = paths[res["case"]]
        assert not res["exit"].startswith("TRACEBACK"), res
        if res["exit"] == "STARTED":
            assert not _used_by_champion(rel), f"the server loaded the damaged {res['case']}"
            assert res["loaded"] == ["v0001"]
        else:
            assert res["exit"].startswith("python -m serving: ") and "\n" not in res["exit"], res
            assert str(path) in res["exit"] or path.name in res["exit"], res
            refused += 1
    print("server start-up cases:", len(results), "refused:", refused)
    assert refused >= 10
