"""Bring your own model, monitored: a hand-written ``tf.Module`` (no Keras) of the non-taxi ``churn-demo``
spec goes ``kfloop schema infer`` → ``kfloop models publish`` → ``kfloop evaluate`` → ``kfloop models push``
(first champion), gets its monitoring reference stored beside the version, and the monitor, run with the
spec and schema stored with the champion, finds no drift in an unshifted window of the prediction log and
drift on exactly the shifted feature in a shifted one; the run records name the version."""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from components.monitor import monitor as M
from kfloop import contract, predlog
from kfloop import reference as R
from kfloop import spec as S
from kfloop.store import ModelStore
from tests import byo_module_model as B

NAME = "churn-demo"
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)  # window 1: [T0, T0 + 1h), window 2: the hour after
HOUR = dt.timedelta(hours=1)
ROWS = 800  # per window (the monitor acts on windows of at least min_examples = 500)
SHIFTED = "tenure_months"


def cli(argv: list[str]) -> int:
    from kfloop.app import cli as kcli

    return kcli.main(argv)


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """The module model as the store's champion, its reference stored; ``(store_uri, version, paths)``."""
    d = tmp_path_factory.mktemp("churn-monitoring")
    paths = B.write_splits(d)
    # The schema the training data and the spec give (write_splits' stand-in is replaced).
    argv = ["schema", "infer", "--spec", paths["spec"], "--data", paths["train"], "--schema", paths["schema"]]
    assert cli([*argv, "--write"]) == 0
    spec = S.load(paths["spec"])
    paths["module"] = str(d / "module")
    B.export(spec, B.synthetic_frame(1500, seed=1), paths["module"])
    store_uri = str(d / "store")
    Path(store_uri).mkdir()

    argv = ["models", "publish", paths["module"], "--spec", paths["spec"], "--schema", paths["schema"]]
    argv += [
        "--train",
        paths["train"],
        "--eval",
        paths["eval"],
    ]  # its monitoring reference, published with it
    assert cli([*argv, "--store", store_uri]) == 0
    ms = ModelStore(store_uri)
    (version,) = ms.versions(NAME)
    blessing = str(d / "blessing.json")
    argv = ["evaluate", "--store", store_uri, "--name", NAME, "--version", version, "--data", paths["eval"]]
    assert cli([*argv, "--blessing", blessing]) == 0
    assert json.loads(Path(blessing).read_text())["blessed"]
    assert cli(["models", "push", version, "--blessing", blessing, "--store", store_uri, "--name", NAME]) == 0
    assert ms.aliases(NAME) == {"champion": version}
    assert R.stored_reference(store_uri, NAME, version)  # published with the version, write-once
    return store_uri, version, paths


def _probabilities(model_dir: str, frame, spec) -> np.ndarray:
    """The served model's own probabilities of Dataset-form rows (its ``predict_raw``)."""
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures[contract.RAW_SIGNATURE]
    enc = contract.encode_inputs(frame, spec)
    return fn(**{k: tf.constant(v) for k, v in enc.items()})[contract.OUTPUT_KEY].numpy()


def _log_window(store_uri, version, spec, frame, start, rid):
    """Writes the frame's rows as the prediction log of one window (as the predictor logs them)."""
    model_dir = ModelStore(store_uri).model_uri(NAME, version)
    table = predlog.prediction_table(
        rid,
        start.timestamp() + np.arange(len(frame)) * 0.01,
        version,
        contract.encode_inputs(frame, spec),
        _probabilities(model_dir, frame, spec),
        schema=predlog.prediction_schema(spec),
    )
    predlog.write_table(store_uri, NAME, "predictions", table)
    return table


def test_the_module_champion_is_monitored_by_its_stored_spec(champion):
    store_uri, version, paths = champion
    got_version, spec, schema_path = M.version_spec(store_uri, NAME)
    assert got_version == version and spec == S.load(paths["spec"]) and spec.name == NAME
    assert Path(schema_path).read_text() == Path(paths["schema"]).read_text()
    reference = R.champion_reference(store_uri, NAME, "", "", spec=spec)  # the stored one, no source
    assert reference.version == version

    same = B.synthetic_frame(ROWS, seed=7, start=1_483_228_800)
    shifted = B.synthetic_frame(ROWS, seed=8, start=1_483_228_800)
    shifted[SHIFTED] = (shifted[SHIFTED] * 0.25).round(1)  # still inside the spec's range [0, 120]
    table = _log_window(store_uri, version, spec, same, T0, "same")
    _log_window(store_uri, version, spec, shifted, T0 + HOUR, "shifted")
    # Labels of the unshifted window arrive (the truth of each row): the live AUC is the module's.
    labels = predlog.feedback_table(
        table.column("request_id").to_pylist(),
        table.column("row").to_pylist(),
        same[spec.label.name].astype(int).tolist(),
        (T0 + 2 * HOUR).timestamp(),
    )
    predlog.write_table(store_uri, NAME, "feedback", labels)

    def run(start):
        return M.monitor(
            store_uri,
            NAME,
            start.isoformat(),
            (start + HOUR).isoformat(),
            spec=spec,
            schema_path=schema_path,
            reference=reference,
            champion_version=version,
        )

    quiet, drifted = run(T0), run(T0 + HOUR)
    checked = [f.name for f in spec.model_features if f.drift_mode != "off"]
    for s in (quiet, drifted):
        assert s["status"] == M.OK and s["rows"] == ROWS and s["bad_records"] == 0, s["bad_examples"]
        assert s["champion_version"] == version and s["model_versions"] == {version: ROWS}
        assert s["spec_name"] == NAME and s["spec_sha256"] == spec.digest()
        assert sorted(d["feature"] for d in s["drift"]) == sorted(checked)
        assert all(d["value"] is not None for d in s["drift"]), s["drift"]

    assert [d for d in quiet["drift"] if d["exceeded"]] == [], quiet["drift"]
    assert quiet["labelled_rows"] == ROWS and quiet["live_auc"] > 0.7, quiet["live_auc"]
    crossed = [d for d in drifted["drift"] if d["exceeded"]]
    assert [(d["feature"], d["measure"], d["mode"]) for d in crossed] == [
        (SHIFTED, "jensen_shannon_divergence", "trigger")
    ], drifted["drift"]
    assert crossed[0]["value"] > crossed[0]["threshold"] == spec.drift_threshold(SHIFTED)
    assert drifted["labelled_rows"] == 0 and drifted["live_auc"] is None

    runs = M.read_runs(store_uri, NAME)
    assert [r["run_id"] for r in runs] == [quiet["run_id"], drifted["run_id"]]
    assert all(r["champion_version"] == version and r["model_versions"] == {version: ROWS} for r in runs)
    assert [r["window_start"] for r in runs] == [quiet["window_start"], drifted["window_start"]]
