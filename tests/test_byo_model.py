"""Bring your own model: a hand-written ``tf.Module`` (no Keras) on a non-taxi spec goes through
``kfloop models check``, ``kfloop models publish``, evaluation against a Keras champion (paired interval)
and the push gate; broken modules get one line per problem; the same module as ``spec.trainer``.
"""

import json
from pathlib import Path

import pytest

from components.evaluate.evaluate import evaluate
from components.push.push import PushError, push, push_version
from kfloop import contract
from kfloop import spec as S
from kfloop.store import ModelStore
from tests import byo_module_model as B

NAME = "churn-demo"


def cli(argv: list[str]) -> int:
    from kfloop.app import cli as kcli

    return kcli.main(argv)


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """The synthetic churn spec's files, a hand-written module model of it and a Keras model of it."""
    from training_image.trainer import HParams, train

    d = tmp_path_factory.mktemp("churn")
    paths = B.write_splits(d)
    spec = S.load(paths["spec"])
    paths["module"] = str(d / "module")
    B.export(spec, B.synthetic_frame(1500, seed=1), paths["module"])
    paths["keras"] = str(d / "keras")
    hp = HParams(epochs=10, batch_size=64, learning_rate=0.01, hidden_units=(8,), early_stopping_patience=0)
    train(paths["train"], paths["eval"], paths["keras"], hp, spec=spec, schema_uri=paths["schema"])
    return paths


def test_the_module_passes_models_check(churn, capsys):
    assert cli(["models", "check", churn["module"], "--spec", churn["spec"]]) == 0
    out = capsys.readouterr().out
    assert "follows the model contract for spec 'churn-demo' (5 inputs)" in out
    assert not any(Path(churn["module"], f).exists() for f in (contract.SPEC_FILE, contract.METADATA_FILE))


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("missing_signature", ["signature 'serving_default' is missing (has: predict_raw)"]),
        ("wrong_dtype", ["signature 'predict_raw': input 'tenure_months' is int64, the spec says float32"]),
        (
            "out_of_range",
            [
                "signature 'predict_raw': output 'probability' is outside [0, 1]",
                "signature 'serving_default': output 'probability' is outside [0, 1]",
            ],
        ),
    ],
)
def test_a_broken_module_gets_one_line_per_problem(churn, tmp_path, capsys, breakage, expected):
    spec = S.load(churn["spec"])
    model_dir = str(tmp_path / breakage)
    B.export(spec, B.synthetic_frame(300, seed=3), model_dir, breakage=breakage)
    assert cli(["models", "check", model_dir, "--spec", churn["spec"]]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(f"kfloop models check: {want}"), line


def test_a_model_of_another_spec_fails_the_check_naming_the_inputs(churn, taxi_spec):
    problems = contract.check_model(churn["module"], taxi_spec)
    assert "signature 'predict_raw': no input for feature 'trip_miles' (float32)" in problems
    assert "signature 'predict_raw': input 'plan' is not a feature of the spec" in problems


def test_publish_evaluate_against_a_champion_and_push(churn, tmp_path, capsys):
    """The Keras model is champion; the module is published (no alias), evaluated as challenger against it
    with the paired interval, and pushed as canary only with the blessing of that very version."""
    store_uri = str(tmp_path / "store")
    Path(store_uri).mkdir()
    first = evaluate(churn["eval"], churn["keras"], blessing_path=str(tmp_path / "first.json"))
    assert first.blessed
    r = push(churn["keras"], str(tmp_path / "first.json"), store_uri, NAME)
    assert (r.version, r.alias) == ("v0001", "champion")
    ms = ModelStore(store_uri)
    meta = ms.metadata(NAME, "v0001")
    keras_files = Path(churn["keras"])
    assert meta["spec_sha256"] == contract.sha256_of(str(keras_files / contract.SPEC_FILE))
    assert meta["schema_sha256"] == contract.sha256_of(str(keras_files / contract.SCHEMA_FILE))

    argv = ["models", "publish", churn["module"], "--spec", churn["spec"], "--schema", churn["schema"]]
    assert cli([*argv, "--store", store_uri, "--json"]) == 0
    published = json.loads(capsys.readouterr().out)
    assert published["version"] == "v0002" and published["aliases"] == []
    assert ms.aliases(NAME) == {"champion": "v0001"}  # no alias: it must pass evaluation first
    version_dir = ms.model_uri(NAME, "v0002")
    assert contract.read_spec(version_dir) == S.load(churn["spec"])
    assert Path(version_dir, contract.SCHEMA_FILE).read_text() == Path(churn["schema"]).read_text()
    stored = json.loads(Path(version_dir, contract.METADATA_FILE).read_text())
    assert stored["source"] == "published" and ms.metadata(NAME, "v0002")["source"] == "published"
    assert ms.metadata(NAME, "v0002")["spec_sha256"] == contract.sha256_of(contract.spec_uri(version_dir))

    # Evaluation of the store version as challenger (its spec read from the version) vs the champion.
    blessing_path = str(tmp_path / "challenger.json")
    argv = ["evaluate", "--store", store_uri, "--name", NAME, "--version", "v0002", "--data", churn["eval"]]
    code = cli([*argv, "--baseline", ms.model_uri(NAME, "v0001"), "--blessing", blessing_path])
    capsys.readouterr()
    blessing = json.loads(Path(blessing_path).read_text())
    assert code == 0 and blessing["blessed"], blessing["reasons"]
    assert blessing["model_uri"] == version_dir and blessing["champion_version"] == "v0001"
    interval = blessing["paired"]["comparison"]
    assert interval["low"] < interval["high"] and blessing["paired"]["verdict"] in ("better", "non_inferior")
    assert blessing["slicing"] == [["plan"]] and any(s["slice"] == "plan=basic" for s in blessing["slices"])

    # The push gate: a blessing of another model, or an unblessed one, changes nothing.
    with pytest.raises(PushError, match="judged model .*keras.*not version v0002"):
        push_version(store_uri, NAME, "v0002", str(tmp_path / "first.json"))
    refused = json.loads(Path(blessing_path).read_text())
    refused["blessed"] = False
    refused["reasons"][0]["passed"] = False
    Path(tmp_path / "refused.json").write_text(json.dumps(refused))
    assert not push_version(store_uri, NAME, "v0002", str(tmp_path / "refused.json")).pushed
    assert ms.aliases(NAME) == {"champion": "v0001"}
    assert ms.history(NAME)[-1]["event"] == "rejected"

    assert (
        cli(["models", "push", "v0002", "--blessing", blessing_path, "--store", store_uri, "--name", NAME])
        == 0
    )
    assert ms.aliases(NAME) == {"champion": "v0001", "canary": "v0002"}


def test_publish_refuses_a_broken_model_and_writes_nothing(churn, tmp_path, capsys):
    store_uri = tmp_path / "store"
    store_uri.mkdir()
    broken = str(tmp_path / "broken")
    B.export(S.load(churn["spec"]), B.synthetic_frame(300, seed=3), broken, breakage="missing_signature")
    argv = ["models", "publish", broken, "--spec", churn["spec"], "--store", str(store_uri)]
    assert cli(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "kfloop models publish: signature 'serving_default' is missing (has: predict_raw)"
    assert err[-1].startswith("kfloop models publish: nothing published")
    assert ModelStore(str(store_uri)).versions(NAME) == []


def test_the_module_as_spec_trainer(churn, tmp_path):
    """``trainer: tests.byo_module_model:train``: kfloop calls it, checks the export, adds spec/schema/metadata."""
    from training_image.trainer import TrainError, read_metadata, train

    text = Path(churn["spec"]).read_text().replace("trainer: keras", "trainer: tests.byo_module_model:train")
    spec = S.loads(text + "hyperparameters: {steps: 200}\n")
    model_dir = tmp_path / "model"
    result = train(churn["train"], churn["eval"], str(model_dir), spec=spec, schema_uri=churn["schema"])
    assert result.metrics["auc"] > 0.75 and result.strategy == "user" and result.history == {}
    meta = read_metadata(str(model_dir))
    assert (meta["trainer"], meta["source"], meta["hyperparameters"]) == (
        spec.trainer,
        "trained",
        {"steps": 200},
    )
    assert meta["spec_sha256"] == contract.sha256_of(str(model_dir / contract.SPEC_FILE))
    assert contract.read_spec(str(model_dir)) == spec and contract.check_model(str(model_dir), spec) == []

    bad = S.loads(text.replace("tests.byo_module_model:train", "tests.byo_module_model:nope"))
    with pytest.raises(TrainError, match="trainer 'tests.byo_module_model:nope': module .* has no 'nope'"):
        train(churn["train"], churn["eval"], str(tmp_path / "m2"), spec=bad)
    unknown = S.loads(text + "hyperparameters: {stepz: 1}\n")
    with pytest.raises(TrainError, match="failed: ValueError: unknown hyperparameter.*stepz"):
        train(churn["train"], churn["eval"], str(tmp_path / "m3"), spec=unknown)
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()
