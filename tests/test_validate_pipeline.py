"""ingest → validate under kfp.local on the real taxi CSV: passes on clean data, fails the run on bad data."""

from pathlib import Path

import pytest
from kfp import dsl

from components.ingest.component import ingest_op
from components.validate.component import validate_op
from kfloop import config
from kfloop.app.local import run_pipeline
from kfloop.tfdv.schema import default_path
from tests.conftest import TAXI_SPEC_PATH
from tests.plugins.data import TAXI_CUTOFF


@dsl.pipeline(name="validate-test")
def _ingest_validate(source: str, spec: str, schema: str):
    ingest = ingest_op(
        source=source,
        spec=spec,
        cutoff=TAXI_CUTOFF,
        window_start="",
        live_end="",
        eval_fraction=config.DEFAULT_EVAL_FRACTION,
    )
    validate_op(
        data=ingest.outputs["train_data"], spec=spec, schema_uri=schema, skew_data=ingest.outputs["eval_data"]
    )


def _taxi_args() -> dict:
    return {"spec": Path(TAXI_SPEC_PATH).read_text(), "schema": str(default_path(TAXI_SPEC_PATH))}


@pytest.mark.slow
def test_blocking_anomaly_fails_the_run_after_writing_the_report(tmp_path, taxi_csv, capfd):
    lines = taxi_csv.read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("pickup_latitude")
    bad = [lines[0]]
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        if i % 50 == 0 and len(cells) == len(header) and cells[col]:
            cells[col] = "48.5"
        bad.append(",".join(cells))
    source = tmp_path / "bad.csv"
    source.write_text("\n".join(bad) + "\n")
    with pytest.raises(RuntimeError):
        run_pipeline(_ingest_validate, tmp_path / "root", source=str(source), **_taxi_args())
    logs = capfd.readouterr()
    assert "pickup_latitude: FLOAT_TYPE_BIG_FLOAT" in logs.out + logs.err
    reports = list((tmp_path / "root").glob("*/validate-op/report"))
    assert len(reports) == 1 and "FLOAT_TYPE_BIG_FLOAT" in reports[0].read_text()


def test_validate_component_compiles(tmp_path):
    from kfp import compiler

    out = tmp_path / "validate.yaml"
    compiler.Compiler().compile(_ingest_validate, str(out))
    text = out.read_text()
    assert "validate-op" in text and "skew_data" in text and "spec" in text and "beam_pipeline_args" in text
