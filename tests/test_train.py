"""The trainer on real taxi rows: the SavedModel contract, quality floor, resume, determinism, bad input."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from kfloop import contract
from tests.conftest import TAXI_SPEC_PATH
from training_image import trainer
from training_image.trainer import HParams, TrainError, read_split
from training_image.trainer import train as _train

#: Small config for tests that train their own model (a few seconds each on 2 cores).
TINY = {
    "epochs": 2,
    "batch_size": 128,
    "learning_rate": 0.01,
    "hidden_units": (8,),
    "early_stopping_patience": 0,
}


def _auc(labels, scores) -> float:
    """Mann-Whitney AUC (ties get half credit), independent of Keras' approximation."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos, neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def train(*args, **kwargs):
    """The trainer on the taxi example's spec."""
    return _train(*args, spec=kwargs.pop("spec", TAXI_SPEC_PATH), **kwargs)


def _read_all(uri, spec):
    """A Dataset CSV, typed per the spec, its label-less rows kept."""
    import pandas as pd

    frame = pd.read_csv(uri, dtype=str, keep_default_na=False, na_values=[""])
    for f in (*spec.model_features, spec.label):
        if f.dtype == "float32":
            frame[f.name] = pd.to_numeric(frame[f.name]).astype("float64")
        elif f.dtype == "int64":
            frame[f.name] = pd.to_numeric(frame[f.name]).astype("Int64")
    return frame


def _predict_both(model_dir, frame, spec):
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    examples = contract.to_examples(frame, spec)
    by_examples = loaded.signatures["serving_default"](examples=tf.constant(examples))
    raw = {k: tf.constant(v) for k, v in contract.encode_inputs(frame, spec).items()}
    by_raw = loaded.signatures["predict_raw"](**raw)
    return by_examples["probability"].numpy(), by_raw["probability"].numpy()


@pytest.fixture(scope="module")
def small_split(taxi_split, taxi_spec, tmp_path_factory):
    """1,500 train / 500 eval rows of the real split: enough to learn, quick to train."""
    out = tmp_path_factory.mktemp("small_split")
    paths = {}
    for name, rows in (("train", 1500), ("eval", 500)):
        frame = _read_all(taxi_split[name], taxi_spec).head(rows)
        paths[name] = str(out / f"{name}.csv")
        frame.to_csv(paths[name], index=False, na_rep="")
    return paths


def test_signatures_follow_the_contract(trained_model, taxi_spec):
    import tensorflow as tf

    loaded = tf.saved_model.load(trained_model)
    assert set(loaded.signatures) >= {"serving_default", "predict_raw"}
    _, ex_inputs = loaded.signatures["serving_default"].structured_input_signature
    assert list(ex_inputs) == ["examples"]
    assert ex_inputs["examples"].dtype == tf.string and ex_inputs["examples"].shape.as_list() == [None]
    _, raw_inputs = loaded.signatures["predict_raw"].structured_input_signature
    assert set(raw_inputs) == {f.name for f in taxi_spec.model_features}
    for f in taxi_spec.model_features:
        assert raw_inputs[f.name].dtype.name == f.dtype, f.name
        assert raw_inputs[f.name].shape.as_list() == [None], f.name
    for sig in ("serving_default", "predict_raw"):
        out = loaded.signatures[sig].structured_outputs
        assert list(out) == ["probability"]
        assert out["probability"].dtype == tf.float32 and out["probability"].shape.as_list() == [None]


def test_both_signatures_agree_and_beat_the_floor_on_real_rows(trained_model, taxi_split, taxi_spec):
    frame = read_split(taxi_split["eval"], taxi_spec, "eval")
    by_examples, by_raw = _predict_both(trained_model, frame, taxi_spec)
    assert by_examples.shape == by_raw.shape == (len(frame),)
    np.testing.assert_array_equal(by_examples, by_raw)
    assert np.all((by_raw >= 0) & (by_raw <= 1))
    auc = _auc(frame[taxi_spec.label.name].astype(int), by_raw)
    assert auc > 0.85, auc  # chance is 0.5; EvaluationConfig.auc_floor is 0.75
    meta = json.loads((Path(trained_model) / trainer.METADATA_FILE).read_text())
    assert abs(meta["metrics"]["auc"] - auc) < 0.01  # Keras' bucketed AUC vs the exact one


def test_missing_values_and_unseen_categories_are_handled(trained_model, taxi_split, taxi_spec):
    frame = _read_all(taxi_split["live"], taxi_spec).head(50).copy()
    for f in taxi_spec.model_features:
        if f.nullable:
            frame.loc[frame.index[:25], f.name] = None
    frame.loc[frame.index[25:], "company"] = "A company never seen in training"
    frame.loc[frame.index[25:], "pickup_community_area"] = 999
    by_examples, by_raw = _predict_both(trained_model, frame, taxi_spec)
    assert np.all(np.isfinite(by_raw))
    np.testing.assert_array_equal(by_examples, by_raw)


def test_metadata_describes_the_run(trained_model, taxi_split, taxi_spec):
    meta = trainer.read_metadata(trained_model)
    assert meta["features"] == taxi_spec.describe()
    assert meta["label"] == taxi_spec.label.name
    train = _read_all(taxi_split["train"], taxi_spec)
    assert meta["data"]["train_rows"] == int(train[taxi_spec.label.name].notna().sum())
    assert meta["data"]["train_window"]["start"] < meta["data"]["train_window"]["end"] < "2015-01-01"
    assert meta["hyperparameters"]["learning_rate"] == HParams().learning_rate
    assert set(meta["libraries"]) >= {"tensorflow", "keras", "numpy"}
    assert {"auc", "loss"} <= set(meta["metrics"])
    assert meta["preprocessing"]["payment_type"]["vocabulary"][:2] == ["Cash", "Credit Card"]
    assert meta["training"]["strategy"] == (
        "_DefaultDistributionStrategy" if meta["training"]["device"] == "CPU" else "MirroredStrategy"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", -0.1),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("epochs", 0),
        ("batch_size", 0),
        ("dropout", 1.0),
        ("hidden_units", (64, 0)),
        ("early_stopping_patience", -1),
        ("epochs", 2.5),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^hyperparameter {field}="):
        HParams(**{field: value})


def test_bad_hyperparameters_are_refused_before_any_work(tmp_path, capsys):
    # The data does not exist: the error is about the hyperparameter, so nothing was read or trained.
    code = trainer.main(
        [
            "--spec",
            TAXI_SPEC_PATH,
            "--train-data",
            str(tmp_path / "nope.csv"),
            "--eval-data",
            str(tmp_path / "nope.csv"),
            "--model-dir",
            str(tmp_path / "model"),
            "--learning-rate",
            "-0.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "learning_rate=-0.5" in err
    assert not (tmp_path / "model").exists()
    assert HParams.from_dict({"hidden_units": "16, 8"}).hidden_units == (16, 8)
    with pytest.raises(TrainError, match="unknown hyperparameter.*learning_rat"):
        HParams.from_dict({"learning_rat": 0.1})
    with pytest.raises(TrainError, match="hidden_units='a,b'"):
        HParams.from_dict({"hidden_units": "a,b"})


def test_bad_data_is_refused_naming_the_column(small_split, tmp_path):
    import pandas as pd

    frame = pd.read_csv(small_split["train"], dtype=str, keep_default_na=False).drop(columns=["payment_type"])
    bad = str(tmp_path / "bad.csv")
    frame.to_csv(bad, index=False)
    with pytest.raises(TrainError, match="lacks column.*payment_type"):
        train(bad, small_split["eval"], str(tmp_path / "model"), HParams(**TINY))
    with pytest.raises(TrainError, match="does not exist"):
        train(str(tmp_path / "missing.csv"), small_split["eval"], str(tmp_path / "model"), HParams(**TINY))
    assert not (tmp_path / "model").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(TrainError, match="not empty"):
        train(small_split["train"], small_split["eval"], str(tmp_path / "taken"), HParams(**TINY))


def test_two_cpu_runs_give_the_same_metrics(small_split, tmp_path):
    a = train(small_split["train"], small_split["eval"], str(tmp_path / "a"), HParams(**TINY))
    b = train(small_split["train"], small_split["eval"], str(tmp_path / "b"), HParams(**TINY))
    assert a.history == b.history
    assert a.metrics == b.metrics
    c = train(small_split["train"], small_split["eval"], str(tmp_path / "c"), HParams(**TINY, seed=7))
    assert c.history["loss"] != a.history["loss"]  # the seed is what makes them equal


def test_interrupted_run_resumes_from_its_checkpoint(small_split, tmp_path):
    import keras

    class Preempted(RuntimeError):
        pass

    seen = {}

    class PreemptAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen["weights_after_epoch_0"] = [w.copy() for w in self.model.get_weights()]

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise Preempted("node preempted")

    class WeightsAtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # runs after BackupAndRestore restored the backup
            seen["weights_at_resume"] = [w.copy() for w in self.model.get_weights()]

    hp = HParams(**{**TINY, "epochs": 3})
    backup, model_dir = tmp_path / "backup", tmp_path / "model"
    with pytest.raises(Preempted):
        train(
            small_split["train"],
            small_split["eval"],
            str(model_dir),
            hp,
            str(backup),
            callbacks=[PreemptAfterFirstEpoch()],
        )
    assert not model_dir.exists()  # nothing half-written
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1

    resumed = train(
        small_split["train"],
        small_split["eval"],
        str(model_dir),
        hp,
        str(backup),
        callbacks=[WeightsAtStart()],
    )
    assert resumed.epochs == [1, 2]  # epoch 0 came from the checkpoint
    assert len(resumed.history["loss"]) == 2
    for restored, saved in zip(seen["weights_at_resume"], seen["weights_after_epoch_0"], strict=True):
        np.testing.assert_array_equal(restored, saved)
    assert resumed.metrics["auc"] > 0.75
    assert not backup.exists()  # removed once training completed
    assert (model_dir / "saved_model.pb").is_file()


@pytest.mark.parametrize(
    ("tf_config", "gpus", "kind", "chief"),
    [
        (None, 0, "default", True),
        (None, 2, "mirrored", True),
        ({"cluster": {"worker": ["w0:2222"]}, "task": {"type": "worker", "index": 0}}, 0, "default", True),
        (
            {"cluster": {"worker": ["w0:2222", "w1:2222"]}, "task": {"type": "worker", "index": 1}},
            1,
            "multi_worker",
            False,
        ),
        (
            {"cluster": {"worker": ["w0:2222", "w1:2222"]}, "task": {"type": "worker", "index": 0}},
            0,
            "multi_worker",
            True,
        ),
        (
            {"cluster": {"chief": ["c:2222"], "worker": ["w0:2222"]}, "task": {"type": "worker", "index": 0}},
            0,
            "multi_worker",
            False,
        ),
        (
            {"cluster": {"chief": ["c:2222"], "worker": ["w0:2222"]}, "task": {"type": "chief", "index": 0}},
            0,
            "multi_worker",
            True,
        ),
    ],
)
def test_strategy_follows_tf_config_and_devices(monkeypatch, tf_config, gpus, kind, chief):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert trainer.strategy_kind(gpus=gpus) == kind
    assert trainer.is_chief() is chief
    backup = trainer.worker_checkpoint_dir("gs://b/backup/")
    assert (backup == "gs://b/backup/") is chief  # other workers never share the chief's backup file


def test_bad_tf_config_is_refused(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(TrainError, match="TF_CONFIG"):
        trainer.strategy_kind(gpus=0)


def test_trainer_cli_trains_and_writes_metrics(small_split, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "metrics.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training_image.trainer",
            "--spec",
            TAXI_SPEC_PATH,
            "--train-data",
            small_split["train"],
            "--eval-data",
            small_split["eval"],
            "--model-dir",
            str(tmp_path / "model"),
            "--epochs",
            "3",
            "--batch-size",
            "128",
            "--learning-rate",
            "0.01",
            "--hidden-units",
            "8",
            "--verbose",
            "0",
            "--metrics-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(out.read_text())
    assert metrics["epochs_run"] == 3 and 0.75 < metrics["auc"] <= 1.0
    assert (tmp_path / "model" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_two_workers_train_with_multi_worker_mirrored_strategy(small_split, tmp_path):
    """What a TFJob does: two trainer processes on loopback, TF_CONFIG naming both; worker 0 exports."""
    import socket
    import subprocess
    import sys

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    procs = []
    for i in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        argv = [sys.executable, "-m", "training_image.trainer", "--spec", TAXI_SPEC_PATH]
        argv += ["--train-data", small_split["train"]]
        argv += ["--eval-data", small_split["eval"], "--model-dir", str(tmp_path / "model")]
        argv += ["--checkpoint-dir", str(tmp_path / "backup"), "--epochs", "2", "--batch-size", "128"]
        argv += [
            "--learning-rate",
            "0.01",
            "--hidden-units",
            "8",
            "--early-stopping-patience",
            "0",
            "-v",
            "0",
        ]
        procs.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["strategy"] for r in results] == ["CollectiveAllReduceStrategy"] * 2
    assert results[0]["auc"] == results[1]["auc"] > 0.75  # one synchronised model
    assert (tmp_path / "model" / "saved_model.pb").is_file()
    assert (
        trainer.read_metadata(str(tmp_path / "model"))["training"]["strategy"]
        == "CollectiveAllReduceStrategy"
    )
    assert not list(tmp_path.glob("backup*"))  # every worker removed its backup after completing


def test_kfloop_train_cli_refuses_bad_hyperparameters(tmp_path, capsys):
    from kfloop.app import cli

    with pytest.raises(SystemExit, match=r"^kfloop train: hyperparameter dropout=1.5: must be in \[0, 1\)$"):
        cli.main(
            [
                "train",
                "--spec",
                TAXI_SPEC_PATH,
                "--train-data",
                "x.csv",
                "--eval-data",
                "y.csv",
                "--model-dir",
                str(tmp_path / "m"),
                "--dropout",
                "1.5",
            ]
        )
    assert not (tmp_path / "m").exists()


# ----- a non-taxi spec: every input, dtype, preprocessing and the label come from the spec -----


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """The synthetic churn spec (ISO time, yes/no label, NA token, boolean, string categorical), its
    Dataset-form splits and a schema file."""
    from kfloop import spec as S
    from tests import byo_module_model as B

    out = tmp_path_factory.mktemp("churn")
    paths = {"spec": S.loads(B.SPEC_YAML)}
    for name, rows, seed in (("train", 600, 1), ("eval", 300, 2)):
        paths[name] = str(out / f"{name}.csv")
        B.synthetic_frame(rows, seed).to_csv(paths[name], index=False, na_rep="")
    paths["schema"] = str(out / "schema.pbtxt")
    Path(paths["schema"]).write_text('feature { name: "tenure_months" type: FLOAT }\n')
    return paths


def test_a_non_taxi_spec_trains_and_exports_spec_and_schema(churn, tmp_path):
    import hashlib

    import tensorflow as tf

    from kfloop import spec as S

    spec = churn["spec"]
    model_dir = tmp_path / "model"
    result = _train(
        churn["train"], churn["eval"], str(model_dir), HParams(**TINY), spec=spec, schema_uri=churn["schema"]
    )
    names = {p.name for p in model_dir.iterdir()}
    assert {contract.SPEC_FILE, contract.SCHEMA_FILE, contract.METADATA_FILE, "saved_model.pb"} <= names
    assert S.load(str(model_dir / contract.SPEC_FILE)) == spec
    assert contract.read_spec(str(model_dir)) == spec
    assert (model_dir / contract.SCHEMA_FILE).read_text() == Path(churn["schema"]).read_text()
    meta = trainer.read_metadata(str(model_dir))
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert meta["spec_sha256"] == sha(model_dir / contract.SPEC_FILE)
    assert meta["schema_sha256"] == sha(model_dir / contract.SCHEMA_FILE)
    assert meta["label"] == "churned" and meta["features"] == spec.describe()
    assert meta["signatures"][contract.RAW_SIGNATURE]["inputs"] == {
        "tenure_months": "float32",
        "monthly_spend": "float32",
        "plan": "string",
        "support_calls": "int64",
        "promo": "int64",
    }
    assert meta["data"]["train_window"]["start"].startswith("2015-01-01")
    assert meta["preprocessing"]["plan"]["vocabulary"] and "rate" in meta["preprocessing"]["promo"]
    assert result.metadata == meta
    assert contract.check_model(str(model_dir), spec) == []
    _, raw_inputs = (
        tf.saved_model.load(str(model_dir)).signatures[contract.RAW_SIGNATURE].structured_input_signature
    )
    assert set(raw_inputs) == set(spec.input_names)  # no taxi input anywhere


def test_a_non_taxi_spec_refuses_data_of_another_spec(churn, small_split, tmp_path):
    with pytest.raises(TrainError, match="train data .* lacks column.*tenure_months"):
        _train(small_split["train"], churn["eval"], str(tmp_path / "m"), HParams(**TINY), spec=churn["spec"])
    with pytest.raises(TrainError, match="schema .*nope.pbtxt.* does not exist"):
        _train(
            churn["train"], churn["eval"], str(tmp_path / "m"), spec=churn["spec"], schema_uri="nope.pbtxt"
        )
    assert not (tmp_path / "m").exists()
