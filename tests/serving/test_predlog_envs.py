"""Log files written by the serving env's pyarrow are read by the pipeline env's pyarrow 10 (and back)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kfloop import predlog as P
from kfloop.spec import Kind
from kfloop.spec import load as load_spec
from tests.conftest import TAXI_SPEC_PATH

#: The taxi example's spec (module level: parametrize and hypothesis strategies are built at import).
TAXI = load_spec(TAXI_SPEC_PATH)


pytestmark = pytest.mark.serving

ROOT = Path(__file__).resolve().parents[2]

#: Runs in the pipeline env: scans the window and prints what it read, and writes a feedback file back.
_READ = textwrap.dedent(
    """
    import datetime as dt, json, sys
    import pyarrow as pa
    from kfloop import predlog as P
    from kfloop import spec as S
    root = sys.argv[1]
    taxi = S.load(sys.argv[2])
    day = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)
    rep = P.ScanReport()
    t = pa.Table.from_batches(list(P.scan(root, "taxi-tips", "predictions", day, day + dt.timedelta(days=1),
                                          report=rep)))
    fb = P.feedback_table(["r1"], [0], [1], day.timestamp() + 30, day.timestamp())
    P.write_table(root, "taxi-tips", "feedback", fb, writer_id="pipeline")
    print(json.dumps({"pyarrow": pa.__version__, "rows": t.num_rows, "schema_ok": t.schema == P.prediction_schema(taxi),
                      "corrupt": rep.as_dict()["corrupt_files"], "fare": t.column("fare").to_pylist(),
                      "company": t.column("company").to_pylist(), "ts": str(t.column("timestamp")[0].as_py())}))
    """
)


def test_serving_written_log_reads_in_pipeline_env(tmp_path):
    import datetime as dt

    python = os.environ.get("KFLOOP_PIPELINE_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip(f"pipeline env python {python!r} not found (set KFLOOP_PIPELINE_PYTHON)")
    day = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    cols = {}
    for f in TAXI.model_features:
        if f.kind == Kind.NUMERIC:
            cols[f.name] = np.array([1.5, np.nan], dtype=np.float32)
        elif f.kind == Kind.CATEGORICAL_INT:
            cols[f.name] = np.array([3, -1], dtype=np.int64)
        else:
            cols[f.name] = np.array(["Cash", ""], dtype=object)
    t = P.prediction_table("r1", day.timestamp(), "v0001", cols, [0.25, 0.75], schema=TAXI)
    P.write_table(str(tmp_path), "taxi-tips", "predictions", t)
    proc = subprocess.run(
        [python, "-c", _READ, str(tmp_path), TAXI_SPEC_PATH],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["pyarrow"] != pa.__version__  # really two pyarrows
    assert got == {
        **got,
        "rows": 2,
        "schema_ok": True,
        "corrupt": 0,
        "fare": [1.5, None],
        "company": ["Cash", None],
    }
    assert got["ts"].startswith("2026-11-23 12:00:00")
    # ... and what the pipeline env wrote reads here.
    fb = pa.Table.from_batches(
        list(P.scan(str(tmp_path), "taxi-tips", "feedback", day.replace(hour=0), day + dt.timedelta(days=1)))
    )
    assert fb.column("label").to_pylist() == [1] and fb.column("delay_s").to_pylist() == [30.0]


#: Runs in the pipeline env: reads a multiclass prediction file and the regression / multiclass feedback the
#: serving env wrote, and writes multiclass predictions back.
_READ_TASKS = textwrap.dedent(
    """
    import datetime as dt, json, sys
    import pyarrow as pa
    from kfloop import predlog as P
    from kfloop import spec as S
    from tests import synthetic
    root = sys.argv[1]
    specs = {t: S.loads(y) for t, y in synthetic.SPECS.items()}
    day = dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)
    end = day + dt.timedelta(days=1)
    rep = P.ScanReport()
    t = pa.Table.from_batches(list(P.scan(root, "goals", "predictions", day, end, schema=specs["multiclass"],
                                          report=rep)))
    fb = {task: pa.Table.from_batches(list(P.scan(root, task, "feedback", day, end, schema=specs[task])))
          for task in ("regression", "multiclass")}
    cols = P.columns_from_instances([{"plan": "pro"}] * t.num_rows, specs["multiclass"])
    back = P.prediction_table("p1", day.timestamp() + 7200, "v2", cols, [[0.7, 0.1, 0.1, 0.1]] * t.num_rows,
                              schema=specs["multiclass"])
    P.write_table(root, "goals", "predictions", back, writer_id="pipeline")
    print(json.dumps({"pyarrow": pa.__version__, "corrupt": rep.as_dict()["corrupt_files"],
                      "probabilities": t.column("probabilities").to_pylist(),
                      "type": str(t.schema.field("probabilities").type),
                      "labels": {k: v.column("label").to_pylist() for k, v in fb.items()},
                      "label_types": {k: str(v.schema.field("label").type) for k, v in fb.items()}}))
    """
)


def test_per_task_log_files_read_across_the_two_envs(tmp_path):
    """Multiclass list<float32> outputs and regression / multiclass labels written by the serving env's
    pyarrow are read by the pipeline env's (and its multiclass file reads here)."""
    import datetime as dt

    from kfloop import spec as S
    from tests import synthetic

    python = os.environ.get("KFLOOP_PIPELINE_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip(f"pipeline env python {python!r} not found (set KFLOOP_PIPELINE_PYTHON)")
    specs = {t: S.loads(y) for t, y in synthetic.SPECS.items()}
    day = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    cols = P.columns_from_instances(
        [{"age": 30.0, "plan": "pro", "visits": 2}, {"plan": "basic"}], specs["binary"]
    )
    probs = [[0.25, 0.25, 0.4, 0.1], [0.1, 0.2, 0.3, 0.4]]
    t = P.prediction_table("r1", day.timestamp(), "v1", cols, probs, schema=specs["multiclass"])
    P.write_table(str(tmp_path), "goals", "predictions", t)
    for task, labels in (("regression", [12.5, -3.0]), ("multiclass", [2, 0])):
        fb = P.feedback_table(["r1", "r1"], [0, 1], labels, day.timestamp() + 5, spec=specs[task])
        P.write_table(str(tmp_path), task, "feedback", fb)
    proc = subprocess.run(
        [python, "-c", _READ_TASKS, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["pyarrow"] != pa.__version__ and got["corrupt"] == 0
    assert got["type"] == "list<item: float>"
    assert np.allclose(got["probabilities"], probs)
    assert got["labels"] == {"regression": [12.5, -3.0], "multiclass": [2, 0]}
    assert got["label_types"] == {"regression": "double", "multiclass": "int32"}
    both = pa.Table.from_batches(
        list(P.scan(str(tmp_path), "goals", "predictions", day.replace(hour=0), day + dt.timedelta(hours=12),
                    schema=specs["multiclass"]))
    )  # fmt: skip
    assert both.num_rows == 4
    by_id = {}
    for rid, p in zip(
        both.column("request_id").to_pylist(), both.column("probabilities").to_pylist(), strict=True
    ):
        by_id.setdefault(rid, []).append(p)
    assert np.allclose(by_id["p1"], [[0.7, 0.1, 0.1, 0.1]] * 2) and np.allclose(by_id["r1"], probs)
