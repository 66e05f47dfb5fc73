"""The data gate: validate succeeds and keeps its report; the gate stops the run before training."""

from pathlib import Path

import pandas as pd
import pytest

from components.gate.gate import check
from kfloop.app.local import run_pipeline
from kfloop.tfdv import ops
from kfloop.tfdv import schema as kschema
from pipelines import training
from tests.conftest import TAXI_SPEC_PATH


def _validated(tmp_path, frame_path, spec):
    schema = ops.load_schema(kschema.default_path(TAXI_SPEC_PATH))
    result = ops.run_validation(frame_path, spec=spec, schema=schema, environment="TRAINING")
    out = tmp_path / "anomalies"
    ops.write_artifacts(result, anomalies_dir=str(out))
    return out


def test_gate_passes_clean_data_and_stops_blocking_anomalies(tmp_path, taxi_split, taxi_spec):
    clean = _validated(tmp_path / "clean", taxi_split["eval"], taxi_spec)
    assert check(str(clean)).startswith("Data gate passed")

    bad = pd.read_csv(taxi_split["eval"], dtype=str, keep_default_na=False)
    bad.loc[bad.index[::40], "trip_start_hour"] = "25"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ops.BlockingAnomaliesError, match="trip_start_hour: INT_TYPE_BIG_INT"):
        check(str(_validated(tmp_path / "bad", str(tmp_path / "bad.csv"), taxi_spec)))


def test_missing_summary_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        check(str(tmp_path / "nothing"))


@pytest.mark.slow
def test_bad_data_stops_the_training_pipeline_before_training(tmp_path, taxi_csv, taxi_spec):
    raw = pd.read_csv(taxi_csv, dtype=str, keep_default_na=False)
    raw.loc[raw.index[::50], "trip_start_hour"] = "25"
    raw.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(RuntimeError):
        run_pipeline(
            training.create_pipeline(),
            tmp_path / "root",
            source=str(tmp_path / "bad.csv"),
            spec=Path(TAXI_SPEC_PATH).read_text(),
            model_name=taxi_spec.name,
            store_uri=str(tmp_path / "store"),
            deploy_mode="local",
        )
    (run,) = (tmp_path / "root").iterdir()
    report = (run / "validate-op" / "report").read_text()  # validate succeeded and kept its report
    assert "INT_TYPE_BIG_INT" in report and "trip_start_hour" in report
    assert not (run / "train-op").exists()  # no training on bad data
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("saved_model.pb"))
