"""The built-in trainer and the bring-your-own path for regression and multiclass specs.

One small model per task (300 training rows, 2 epochs, module-scoped) from :mod:`tests.synthetic`; the
regression label is scaled by 1000 so that a prediction in standardised units could not pass for one in
label units.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfloop import clean, contract, datasets
from kfloop import spec as S
from tests import synthetic
from training_image import trainer
from training_image.trainer import HParams, TrainError, early_stopping_monitor, read_split, train

#: Tiny, but with early stopping on (patience 1) so that the monitored key is exercised.
TINY = {
    "epochs": 2,
    "batch_size": 64,
    "learning_rate": 0.01,
    "hidden_units": (8,),
    "early_stopping_patience": 1,
}
SCALE = 1000.0


def _write_splits(folder: Path, spec, scale: float = 1.0) -> dict:
    out = {}
    for name, rows, seed in (("train", 300, 1), ("eval", 150, 2)):
        raw = pd.read_csv(io.StringIO(synthetic.csv_text(rows, seed)), dtype=str, keep_default_na=False)
        frame = clean.clean(raw, spec)
        if scale != 1.0:
            frame[spec.label.name] = frame[spec.label.name] * scale
        out[name] = str(folder / f"{name}.csv")
        datasets.write_dataset(frame, out[name])
    return out


@pytest.fixture(scope="module")
def specs():
    return {t: S.loads(y) for t, y in synthetic.SPECS.items()}


@pytest.fixture(scope="module")
def regression(specs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("regression")
    spec = specs["regression"]
    paths = _write_splits(folder, spec, SCALE)
    result = train(paths["train"], paths["eval"], str(folder / "model"), HParams(**TINY), spec=spec)
    return {**paths, "spec": spec, "result": result, "model": str(folder / "model")}


@pytest.fixture(scope="module")
def multiclass(specs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multiclass")
    spec = specs["multiclass"]
    paths = _write_splits(folder, spec)
    result = train(paths["train"], paths["eval"], str(folder / "model"), HParams(**TINY), spec=spec)
    return {**paths, "spec": spec, "result": result, "model": str(folder / "model")}


def _outputs(model_dir, frame, spec):
    """(serving_default, predict_raw) outputs of a model on a Dataset-form frame."""
    import tensorflow as tf

    sigs = tf.saved_model.load(model_dir).signatures
    key = contract.output_key(spec)
    by_examples = sigs[contract.EXAMPLES_SIGNATURE](examples=tf.constant(contract.to_examples(frame, spec)))
    raw = {k: tf.constant(v) for k, v in contract.encode_inputs(frame, spec).items()}
    return by_examples[key].numpy(), sigs[contract.RAW_SIGNATURE](**raw)[key].numpy()


def test_regression_predicts_in_label_units_per_contract(regression):
    import tensorflow as tf

    spec, model = regression["spec"], regression["model"]
    assert contract.check_model(model, spec) == []
    for sig in tf.saved_model.load(model).signatures.values():
        out = sig.structured_outputs
        assert list(out) == ["prediction"]
        assert out["prediction"].dtype == tf.float32 and out["prediction"].shape.as_list() == [None]
    frame = read_split(regression["eval"], spec, "eval")
    by_examples, by_raw = _outputs(model, frame, spec)
    assert by_raw.shape == (len(frame),) and np.isfinite(by_raw).all()
    np.testing.assert_allclose(by_examples, by_raw, rtol=1e-6)
    y = frame[spec.label.name].to_numpy(dtype=np.float64)
    assert 20 * SCALE < y.mean() < 80 * SCALE  # minutes x 1000
    # In label units (standardised outputs would sit near 0 with a spread near 1).
    assert 0.5 * y.mean() < by_raw.mean() < 1.5 * y.mean(), by_raw.mean()
    meta = trainer.read_metadata(model)
    train_y = read_split(regression["train"], spec, "train")[spec.label.name].to_numpy(dtype=np.float64)
    assert meta["label_scaling"] == pytest.approx({"mean": train_y.mean(), "std": train_y.std()})
    assert meta["task"] == "regression" and meta["classes"] == []
    assert meta["data"]["train_label_mean"] == pytest.approx(train_y.mean())
    # The reported metrics are the exported model's, in label units.
    m = regression["result"].metrics
    err = by_raw.astype(np.float64) - y
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean(err**2)), rel=1e-3)
    assert m["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-3)
    assert m["r2"] == pytest.approx(1 - np.mean(err**2) / y.var(), abs=1e-3)
    assert {"train_rmse", "train_mae", "best_epoch", "epochs_run"} <= set(m) and "auc" not in m
    assert meta["hyperparameters"]["loss"] == "mse"


def test_multiclass_returns_a_softmax_over_the_classes(multiclass):
    import tensorflow as tf

    spec, model = multiclass["spec"], multiclass["model"]
    assert contract.check_model(model, spec) == []
    for sig in tf.saved_model.load(model).signatures.values():
        out = sig.structured_outputs
        assert list(out) == ["probabilities"]
        assert out["probabilities"].dtype == tf.float32
        assert out["probabilities"].shape.as_list() == [None, spec.n_classes]
    frame = read_split(multiclass["eval"], spec, "eval")
    by_examples, by_raw = _outputs(model, frame, spec)
    assert by_raw.shape == (len(frame), 4)
    np.testing.assert_allclose(by_examples, by_raw, rtol=1e-6)
    assert ((by_raw >= 0) & (by_raw <= 1)).all()
    np.testing.assert_allclose(by_raw.sum(axis=1), 1.0, atol=1e-5)
    y = frame[spec.label.name].to_numpy(dtype=np.int64)
    m = multiclass["result"].metrics
    assert m["accuracy"] == pytest.approx(np.mean(by_raw.argmax(axis=1) == y), abs=1e-6)
    log_loss = -np.mean(np.log(by_raw[np.arange(len(y)), y].astype(np.float64)))
    assert m["log_loss"] == pytest.approx(log_loss, rel=1e-4) and m["loss"] == m["log_loss"]
    assert {"train_accuracy", "train_log_loss"} <= set(m)
    meta = trainer.read_metadata(model)
    assert meta["classes"] == list(synthetic.GOALS) and meta["label_scaling"] is None
    assert sum(meta["data"]["train_class_rates"]) == pytest.approx(1.0)
    assert meta["signatures"][contract.RAW_SIGNATURE]["outputs"] == {"probabilities": "float32"}


def test_early_stopping_watches_the_tasks_metric(regression, multiclass):
    assert early_stopping_monitor("binary") == ("val_auc", "max")
    assert early_stopping_monitor(S.Task.REGRESSION) == ("val_rmse", "min")
    assert early_stopping_monitor("multiclass") == ("val_loss", "min")
    for run, monitor in ((regression, "val_rmse"), (multiclass, "val_loss")):
        result = run["result"]
        assert result.metadata["training"]["early_stopping"] == {
            "monitor": monitor,
            "mode": "min",
            "patience": 1,
        }
        watched = result.history[monitor]
        assert len(watched) == result.metrics["epochs_run"] == 2
        assert result.metrics["best_epoch"] == int(np.argmin(watched))
    # Regression curves are in label units: the best epoch's val_rmse is the reported RMSE.
    r = regression["result"]
    assert r.history["val_rmse"][r.metrics["best_epoch"]] == pytest.approx(r.metrics["rmse"], rel=1e-3)


def test_the_train_report_shows_the_tasks_metrics(regression, multiclass):
    from components.train.train_report import render_report

    r = regression["result"]
    page = render_report(r.history, r.metrics, r.metadata)
    assert "RMSE (label units)" in page and "MAE (label units)" in page and "mean squared error" in page
    assert "<th>rmse</th>" in page and "<th>mae</th>" in page and "AUC" not in page
    m = multiclass["result"]
    page = render_report(m.history, m.metrics, m.metadata)
    assert "Log loss" in page and "Accuracy" in page and "<th>log_loss</th>" in page and "AUC" not in page


def test_huber_loss_takes_its_delta():
    from training_image.trainer.fit import _loss_and_metrics

    loss, metrics = _loss_and_metrics("regression", "huber", HParams(loss="huber", huber_delta=0.5))
    # An error of 2 is past delta 0.5: delta * (|e| - delta / 2) = 0.875 (0.5 * e**2 = 2 inside it).
    assert type(loss).__name__ == "Huber"
    assert float(loss(np.array([[0.0]]), np.array([[2.0]]))) == pytest.approx(0.875)
    assert [m.name for m in metrics] == ["rmse", "mae"]
    loss, _ = _loss_and_metrics("regression", "mse", HParams())
    assert type(loss).__name__ == "MeanSquaredError"
    assert HParams(loss="huber").loss_for("regression") == "huber"
    assert HParams().loss_for("multiclass") == "sparse_categorical_crossentropy"


@pytest.mark.parametrize(
    ("task", "hp", "message"),
    [
        ("multiclass", {"loss": "huber"}, "hyperparameter loss='huber': not a loss of task multiclass"),
        ("binary", {"loss": "mse"}, "hyperparameter loss='mse': not a loss of task binary"),
        ("regression", {"huber_delta": 2.0}, "hyperparameter huber_delta=2.0: applies to loss huber only"),
        ("regression", {"loss": "mae"}, "hyperparameter loss='mae': must be one of"),
        ("regression", {"loss": "huber", "huber_delta": -1}, "hyperparameter huber_delta=-1: must be"),
    ],
)
def test_a_wrong_hyperparameter_fails_naming_the_key_before_any_work(specs, tmp_path, task, hp, message):
    # The data does not exist: the error is about the hyperparameter, so nothing was read or trained.
    text = synthetic.SPECS[task] + "hyperparameters: " + json.dumps(hp) + "\n"
    with pytest.raises(TrainError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        train(str(tmp_path / "no.csv"), str(tmp_path / "no.csv"), str(tmp_path / "m"), spec=S.loads(text))
    assert not (tmp_path / "m").exists()


def test_the_cli_refuses_a_loss_of_another_task(tmp_path, capsys):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(synthetic.SPECS["multiclass"])
    nope = str(tmp_path / "nope.csv")
    code = trainer.main(
        [
            "--spec",
            str(spec_path),
            "--train-data",
            nope,
            "--eval-data",
            nope,
            "--model-dir",
            str(tmp_path / "m"),
        ]
        + ["--loss", "mse"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "loss='mse': not a loss of task multiclass" in err[0], err
    assert not (tmp_path / "m").exists()


def test_labels_of_another_task_are_refused_naming_column_and_line(specs, regression, multiclass, tmp_path):
    frame = pd.read_csv(multiclass["train"], dtype=str, keep_default_na=False)
    frame.loc[4, "goal"] = "4"  # K = 4: indices 0..3
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(TrainError, match=r"column 'goal' has 4 at CSV line 6 \(expected a class index 0..3"):
        read_split(str(tmp_path / "bad.csv"), specs["multiclass"], "train")
    frame = pd.read_csv(regression["train"], dtype=str, keep_default_na=False)
    frame.loc[2, "minutes"] = "inf"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(
        TrainError, match=r"column 'minutes' has inf at CSV line 4 \(expected a finite number"
    ):
        read_split(str(tmp_path / "bad.csv"), specs["regression"], "train")
    frame.loc[2, "minutes"] = "slow"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(TrainError, match=r"column 'minutes' has 'slow' at CSV line 4 \(expected a number\)"):
        read_split(str(tmp_path / "bad.csv"), specs["regression"], "train")


# ----- bring your own model: a user function exports any task's output, kfloop checks and scores it -----


def mean_regressor(train_df, eval_df, spec, hyperparameters, output_dir):
    """A user trainer: predicts the training label's mean (in label units)."""
    import tensorflow as tf

    from tests.test_contract_tasks import export_fake

    mean = float(train_df[spec.label.name].mean())
    export_fake(spec, output_dir, "prediction", lambda n: tf.fill([n], tf.constant(mean, tf.float32)))


def uniform_classifier(train_df, eval_df, spec, hyperparameters, output_dir):
    """A user trainer: the uniform distribution over the classes (or, asked to, a binary model's output)."""
    import tensorflow as tf

    from tests.test_contract_tasks import export_fake

    if hyperparameters.get("wrong_output"):
        export_fake(spec, output_dir, "probability", lambda n: tf.fill([n], 0.5))
        return
    k = spec.n_classes
    export_fake(spec, output_dir, "probabilities", lambda n: tf.fill([n, k], 1.0 / k))


def test_a_user_regression_model_is_checked_and_scored_in_label_units(regression, tmp_path):
    text = synthetic.SPECS["regression"] + "trainer: tests.test_train_tasks:mean_regressor\n"
    spec = S.loads(text)
    result = train(regression["train"], regression["eval"], str(tmp_path / "m"), spec=spec)
    y_train = read_split(regression["train"], spec, "train")[spec.label.name].to_numpy(dtype=np.float64)
    y = read_split(regression["eval"], spec, "eval")[spec.label.name].to_numpy(dtype=np.float64)
    pred = np.float32(y_train.mean())
    m = result.metrics
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean((pred - y) ** 2)), rel=1e-5)
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-5)
    assert m["r2"] <= 0.0 and m["train_rmse"] == pytest.approx(y_train.std(), rel=1e-4)
    assert (m["best_epoch"], m["epochs_run"]) == (-1, 0)
    assert contract.check_model(str(tmp_path / "m"), spec) == []


def test_a_user_multiclass_model_is_scored_and_a_wrong_output_refused(multiclass, tmp_path):
    base = synthetic.SPECS["multiclass"] + "trainer: tests.test_train_tasks:uniform_classifier\n"
    result = train(multiclass["train"], multiclass["eval"], str(tmp_path / "m"), spec=S.loads(base))
    assert result.metrics["log_loss"] == pytest.approx(math.log(4), rel=1e-5)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and "train_log_loss" in result.metrics
    wrong = S.loads(base + "hyperparameters: {wrong_output: true}\n")
    with pytest.raises(TrainError, match=r"breaks the model contract: .*no output 'probabilities'") as e:
        train(multiclass["train"], multiclass["eval"], str(tmp_path / "w"), spec=wrong)
    assert "'probability' is the output of a binary model" in str(e.value)
    assert not (tmp_path / "w").exists()


def test_models_check_accepts_each_task_and_refuses_another_tasks_model(
    regression, multiclass, tmp_path, capsys
):
    from kfloop.app import cli

    for run in (regression, multiclass):
        spec_path = tmp_path / f"{run['spec'].task.value}.yaml"
        spec_path.write_text(S.dump(run["spec"]))
        assert cli.main(["models", "check", run["model"], "--spec", str(spec_path)]) == 0
    # The regression model against the multiclass spec: the output is named.
    assert (
        cli.main(["models", "check", regression["model"], "--spec", str(tmp_path / "multiclass.yaml")]) == 1
    )
    err = capsys.readouterr().err
    assert (
        "signature 'predict_raw': no output 'probabilities' (the multiclass output; returns: prediction"
        in err
    )


def test_the_train_component_logs_the_tasks_metrics(regression, tmp_path):
    """train_op's function itself (no KFP run: a few seconds): metrics, model metadata and report."""
    from kfp import dsl

    from components.train.component import train_op

    model = dsl.Model(uri=str(tmp_path / "model"))
    metrics, report = dsl.Metrics(uri=str(tmp_path / "metrics")), dsl.HTML(uri=str(tmp_path / "report.html"))
    train_op.python_func(
        train_data=dsl.Dataset(uri=regression["train"]),
        eval_data=dsl.Dataset(uri=regression["eval"]),
        model=model,
        metrics=metrics,
        report=report,
        spec=synthetic.SPECS["regression"],
        epochs=1,
        batch_size=64,
        hidden_units="8",
        early_stopping_patience=0,
    )
    assert {"rmse", "mae", "r2", "train_rmse", "train_mae", "best_epoch", "epochs_run"} <= set(
        metrics.metadata
    )
    assert "auc" not in metrics.metadata and metrics.metadata["rmse"] > 100  # label units (minutes x 1000)
    assert model.metadata["task"] == "regression"
    assert model.metadata["rmse"] == metrics.metadata["rmse"] and "auc" not in model.metadata
    assert contract.check_model(model.path, regression["spec"]) == []
    assert "RMSE (label units)" in Path(report.path).read_text()
