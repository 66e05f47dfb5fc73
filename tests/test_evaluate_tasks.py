"""Evaluate per task with real TFMA on real rows: a small regression and a small multiclass model.

Per task two models are trained once (module scope) on :mod:`tests.synthetic` rows: a good one, and a bad
one trained on shuffled labels (it has learnt nothing from the features). Two TFMA runs per task: the good
challenger against the bad champion (blessed, the paired comparison says ``better``) and the bad
challenger against the good champion (refused, the reasons name the task's metric and its units). The
metrics are checked against values computed here with numpy from the models' own outputs on the eval rows.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pandas as pd
import pytest

from components.evaluate.eval_report import comparison_table, render_html
from components.evaluate.evaluate import SliceRow, decide, evaluate
from kfloop import clean, contract, datasets
from kfloop import metrics as km
from kfloop import spec as S
from kfloop.blessing import read_blessing
from kfloop.config import EvaluationConfig
from tests import synthetic
from training_image import trainer
from training_image.trainer import HParams, read_split, train

CFG = EvaluationConfig()
HP = {"epochs": 6, "batch_size": 32, "learning_rate": 0.02, "hidden_units": (16,)}
SLICE = "plan"


def _write(folder, spec, rows, seed, name, shuffle=False):
    raw = pd.read_csv(io.StringIO(synthetic.csv_text(rows, seed)), dtype=str, keep_default_na=False)
    frame = clean.clean(raw, spec)
    if shuffle:
        frame[spec.label.name] = np.random.default_rng(3).permutation(frame[spec.label.name].to_numpy())
    path = str(folder / f"{name}.csv")
    datasets.write_dataset(frame, path)
    return path


def _scenario(task, tmp_path_factory):
    """Good and bad models of ``task``, both evaluations and the eval rows with both models' outputs."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp(task)
    spec = S.loads(synthetic.SPECS[task])
    train_csv = _write(folder, spec, 500, 1, "train")
    shuffled_csv = _write(folder, spec, 500, 1, "shuffled", shuffle=True)
    eval_csv = _write(folder, spec, 300, 2, "eval")
    good, bad = str(folder / "good"), str(folder / "bad")
    train(train_csv, eval_csv, good, HParams(**HP), spec=spec)
    train(shuffled_csv, eval_csv, bad, HParams(**HP), spec=spec)
    frame = read_split(eval_csv, spec, "eval").reset_index(drop=True)
    key = contract.output_key(spec)
    examples = tf.constant(contract.to_examples(frame, spec, with_label=False))
    outputs = {
        name: np.asarray(
            tf.saved_model.load(model).signatures[contract.EXAMPLES_SIGNATURE](examples=examples)[key],
            dtype=np.float64,
        )
        for name, model in (("good", good), ("bad", bad))
    }
    better = evaluate(
        eval_csv,
        good,
        bad,
        blessing_path=str(folder / "better.json"),
        report_path=str(folder / "better.html"),
    )
    worse = evaluate(eval_csv, bad, good, blessing_path=str(folder / "worse.json"))
    dtype = np.float64 if task == "regression" else np.int64
    return {
        "spec": spec,
        "folder": folder,
        "good": good,
        "bad": bad,
        "frame": frame,
        "labels": frame[spec.label.name].to_numpy(dtype=dtype),
        "outputs": outputs,
        "better": better,
        "worse": worse,
    }


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return _scenario("regression", tmp_path_factory)


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    return _scenario("multiclass", tmp_path_factory)


def _by_slice(blessing) -> dict:
    return {s["slice"]: s for s in blessing["slices"]}


def _reason(blessing, kind, metric, slice_="Overall") -> dict:
    (r,) = [
        r for r in blessing["reasons"] if r["kind"] == kind and r["metric"] == metric and r["slice"] == slice_
    ]
    return r


# ----------------------------------------------------------------------------- regression


def test_regression_metrics_are_tfmas_and_match_the_rows(regression):
    b = regression["better"].blessing
    y, p = regression["labels"], regression["outputs"]["good"]
    assert b["task"] == "regression" and b["classes"] == []
    assert b["eval_rows"] == len(y) and b["rows_without_label"] > 0  # the synthetic label has gaps
    e = p - y
    want = {
        "mae": np.mean(np.abs(e)),
        "rmse": math.sqrt(np.mean(e**2)),
        "r2": 1 - np.mean(e**2) / np.var(y),
        "mean_label": y.mean(),
        "mean_prediction": p.mean(),
        "calibration": p.sum() / y.sum(),  # calibration of the mean: mean prediction / mean label
    }
    m = b["metrics"]  # TFMA's (r2: ours, from the same rows)
    assert m["example_count"] == len(y)
    for name, value in want.items():
        assert m[name] == pytest.approx(value, rel=1e-4), name
    assert b["eval_metrics"] == pytest.approx(km.task_metrics("regression", y, p))
    assert b["eval_metrics"]["r2"] == pytest.approx(want["r2"], rel=1e-9)
    # The champion (the bad model) in the same run, on the same rows.
    q = regression["outputs"]["bad"]
    assert b["champion_metrics"]["rmse"] == pytest.approx(math.sqrt(np.mean((q - y) ** 2)), rel=1e-4)
    # Per slice: count, RMSE and the calibration of the mean (mean label vs mean prediction).
    plan = regression["frame"][SLICE].to_numpy()
    slices = _by_slice(b)
    for value in ("basic", "plus", "pro"):
        s = slices[f"{SLICE}={value}"]
        rows = plan == value
        assert s["examples"] == rows.sum() and s["positives"] is None
        c = s["challenger"]
        assert c["rmse"] == pytest.approx(math.sqrt(np.mean(e[rows] ** 2)), rel=1e-4)
        assert c["mean_label"] == pytest.approx(y[rows].mean(), rel=1e-5)
        assert c["mean_prediction"] == pytest.approx(p[rows].mean(), rel=1e-5)
        assert c["calibration"] == pytest.approx(p[rows].sum() / y[rows].sum(), rel=1e-4)
        assert c["r2"] == pytest.approx(1 - np.mean(e[rows] ** 2) / np.var(y[rows]), rel=1e-6)
    assert (
        b["units"]["rmse"] == "label units (minutes)" and b["units"]["mse"] == "squared label units (minutes)"
    )
    assert b["tfma_validation_ok"] is True


def test_regression_good_model_is_blessed_with_a_better_paired_mse(regression):
    b = read_blessing(str(regression["folder"] / "better.json"))
    assert b["blessed"] is True, [r["message"] for r in b["reasons"] if not r["passed"]]
    value = _reason(b, "value", "r2")
    assert value["passed"] and value["threshold"] == CFG.min_r2 and value["challenger"] > CFG.min_r2
    assert "R²" in value["message"] and "min_r2" in value["message"]
    change = _reason(b, "change", "mse")
    c = change["interval"]
    assert c["task"] == "regression" and c["metric"] == "mse" and c["units"] == "squared label units"
    assert c["paired"] and c["rows"] == b["eval_rows"] and change["verdict"] == "better"
    y, p, q = regression["labels"], regression["outputs"]["good"], regression["outputs"]["bad"]
    assert c["challenger"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-6)
    assert c["diff"] == pytest.approx(np.mean((q - y) ** 2) - np.mean((p - y) ** 2), rel=1e-6)
    assert c["low"] > 0 and "squared label units" in change["message"]
    assert c["secondary"]["metric"] == "mae" and c["secondary"]["units"] == "label units"
    assert b["paired"]["margin"] == pytest.approx(0.02 * c["champion"])
    judged = [r for r in b["reasons"] if r["metric"] == "rmse" and r["judged"]]
    assert judged and all(r["passed"] for r in judged)


def test_regression_bad_model_is_refused_naming_r2_and_mse(regression):
    b = regression["worse"].blessing
    assert b["blessed"] is False
    value = _reason(b, "value", "r2")
    assert not value["passed"] and value["challenger"] < CFG.min_r2
    assert f"floor min_r2 {CFG.min_r2}" in value["message"] and "(unitless)" in value["message"]
    change = _reason(b, "change", "mse")
    assert not change["passed"] and change["verdict"] == "worse"
    assert change["interval"]["high"] < 0 and "MSE challenger" in change["message"]
    slices = [r for r in b["reasons"] if r["metric"] == "rmse" and r["judged"] and not r["passed"]]
    assert slices and all("max_slice_rmse_increase" in r["message"] for r in slices)
    assert all("label units" in r["message"] for r in slices)
    assert b["tfma_validation_ok"] is False  # TFMA's own MSE thresholds agree


def test_regression_report_and_table_show_the_tasks_metrics(regression):
    result = regression["better"]
    text = comparison_table(result)
    assert text.startswith("Task: regression\n") and "RMSE" in text and " AUC" not in text
    assert "[label units (minutes)]" in text and "Paired comparison (" in text and ": better" in text
    page = (regression["folder"] / "better.html").read_text()
    assert page == render_html(result)
    for name in ("<td>mae</td>", "<td>rmse</td>", "<td>r2</td>", "<th>mean_prediction</th>"):
        assert name in page
    assert "<svg" not in page and "Task: <b>regression</b>" in page


# ----------------------------------------------------------------------------- multiclass


def test_multiclass_metrics_are_tfmas_and_match_the_rows(multiclass):
    b = multiclass["better"].blessing
    y, p = multiclass["labels"], multiclass["outputs"]["good"]
    assert b["task"] == "multiclass" and b["classes"] == synthetic.GOALS
    assert b["eval_rows"] == len(y)
    pred = p.argmax(axis=1)
    m = b["metrics"]
    assert m["example_count"] == len(y)
    assert m["accuracy"] == pytest.approx(np.mean(pred == y), abs=1e-6)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-4)
    mine = km.task_metrics("multiclass", y, p, synthetic.GOALS)
    assert b["eval_metrics"] == pytest.approx(mine)
    recalls = {}
    for k, name in enumerate(synthetic.GOALS):
        rows = y == k
        recalls[name] = np.mean(pred[rows] == k)
        assert m[f"recall[{name}]"] == pytest.approx(recalls[name], abs=1e-9), name
    f1 = []
    for k in range(len(synthetic.GOALS)):
        tp, fp, fn = (
            np.sum((pred == k) & (y == k)),
            np.sum((pred == k) & (y != k)),
            np.sum((pred != k) & (y == k)),
        )
        f1.append(2 * tp / (2 * tp + fp + fn))
    assert m["macro_f1"] == pytest.approx(np.mean(f1), abs=1e-9) == mine["macro_f1"]
    # TFMA's arg-max confusion matrix, [actual][predicted] in the spec's class order.
    cm = np.zeros((4, 4), dtype=int)
    np.add.at(cm, (y, pred), 1)
    assert b["confusion_matrix"] == cm.tolist() == multiclass["better"].confusion_matrix
    plan = multiclass["frame"][SLICE].to_numpy()
    for value, s in _by_slice(b).items():
        if value == "Overall":
            continue
        rows = plan == value.split("=")[1]
        assert s["examples"] == rows.sum()
        assert s["challenger"]["accuracy"] == pytest.approx(np.mean(pred[rows] == y[rows]), abs=1e-6)
    # The value floor's class prior: the training split's class frequencies from the model's metadata.
    prior = b["class_prior"]
    assert prior["source"] == "training"
    assert prior["rates"] == pytest.approx(
        trainer.read_metadata(multiclass["good"])["data"]["train_class_rates"]
    )
    assert prior["log_loss"] == pytest.approx(km.prior_log_loss(prior["rates"], y))
    assert b["units"]["log_loss"] == "nats" and b["units"]["recall[*]"] == "fraction of the class's rows"


def test_multiclass_good_model_is_blessed_with_a_better_paired_log_loss(multiclass):
    b = read_blessing(str(multiclass["folder"] / "better.json"))
    assert b["blessed"] is True, [r["message"] for r in b["reasons"] if not r["passed"]]
    value = _reason(b, "value", "log_loss")
    ceiling = CFG.max_log_loss_ratio * b["class_prior"]["log_loss"]
    assert value["passed"] and value["threshold"] == pytest.approx(ceiling) and value["challenger"] <= ceiling
    assert "nats" in value["message"] and "max_log_loss_ratio" in value["message"]
    change = _reason(b, "change", "log_loss")
    c = change["interval"]
    assert c["task"] == "multiclass" and c["units"] == "nats" and change["verdict"] == "better"
    assert c["paired"] and c["rows"] == b["eval_rows"] and c["low"] > 0
    y, p, q = multiclass["labels"], multiclass["outputs"]["good"], multiclass["outputs"]["bad"]
    rows = np.arange(len(y))
    assert c["diff"] == pytest.approx(np.mean(np.log(p[rows, y]) - np.log(q[rows, y])), rel=1e-6)
    assert c["secondary"]["metric"] == "accuracy" and c["secondary"]["units"] == "fraction of rows"
    assert b["paired"]["margin"] == 0.01
    assert "nats" in change["message"]


def test_multiclass_bad_model_is_refused_naming_log_loss(multiclass):
    b = multiclass["worse"].blessing
    assert b["blessed"] is False
    value = _reason(b, "value", "log_loss")
    assert not value["passed"] and value["challenger"] > value["threshold"]
    assert f"ceiling max_log_loss_ratio {CFG.max_log_loss_ratio}" in value["message"]
    assert "nats" in value["message"] and "training class frequencies" in value["message"]
    change = _reason(b, "change", "log_loss")
    assert (
        not change["passed"] and change["verdict"] == "worse" and "log loss challenger" in change["message"]
    )
    text = comparison_table(multiclass["worse"])
    assert text.startswith("Task: multiclass (classes: strength, cardio, mobility, weight)\n")
    assert "NOT BLESSED" in text and "[FAIL] log_loss @ Overall" in text and "recall[cardio]" in text


def test_multiclass_report_shows_the_confusion_matrix_and_recalls(multiclass):
    page = (multiclass["folder"] / "better.html").read_text()
    assert "confusion matrix (arg-max class)" in page and "<th>recall[mobility]</th>" in page
    assert "<td>macro_f1</td>" in page and "<td>log_loss</td>" in page and "<svg" not in page


# ----------------------------------------------------------------------------- rules (no TFMA)


def _row(name, n, challenger, champion, task):
    feature, _, value = name.partition("=")
    mk = lambda extra: {"example_count": float(n), **extra}  # noqa: E731
    return SliceRow(name, feature or None, value or None, mk(challenger), mk(champion), task)


def test_slice_rules_per_task_veto_only_judged_slices():
    inc = CFG.max_slice_rmse_increase
    slices = [
        _row("Overall", 1000, {"rmse": 10.0}, {"rmse": 10.0}, "regression"),
        _row("plan=basic", 200, {"rmse": 10.0 * (1 + 2 * inc)}, {"rmse": 10.0}, "regression"),
        _row("plan=plus", 200, {"rmse": 10.0 * (1 + inc / 2)}, {"rmse": 10.0}, "regression"),
        _row("plan=pro", CFG.min_slice_examples - 1, {"rmse": 99.0}, {"rmse": 1.0}, "regression"),
    ]
    reasons = {r["slice"]: r for r in decide(slices, CFG, True, task="regression", eval_metrics={"r2": 0.5})}
    assert not reasons["plan=basic"]["passed"] and reasons["plan=basic"]["metric"] == "rmse"
    assert "+20.0%" in reasons["plan=basic"]["message"] and "label units" in reasons["plan=basic"]["message"]
    assert reasons["plan=plus"]["passed"] and reasons["plan=plus"]["judged"]
    assert reasons["plan=pro"]["passed"] and not reasons["plan=pro"]["judged"]
    drop = CFG.max_slice_accuracy_drop
    slices = [
        _row("Overall", 1000, {"accuracy": 0.6}, {"accuracy": 0.6}, "multiclass"),
        _row("plan=basic", 200, {"accuracy": 0.6 - 2 * drop}, {"accuracy": 0.6}, "multiclass"),
        _row("plan=plus", 200, {"accuracy": 0.6 - drop / 2}, {"accuracy": 0.6}, "multiclass"),
    ]
    got = decide(
        slices, CFG, True, task="multiclass", eval_metrics={"log_loss": 0.5}, prior={"log_loss": 1.0}
    )
    by = {r["slice"]: r for r in got if r["kind"] == "change"}
    assert not by["plan=basic"]["passed"] and "max_slice_accuracy_drop" in by["plan=basic"]["message"]
    assert by["plan=plus"]["passed"]
    (value,) = [r for r in got if r["kind"] == "value"]
    assert value["passed"] and value["threshold"] == pytest.approx(CFG.max_log_loss_ratio)


def test_value_floors_per_task_follow_the_config():
    one = [_row("Overall", 1000, {}, {}, "regression")]
    strict = dataclasses.replace(CFG, min_r2=0.9)
    (value, _) = decide(one, strict, False, task="regression", eval_metrics={"r2": 0.5})
    assert not value["passed"] and value["metric"] == "r2" and "floor min_r2 0.9" in value["message"]
    (value, _) = decide(one, CFG, False, task="regression", eval_metrics={"r2": None})
    assert not value["passed"] and "label is constant" in value["message"]
    one = [_row("Overall", 1000, {}, {}, "multiclass")]
    (value, note) = decide(
        one, CFG, False, task="multiclass", eval_metrics={"log_loss": 0.99}, prior={"log_loss": 1.0}
    )
    assert not value["passed"] and value["metric"] == "log_loss" and note["kind"] == "no_champion"
    with pytest.raises(ValueError, match="min_r2"):
        EvaluationConfig(min_r2=1.0)


def cli(argv: list[str]) -> int:
    """``kfloop evaluate`` as kfloop.app.cli.main runs it (only this command registered)."""
    from kfloop.app.cli import _Parser
    from kfloop.app.commands import evaluate as command

    parser = _Parser(prog="kfloop")
    command.register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def test_cli_names_a_bad_task_threshold(tmp_path, capsys):
    data = tmp_path / "eval.csv"
    data.write_text("a\n1\n")
    code = cli(["evaluate", "--model", str(tmp_path), "--data", str(data), "--max-log-loss-ratio", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("kfloop evaluate: ") and "max_log_loss_ratio" in err


def test_the_evaluate_component_logs_the_tasks_metrics(multiclass, tmp_path):
    """evaluate_op's function itself (no KFP run): metrics, the K x K confusion matrix, the verdict."""
    from kfp import dsl

    from components.evaluate.component import evaluate_op

    out = {
        "blessing": dsl.Artifact(uri=str(tmp_path / "blessing")),
        "metrics": dsl.Metrics(uri=str(tmp_path / "metrics")),
        "classification": dsl.ClassificationMetrics(uri=str(tmp_path / "classification")),
        "report": dsl.HTML(uri=str(tmp_path / "report.html")),
    }
    (blessed,) = evaluate_op.python_func(
        eval_data=dsl.Dataset(uri=str(multiclass["folder"] / "eval.csv")),
        model=dsl.Model(uri=multiclass["good"]),
        champion_uri=multiclass["bad"],
        **out,
    )
    b = read_blessing(out["blessing"].path)
    assert blessed is True and b["blessed"] and out["blessing"].metadata["task"] == "multiclass"
    logged = out["metrics"].metadata
    assert logged["accuracy"] == pytest.approx(multiclass["better"].blessing["metrics"]["accuracy"])
    assert {"log_loss", "macro_f1", "recall[weight]", "champion_log_loss"} <= set(logged)
    assert logged["log_loss_change"] == pytest.approx(b["paired"]["comparison"]["diff"], abs=1e-6)
    assert logged["log_loss_change_low"] > 0 and "auc" not in logged and "auc_change" not in logged
    cm = out["classification"].metadata["confusionMatrix"]
    assert [c["displayName"] for c in cm["annotationSpecs"]] == synthetic.GOALS
    assert cm["rows"] == [{"row": r} for r in b["confusion_matrix"]]
