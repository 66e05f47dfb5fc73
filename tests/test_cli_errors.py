"""Issue #18 "Clear errors everywhere": every bad input through the real CLI (``kfloop.app.cli.main``) gives a
non-zero exit and ONE line on stderr that names the file (or the option) and the problem; no traceback.

The cases are in :mod:`tests.cli_cases`: store files (alias, metadata, history, counter, commit marker)
that are garbage, empty, the wrong JSON type or a directory, for ``models list|history``, ``deploy``,
``promote``, ``rollback``, ``serve``; directories where files are expected and files where directories
are expected for ``validate``, ``evaluate``, ``train``, ``schema infer``, ``data fetch``, ``compile``,
``monitor``, ``run``, ``serve --model-dir``; an empty ``--schema``; ``--direct_num_workers=-1``; a binary
``submit --package``; a 5,000-digit version; a missing schema for ``schema infer``; a bad namespace.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from kfloop.app import cli
from tests import cli_cases
from tests.test_store import make_model_dir

CASES = {c[0]: c for c in cli_cases.case_table(Path("/x"), Path("/m"))}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # a command's message (printed by the interpreter) or an argparse usage error
        rc = e.code
        if isinstance(rc, str):
            print(rc, file=sys.stderr)
            rc = 1
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_naming_the_file(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KFLOOP_TRACEBACK", raising=False)
    model = make_model_dir(tmp_path, "m")
    world = tmp_path / "w"
    world.mkdir()
    cases = {c[0]: c for c in cli_cases.build(world, model)}
    _, argv, damage, named = cases[case]
    if damage is not None:
        named = str(damage(world / "store"))
    rc, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert rc not in (0, None), f"exit {rc}, stderr {err!r}"
    assert len(lines) == 1, err
    assert "Traceback" not in err and "\x1b[" not in err
    assert named in lines[0], lines[0]
    assert lines[0].startswith("kfloop "), lines[0]


def test_there_are_enough_cases():
    assert len(CASES) >= 30
    commands = {c[1][0] for c in CASES.values()}
    assert commands >= {
        "models",
        "deploy",
        "promote",
        "rollback",
        "serve",
        "validate",
        "evaluate",
        "train",
        "schema",
        "data",
        "compile",
        "monitor",
        "run",
        "submit",
    }


def test_unexpected_errors_are_one_line_and_traceback_on_request(tmp_path, capsys, monkeypatch):
    from kfloop.app.commands import models

    def boom(args):
        raise RuntimeError("first line\nsecond line \x1b[91mred\x1b[0m")

    monkeypatch.setattr(models, "_list", boom)
    rc, _, err = run_cli(["models", "list", "--store", str(tmp_path)], capsys)
    assert rc == 1 and err == "kfloop models list: RuntimeError: first line\n"
    monkeypatch.setenv("KFLOOP_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli.main(["models", "list", "--store", str(tmp_path)])


def test_monitor_failure_names_the_task_and_the_cause():
    from kfloop.app.commands.monitor import failure_line

    message = (
        "Pipeline \x1b[95m'kfloop-monitoring'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. "
        "Inner task failed: \x1b[96m'monitor-op'\x1b[0m."
    )
    log = [
        "    Traceback (most recent call last):",
        '      File "/x/monitor.py", line 10, in monitor',
        "    components.monitor.monitor.MonitorError: window_start 'x' is not an ISO time",
        "19:00:00.000 - \x1b[91mERROR\x1b[0m - Task \x1b[96m'monitor-op'\x1b[0m finished with status FAILURE",
    ]
    assert failure_line(message, log) == (
        "the monitoring pipeline failed in monitor-op: MonitorError: window_start 'x' is not an ISO time"
    )
    assert failure_line(message, []) == (
        "the monitoring pipeline failed in monitor-op: Pipeline 'kfloop-monitoring' finished with status "
        "FAILURE. Inner task failed: 'monitor-op'."
    )


def test_schema_infer_with_write_may_create_a_missing_schema(tmp_path, capsys):
    """Refusing a missing schema must not block bootstrapping one with --write."""
    model = make_model_dir(tmp_path, "m")
    cli_cases.make_world(tmp_path, model)
    target = tmp_path / "new.pbtxt"
    rc, out, err = run_cli(
        ["schema", "infer", "--spec", str(cli_cases.ROOT / "examples" / "taxi" / "spec.yaml")]
        + ["--data", str(tmp_path / "taxi.csv"), "--schema", str(target), "--write"],
        capsys,
    )
    assert rc == 0, err
    assert target.read_text().strip() and f"wrote {target}" in out


def test_monitor_window_end_before_start_is_one_line_from_the_real_command(tmp_path):
    """A window ending before it starts: refused before any pipeline runs, one line naming the options
    (issue 23 item 9: it was a 105-line kfp.local log with a traceback, then the monitor-op cause)."""
    import subprocess

    from kfloop import store

    ms = store.ModelStore(str(tmp_path / "store"))
    v = ms.publish(
        "taxi-tips",
        str(make_model_dir(tmp_path, "a")),
        {"data_window": {"start": "2013-01-01", "end": "2014-01-01"}},
    )
    ms.set_alias("taxi-tips", "champion", v)
    src = tmp_path / "src.csv"
    src.write_text(
        "\n".join((cli_cases.ROOT / "data" / "chicago_taxi.csv").read_text().splitlines()[:50]) + "\n"
    )
    argv = ["monitor", "--store-uri", str(tmp_path / "store"), "--source", str(src)]
    argv += ["--window-start", "2026-01-02T00:00:00Z", "--window-end", "2026-01-01T00:00:00Z"]
    argv += ["--pipeline-root", str(tmp_path / "runs")]
    r = subprocess.run(
        [sys.executable, "-m", "kfloop.app.cli", *argv],
        capture_output=True,
        text=True,
        cwd=cli_cases.ROOT,
        env={**os.environ, "PYTHONPATH": str(cli_cases.ROOT)},
        timeout=300,
    )
    assert r.returncode == 1, r.stdout[-3000:]
    assert r.stderr.strip().splitlines() == [
        "kfloop monitor: --window-end 2026-01-01T00:00:00Z is not after --window-start 2026-01-02T00:00:00Z"
    ]
    assert r.stdout == "" and not (tmp_path / "runs").exists()
