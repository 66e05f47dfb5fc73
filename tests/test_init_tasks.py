"""``kfloop init`` per task (issue 26): the task proposed from the label, ``--task`` overriding it.

On the synthetic visits (tests/synthetic.py), whose ``minutes`` is a regression label and ``goal`` a
multiclass one: what ``init`` proposes is compared with the hand-written spec of each task; ``--task``
overrides a guess and a label that does not fit the chosen task is refused in one line naming the key;
the leak checks of regression (correlation) and multiclass (per-value purity) exclude a leaking column;
through the real CLI the written spec loads, validates its data with the written schema, and passes the
pre-flight check of ``kfloop run --spec`` (in the slow test, the training pipeline runs on it).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfloop import spec as kspec
from kfloop.app.commands.init import InitRefused, propose
from tests import synthetic

ROOT = Path(__file__).resolve().parents[1]
ROWS = 400
LABELS = ("churned", "minutes", "goal")
#: Rows of the CSV the CLI tests write: enough that the training pipeline's train/eval skew check passes.
CLI_ROWS = 3000


def _frame(rows: int = ROWS, keep: str | None = None):
    """The synthetic visits as stripped strings; of the three labels only ``keep`` (all when None)."""
    import pandas as pd

    frame = pd.read_csv(io.StringIO(synthetic.csv_text(rows)), dtype=str, keep_default_na=False)
    frame = frame.apply(lambda c: c.str.strip())
    return frame if keep is None else frame.drop(columns=[c for c in LABELS if c != keep])


def _proposed(frame, label: str, **kw):
    text, review = propose(frame, label, **kw)
    return kspec.loads(text, origin="proposed"), text, review


def _kinds(spec) -> dict[str, str]:
    return {c.name: c.kind.value for c in spec.columns}


def _refused(frame, label: str, **kw) -> str:
    with pytest.raises(InitRefused) as e:
        propose(frame, label, **kw)
    assert e.value.code == 2 and "\n" not in e.value.message
    return e.value.message


@pytest.mark.parametrize(
    ("task", "label"), [("binary", "churned"), ("regression", "minutes"), ("multiclass", "goal")]
)
def test_the_task_is_proposed_from_the_label_as_the_hand_written_spec_has_it(task, label):
    frame = _frame(keep=label)
    got, text, review = _proposed(frame, label)
    hand = kspec.loads(synthetic.SPECS[task], origin="synthetic")
    assert got.task is hand.task and got.task.value == task and f"task: {task}\n" in text
    assert got.label_spec.column == hand.label_spec.column == label
    assert _kinds(got) == _kinds(hand) and set(got.exclude) == {"visit_id"}
    assert got.check_data(frame) == [] and hand.check_data(_frame()) == []
    assert review[0].startswith(f"  task      {task} (") and "proposed from the label" in review[0]
    if task == "multiclass":
        # Sorted, not the data's (or the hand spec's) order; the same classes.
        assert got.classes == tuple(sorted(synthetic.GOALS)) != hand.classes
        assert set(got.classes) == set(hand.classes) and "4 classes" in review[0]
        by_name = dict(zip(frame["goal"], got.label_values(frame), strict=True))
        assert {g: by_name[g] for g in synthetic.GOALS} == {
            "cardio": 0,
            "mobility": 1,
            "strength": 2,
            "weight": 3,
        }
    elif task == "regression":
        assert got.classes == () and got.label_spec.positive is None
        values = got.label_values(frame)
        present = frame["minutes"] != "NA"
        assert values.isna().sum() == (~present).sum() > 0
        assert values[present].tolist() == pytest.approx(frame["minutes"][present].astype(float).tolist())
        lo, hi = values.min(), values.max()
        assert f"a number to predict ({lo:g}..{hi:g} in the sample)" in text
        assert "  label     minutes: 2.5% missing in the sample (the schema requires a label" in review[1]
    else:
        assert got.label_spec.positive == "yes" and 'positive: "yes"' in text


def test_integer_classes_are_in_numeric_order_and_few_integers_are_multiclass():
    frame = _frame(keep="minutes").drop(columns=["minutes"])
    frame["rating"] = [str([2, 10, 3, 1][i % 4]) for i in range(ROWS)]  # sorted as text: 1, 10, 2, 3
    got, text, _ = _proposed(frame, "rating")
    assert got.task.value == "multiclass" and got.classes == (1, 2, 3, 10)
    assert "classes: [1, 2, 3, 10]" in text
    assert got.label_values(frame).head(4).tolist() == [1, 3, 2, 0]
    # More integers than MAX_INT_CATEGORIES: a regression; floats with few values too.
    frame["rating"] = [str(i % 25) for i in range(ROWS)]
    assert _proposed(frame, "rating")[0].task.value == "regression"
    frame["rating"] = [["0.5", "1.5", "2.5"][i % 3] for i in range(ROWS)]
    assert _proposed(frame, "rating")[0].task.value == "regression"


def test_string_classes_are_quoted_where_yaml_needs_it():
    frame = _frame(keep="goal")
    frame["goal"] = [["Very Good", "Fair", "no", "Good"][i % 4] for i in range(ROWS)]
    got, text, _ = _proposed(frame, "goal")
    assert got.classes == ("Fair", "Good", "Very Good", "no")  # "no" stays a string, not a YAML false
    assert 'classes: [Fair, Good, "Very Good", "no"]' in text
    assert got.check_data(frame) == []


def test_task_overrides_the_guess():
    frame = _frame(keep="minutes")
    visits = frame.drop(columns=["minutes"])
    assert _proposed(visits, "visits")[0].classes == tuple(range(10))  # 0..9: a multiclass guess
    reg, _, review = _proposed(visits, "visits", task="regression")
    assert reg.task.value == "regression" and review[0] == "  task      regression (--task)"
    assert reg.check_data(visits) == [] and "visits" not in reg.input_names
    goal = _frame(keep="goal")
    goal["goal"] = [f"g{i % 30}" for i in range(ROWS)]  # 30 text values: not guessed
    message = _refused(goal, "goal")
    assert "--label 'goal' has 30 values" in message and "pass --task multiclass" in message
    many = _proposed(goal, "goal", task="multiclass")[0]
    assert len(many.classes) == 30 and many.classes[:3] == ("g0", "g1", "g10")


@pytest.mark.parametrize(
    ("label", "task", "positive", "expected"),
    [
        (
            "goal",
            "regression",
            None,
            "--task regression: label 'goal' holds values that are not finite numbers (e.g.",
        ),
        (
            "goal",
            "binary",
            None,
            "--task binary: label 'goal' has 4 values ('cardio', 'mobility', 'strength',",
        ),
        ("minutes", "binary", None, "not two (it looks like a regression task)"),
        (
            "churned",
            "multiclass",
            None,
            "--task multiclass: label 'churned' has 2 values ('no', 'yes'); a "
            "multiclass task needs three classes at least (two: --task binary)",
        ),
        (
            "goal",
            None,
            "cardio",
            "--positive is only for --task binary (label 'goal' is taken as multiclass)",
        ),
        ("minutes", "regression", "10", "--positive is only for --task binary"),
    ],
)
def test_a_label_that_does_not_fit_the_task_is_refused_naming_the_key(label, task, positive, expected):
    assert expected in _refused(_frame(keep=label), label, task=task, positive=positive)


def test_an_infinite_regression_label_is_refused():
    frame = _frame(keep="minutes")
    frame.loc[5, "minutes"] = "inf"
    assert "(e.g. 'inf')" in _refused(frame, "minutes")


def test_per_task_leaks_are_excluded_and_a_correlated_feature_kept():
    import numpy as np

    frame = _frame(keep="minutes")
    present = frame["minutes"] != "NA"
    minutes = frame["minutes"].where(present, "0").astype(float)
    noise = np.random.default_rng(3).normal(0, 1, ROWS)
    frame["billed"] = [f"{v:.2f}" for v in 2 * minutes + 0.1 * noise]  # the label again: a leak
    frame["effort"] = [f"{v:.2f}" for v in minutes + 15 * noise]  # correlated, not a leak
    got, _, review = _proposed(frame, "minutes")
    assert "billed" in got.exclude and "effort" in got.input_names
    assert any(r.startswith("  excluded  billed: label leak: correlation ") for r in review)
    goals = _frame(keep="goal")
    goals["program"] = [f"P-{g}" for g in goals["goal"]]  # one program per goal: a leak
    goals.loc[::100, "program"] = "P-mixed"  # 1% of the rows: still a leak
    got, _, review = _proposed(goals, "goal")
    assert "program" in got.exclude and "plan" in got.input_names
    assert any("excluded  program: label leak: its values give the label with" in r for r in review)


# --------------------------------------------------------------------------------------- through the CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kfloop.app.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=600,
    )


@pytest.fixture(scope="module", params=["regression", "multiclass"])
def written(request, tmp_path_factory):
    """``kfloop init`` on the visits CSV of one task: ``(task, spec path, csv, completed process)``."""
    task = request.param
    label = {"regression": "minutes", "multiclass": "goal"}[task]
    tmp = tmp_path_factory.mktemp(f"init-{task}")
    csv = tmp / "visits.csv"
    frame = _frame(CLI_ROWS, keep=label)
    frame[frame[label] != "NA"].to_csv(csv, index=False)  # training data has a label on every row
    r = _init_cli(csv, label, tmp / "out", task)
    return task, tmp / "out" / "spec.yaml", csv, r


def _init_cli(csv: Path, label: str, out: Path, task: str) -> subprocess.CompletedProcess:
    return _cli("init", "--data", str(csv), "--label", label, "--output", str(out), "--task", task)


def test_cli_writes_a_spec_that_validates_its_data_and_passes_the_run_check(written):
    from kfloop.app.commands.run import _sample_problems
    from kfloop.tfdv import schema as kschema

    task, path, csv, r = written
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"  task      {task} (" in r.stdout
    spec = kspec.load(str(path))
    assert spec.task.value == task and _sample_problems(str(csv), spec) == []  # kfloop run's pre-flight
    schema = kschema.load_schema(path.parent / "schema.pbtxt")
    assert [f.name for f in schema.feature] == list(spec.dataset_columns)
    v = _cli("validate", "--spec", str(path), "--data", str(csv), "--output-dir", str(path.parent / "v"))
    assert v.returncode == 0, (v.stdout + v.stderr)[-3000:]


def test_cli_refuses_a_label_that_does_not_fit_task_in_one_line(tmp_path):
    csv = tmp_path / "visits.csv"
    _frame(keep="goal").to_csv(csv, index=False)
    r = _init_cli(csv, "goal", tmp_path / "out", "regression")
    assert r.returncode == 2 and r.stdout == "" and not (tmp_path / "out").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kfloop init: --task regression: label 'goal' holds"), (
        r.stderr
    )
    bad = _cli("init", "--data", str(csv), "--label", "goal", "--task", "ordinal")
    assert bad.returncode == 2 and "invalid choice: 'ordinal'" in bad.stderr


@pytest.mark.slow
def test_the_training_pipeline_runs_on_what_init_wrote(written, tmp_path):
    """No edit between ``kfloop init`` and a training run, per task: a version is pushed whose spec is
    init's and whose model passes the contract check of its task."""
    from kfloop import contract
    from kfloop.app.local import run_pipeline
    from kfloop.store import ModelStore
    from pipelines import training

    _, path, csv, r = written
    assert r.returncode == 0, r.stderr[-3000:]
    spec = kspec.load(str(path))
    store_uri = str(tmp_path / "store")
    run_pipeline(
        training.create_pipeline(),
        tmp_path / "root",
        spec=str(path),
        source=str(csv),
        store_uri=store_uri,
        model_name=spec.name,
        schema=str(path.parent / "schema.pbtxt"),
        deploy_mode="local",
        epochs=2,
    )
    store = ModelStore(store_uri)
    assert store.versions(spec.name) == ["v0001"]
    version_dir = store.model_uri(spec.name, "v0001")
    assert contract.read_spec(version_dir).digest() == spec.digest()
    assert contract.check_model(version_dir, spec) == []
