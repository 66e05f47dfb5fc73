"""In-process parts of the predictor: request decoding, the prediction log writer, the image, and GCS."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from kfloop.spec import Kind
from kfloop.spec import load as load_spec
from serving import request as schema
from serving.request import RequestDecoder
from tests.conftest import TAXI_SPEC_PATH
from tests.serving.conftest import MODEL, ROOT, make_store

#: The taxi example's spec (module level: parametrize and hypothesis strategies are built at import).
TAXI = load_spec(TAXI_SPEC_PATH)
DECODER = RequestDecoder(TAXI)  # the request decoder of a taxi-spec model


pytestmark = pytest.mark.serving


def _row(**over):
    row = {}
    for f in TAXI.model_features:
        row[f.name] = {Kind.NUMERIC: 1.25, Kind.CATEGORICAL_INT: 3, Kind.CATEGORICAL_STR: "Cash"}[f.kind]
    row.update(over)
    return row


def test_v1_nulls_become_the_sentinels_of_kfloop_features():
    nullable = {f.name: None for f in TAXI.model_features if f.nullable}
    cols = DECODER.decode_v1({"instances": [_row(), _row(**nullable)]}, 10)
    for f in TAXI.model_features:
        col = cols[f.name]
        assert col.dtype == (object if f.dtype == "string" else np.dtype(f.dtype)), f.name
        if f.nullable:
            second = col[1]
            assert math.isnan(second) if f.kind == Kind.NUMERIC else second == f.missing, f.name
    # integral floats are fine for INT64 features; NaN literals count as missing where nullable
    cols = DECODER.decode_v1({"instances": [_row(trip_start_hour=4.0, trip_seconds=math.nan)]}, 10)
    assert cols["trip_start_hour"].tolist() == [4] and math.isnan(cols["trip_seconds"][0])


@pytest.mark.parametrize(
    ("over", "field", "needle"),
    [
        ({"fare": math.nan}, "fare", "not nullable"),
        ({"trip_seconds": math.inf}, "trip_seconds", "non-finite"),
        ({"pickup_census_tract": 2**64}, "pickup_census_tract", "INT64 range"),
        ({"company": ["a"]}, "company", "string"),
        ({"trip_start_day": "3"}, "trip_start_day", "number"),
        ({"trip_start_day": False}, "trip_start_day", "boolean"),
    ],
)
def test_v1_errors_name_field_and_row(over, field, needle):
    with pytest.raises(schema.RequestError) as e:
        DECODER.decode_v1({"instances": [_row(), _row(**over)]}, 10)
    assert e.value.field == field and e.value.status == 400
    assert f"instances[1].{field}" in e.value.message and needle in e.value.message


def test_v2_accepts_nested_shape_and_returns_body_id():
    inputs = [
        {"name": f.name, "datatype": f.v2_datatype, "shape": [2, 1], "data": [[v], [v]]}
        for f, v in ((f, _row()[f.name]) for f in TAXI.model_features)
    ]
    cols, rid, raw = DECODER.decode_v2({"id": "abc", "inputs": inputs}, 10)
    assert rid == "abc" and all(len(c) == 2 for c in cols.values()) and raw["fare"] == [1.25, 1.25]


def test_dockerfile_is_slim_locked_nonroot_and_readonly_friendly():
    text = (ROOT / "serving" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "requirements/serving.lock" in text and "--no-deps" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert re.search(r"HOME=/tmp", text) and re.search(r"TMPDIR=/tmp", text)
    assert 'ENTRYPOINT ["python", "-m", "serving"]' in text


def test_serve_command_builds_the_serving_env_command(monkeypatch):
    import argparse

    from kfloop.app.commands import serve

    monkeypatch.setenv("KFLOOP_SERVING_PYTHON", "/opt/py/bin/python")
    p = argparse.ArgumentParser()
    serve.register(p.add_subparsers())
    args = p.parse_args(
        ["serve", "--store-uri", "gs://b/k", "--model-ref", "v0003", "--port", "9000", "--", "--x", "1"]
    )
    cmd = serve.build_command(args)
    assert cmd[:3] == ["/opt/py/bin/python", "-m", "serving"]
    assert cmd[cmd.index("--store-uri") + 1] == "gs://b/k" and cmd[cmd.index("--model-ref") + 1] == "v0003"
    assert cmd[cmd.index("--http_port") + 1] == "9000" and cmd[-2:] == ["--x", "1"]
    monkeypatch.setenv("KFLOOP_SERVING_PYTHON", "/nonexistent/python")
    monkeypatch.setattr(serve, "preflight", lambda a: None)  # the store checks are tested with the store
    with pytest.raises(SystemExit, match="kfloop serve: serving env python not found"):
        args.func(args)


def test_serves_from_gcs_store_and_logs_to_gcs(gcs_bucket, demo_model_dirs, start_server, tmp_path):
    """Store and prediction log on a real fake-gcs-server (gs://)."""
    import httpx

    from kfloop import fs

    root = make_store(f"gs://{gcs_bucket}/kfloop", demo_model_dirs)
    server = start_server("--store-uri", root, "--reload-interval", "0", "--workdir", str(tmp_path / "work"))
    body = {"instances": [_row(), _row(company=None)]}
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}:predict", json=body, headers={"x-request-id": "gcs-1"}, timeout=30
    )
    assert r.status_code == 200 and r.json()["model_version"] == "v0001"
    assert server.stop() == 0
    files = fs.list_files(f"{root}/predictions/{MODEL}")
    assert len(files) == 1 and files[0].startswith(f"gs://{gcs_bucket}/kfloop/predictions/{MODEL}/date=")
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs = pq.read_table(pa.BufferReader(fs.read_bytes(files[0]))).to_pylist()
    assert files[0].endswith(".parquet")
    assert [(x["request_id"], x["row"]) for x in recs] == [("gcs-1", 0), ("gcs-1", 1)]
    assert [x["probability"] for x in recs] == np.array(r.json()["predictions"], dtype=np.float32).tolist()
    assert recs[1]["company"] is None
    assert Path(tmp_path / "work" / "v0001" / "saved_model.pb").is_file()


def test_kserve_predict_path_v1_and_v2_and_invalid_input(demo_model_dirs, in_process, tmp_path):
    """The ``kserve.Model.predict`` path (gRPC / kserve dataplane) gives the fast path's numbers and 400s."""
    import asyncio

    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from kfloop import config
    from serving.model import ModelSource, Predictor

    model = Predictor(
        MODEL, ModelSource(MODEL, model_dir=demo_model_dirs[0], workdir=str(tmp_path)), config.ServingConfig()
    )
    assert model.load() and model.current.version == "seed0"
    rows = [_row(), _row(company=None, trip_seconds=None)]
    want = in_process[0](DECODER.decode_v1({"instances": rows}, 10))

    async def go():
        v1 = await model.predict({"instances": rows})
        inputs = []
        for f in TAXI.model_features:
            data = [r[f.name] for r in rows]
            i = InferInput(f.name, [2], f.v2_datatype)
            i.set_data_from_numpy(
                np.array(["" if v is None else v for v in data], dtype=object)
                if f.dtype == "string"
                else np.array([np.nan if v is None else v for v in data], dtype=f.dtype)
            )
            inputs.append(i)
        v2 = await model.predict(InferRequest(model_name=MODEL, infer_inputs=inputs, request_id="r1"))
        with pytest.raises(InvalidInput, match="fare"):
            await model.predict({"instances": [_row(fare="x")]})
        return v1, v2

    v1, v2 = asyncio.run(go())
    np.testing.assert_allclose(np.float32(v1["predictions"]), want, rtol=1e-6)
    np.testing.assert_allclose(v2.outputs[0].as_numpy(), want, rtol=1e-6)
    assert v1["model_version"] == "seed0" and v2.model_version == "seed0"
    model.close()


def test_a_micro_batch_of_reserved_and_unreserved_requests_keeps_the_reserved_rows(demo_model_dirs, tmp_path):
    """An HTTP request (its log room reserved) and a kserve-path request (none) in one model call: the
    unreserved rows do not fit the log and are dropped alone; the reserved ones are written."""
    import asyncio

    import pyarrow.parquet as pq

    from kfloop import config
    from serving.log_queue import PredictionLog
    from serving.model import ModelSource, Predictor

    plog = PredictionLog(
        str(tmp_path / "log"), MODEL, 3, 10**6, 3600, server_id="t", writer_process=False, schema=TAXI
    )
    model = Predictor(
        MODEL,
        ModelSource(MODEL, model_dir=demo_model_dirs[0], workdir=str(tmp_path)),
        config.ServingConfig(),
        plog,
        reload_interval_s=0,
    )
    assert model.load()
    cols = DECODER.decode_v1({"instances": [_row(), _row(company=None)]}, 10)
    slot = plog.reserve(2)

    async def go():
        return await asyncio.gather(
            model.predict_columns(cols, "reserved", None, slot), model.predict_columns(cols, "plain", None)
        )

    (a, _), (b, _) = asyncio.run(go())
    assert model.batcher.calls == 1 and len(a) == len(b) == 2  # one model call, both answered
    model.close()
    (path,) = (tmp_path / "log" / "predictions" / MODEL).rglob("*.parquet")
    assert pq.read_table(path).column("request_id").to_pylist() == ["reserved", "reserved"]
    assert (plog.written, plog.dropped) == (2, 2)
