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
