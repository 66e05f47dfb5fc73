"""Issue 23 items 1 and 9 on the command line: no command writes inside a model store except through the
store's API, an output over an existing file needs --overwrite, an output equal to an input is refused,
blocked data exits 3 everywhere, and a monitor window ending before it starts is one line."""

from __future__ import annotations

import pytest

from kfloop.app import checks
from tests import cli_cases
from tests.conftest import TAXI_SPEC_PATH
from tests.test_cli_errors import run_cli
from tests.test_store import make_model_dir


@pytest.fixture
def world(tmp_path):
    cli_cases.make_world(tmp_path, make_model_dir(tmp_path, "m"))
    return tmp_path


def _one_line(rc, err, *needles):
    lines = err.strip().splitlines()
    assert rc not in (0, None) and len(lines) == 1, (rc, err)
    assert "Traceback" not in err and "\x1b[" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_predict_output_into_the_store_is_refused_and_the_champion_is_untouched(world, capsys):
    store = world / "store"
    target = store / "models" / "taxi-tips" / "v0001" / "model" / "saved_model.pb"
    before = target.read_bytes()
    argv = ["predict", "--input", str(world / "taxi.csv"), "--store-uri", str(store), "--output", str(target)]
    rc, _, err = run_cli(argv, capsys)
    _one_line(rc, err, "inside the model store", str(store))
    assert target.read_bytes() == before


def test_outputs_inside_a_store_found_above_them_are_refused(world, capsys):
    inside = world / "store" / "predictions" / "x"
    for argv in (
        [
            "ingest",
            "--spec",
            TAXI_SPEC_PATH,
            "--source",
            str(world / "taxi.csv"),
            "--output-dir",
            str(inside),
        ],
        [
            "validate",
            "--spec",
            TAXI_SPEC_PATH,
            "--data",
            str(world / "taxi.csv"),
            "--output-dir",
            str(inside),
        ],
        ["compile", "--output-dir", str(inside)],
    ):
        rc, _, err = run_cli(argv, capsys)
        _one_line(rc, err, "inside the model store")
    assert not inside.exists()


def test_predict_output_over_an_existing_file_or_its_input(world, capsys):
    store, src = world / "store", world / "taxi.csv"
    existing = world / "a_file"
    argv = ["predict", "--input", str(src), "--store-uri", str(store), "--output"]
    rc, _, err = run_cli([*argv, str(existing)], capsys)
    _one_line(rc, err, str(existing), "--overwrite")
    assert existing.read_text() == "x"
    rc, _, err = run_cli([*argv, str(src), "--overwrite"], capsys)
    _one_line(rc, err, "same file as --input")


def test_ingest_output_over_existing_files_needs_overwrite(world, capsys):
    out = world / "o"
    argv = [
        "ingest",
        "--spec",
        TAXI_SPEC_PATH,
        "--source",
        str(world / "taxi.csv"),
        "--no-split",
        "--output-dir",
        str(out),
    ]
    assert run_cli(argv, capsys)[0] == 0
    rc, _, err = run_cli(argv, capsys)
    _one_line(rc, err, "dataset.csv", "--overwrite")
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0
    rc, _, err = run_cli(
        [
            "ingest",
            "--spec",
            TAXI_SPEC_PATH,
            "--source",
            str(out / "dataset.csv"),
            "--no-split",
            "--output-dir",
            str(out),
            "--overwrite",
        ],
        capsys,
    )
    _one_line(rc, err, "same file as --source")


def test_ingest_blocked_data_exits_3_like_validate(world, capsys):
    lines = (world / "taxi.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index("fare")] = "twelve"
    lines[3] = ",".join(cells)
    (world / "bad.csv").write_text("\n".join(lines) + "\n")
    rc, _, err = run_cli(
        [
            "ingest",
            "--spec",
            TAXI_SPEC_PATH,
            "--source",
            str(world / "bad.csv"),
            "--output-dir",
            str(world / "o"),
        ],
        capsys,
    )
    assert rc == checks.EXIT_BLOCKING
    _one_line(rc, err, "'fare'", "twelve")


def test_monitor_end_before_start_is_one_line_naming_the_options(world, capsys):
    argv = ["monitor", "--store-uri", str(world / "store"), "--source", str(world / "taxi.csv")]
    argv += ["--window-start", "2026-01-02T00:00:00Z", "--window-end", "2026-01-01T00:00:00Z"]
    rc, out, err = run_cli(argv, capsys)
    _one_line(rc, err, "--window-end", "--window-start")
    assert out == ""


def test_failure_cause_reads_the_task_traceback():
    from kfloop.app.local import failure_cause

    message = "Pipeline \x1b[95m'p'\x1b[0m finished with status FAILURE. Inner task failed: \x1b[96m'batch-input-op'\x1b[0m."
    log = [
        "    Traceback (most recent call last):",
        '      File "/x.py", line 1, in f',
        "    components.batch_predict.batch_predict.BlockedInput: raw extract 'x': column 'fare' (CSV line 5)",
    ]
    assert failure_cause(message, log) == (
        "batch-input-op",
        "BlockedInput",
        "raw extract 'x': column 'fare' (CSV line 5)",
    )
    assert failure_cause(message, [])[1:] == (
        "",
        "Pipeline 'p' finished with status FAILURE. Inner task failed: 'batch-input-op'.",
    )
