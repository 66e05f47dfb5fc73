"""``kfloop predict`` killed or stopped midway leaves no logged rows, and a rerun under the same job id logs
every row once (issue 23, items 6 and 9), with the real command in its own process and its kfp.local task
under it. (A failure after scoring: tests/test_batch_jobs.py.)

Before the change: kill -9 midway left 329,114 of 400,000 rows logged, a rerun logged 400,000 more and the
monitor counted both; SIGTERM ended the command (143) while its task finished the job; a failure after
scoring exited 1 after every row was logged, with "Inner task failed: 'batch-input-op'" and ANSI escapes.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from kfloop import datasets, fs, predlog, store

MODEL = "taxi-tips"
ROOT = Path(__file__).resolve().parents[1]
EPOCH, FAR = dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
ROWS = 400_000  # several groups of 65,536 scored rows (seconds) before the job commits


@pytest.fixture(scope="module")
def job(tmp_path_factory, trained_model, taxi_split, taxi_spec):
    tmp = tmp_path_factory.mktemp("signals")
    root = str(tmp / "store")
    ms = store.ModelStore(root)
    version = ms.publish(MODEL, trained_model, {"data_window": {"start": "", "end": "2015-01-01"}})
    ms.set_alias(MODEL, store.CHAMPION, version, expected=None, reason="test", actor="test")
    live = datasets.read_dataset(taxi_split["live"], taxi_spec)
    big = pd.concat([live] * (ROWS // len(live) + 1), ignore_index=True).head(ROWS)
    src = str(tmp / "in.csv")
    datasets.write_dataset(big, src)
    return tmp, root, src


def _start(tmp, root, src, out, request_id, *extra):
    argv = ["predict", "--input", src, "--output", str(out), "--store-uri", root, "--request-id", request_id]
    argv += ["--workdir", str(tmp / f"w-{request_id}"), *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "kfloop.app.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _staged(root) -> list[str]:
    base = fs.join(root, "predictions", MODEL, "_staging")
    return [u for u in fs.list_files(base) if u.endswith(".parquet")] if fs.exists(base) else []


def _logged(root) -> int:
    return sum(b.num_rows for b in predlog.scan(root, MODEL, predlog.PREDICTIONS, EPOCH, FAR))


def _wait_scoring(proc, timeout=300.0):
    """Reads the command's progress until its task has scored a first group of rows (more are to come)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "batch predict: scored rows 0.." in line:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"the job never reported scoring (rc {proc.poll()}): {''.join(seen)[-3000:]}")


@pytest.mark.slow
def test_kill9_and_sigterm_midway_log_nothing_and_a_rerun_logs_every_row_once(job):
    tmp, root, src = job
    # kill -9 of the command while its task scores: the task stops with it, nothing is committed
    proc = _start(tmp, root, src, tmp / "a.csv", "job-a")
    _wait_scoring(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(5)  # an orphaned task would go on scoring and commit in this time
    staged = len(_staged(root))
    time.sleep(3)
    assert len(_staged(root)) == staged  # nothing scores on: the task died with its command
    assert _logged(root) == 0 and not (tmp / "a.csv").exists()

    # SIGTERM: 143, one line, and nothing logged
    proc = _start(tmp, root, src, tmp / "b.csv", "job-b")
    _wait_scoring(proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and "\x1b" not in err, err[-2000:]
    time.sleep(3)
    assert _logged(root) == 0 and not (tmp / "b.csv").exists()

    # the rerun of the killed job under its id: every row logged once, then again once (replaced, not doubled)
    for _ in range(2):
        proc = _start(tmp, root, src, tmp / "a.csv", "job-a", "--overwrite")
        _out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert _logged(root) == ROWS
