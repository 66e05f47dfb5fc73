"""The predictor knows no dataset: a model of a non-taxi spec (ISO time, "yes"/"no" label, a boolean, string
categoricals) is decoded, described, logged and labelled by the spec stored with it, and a hot reload to a
version with another spec swaps the decoder with the model (in process, over the real HTTP layer)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time

import numpy as np
import pytest

from tests.serving.conftest import MODEL
from tests.serving.specs import signups_rows

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")


def _v2_body(spec, rows: list[dict]) -> dict:
    inputs = []
    for f in spec.model_features:
        data = [r[f.name] for r in rows]
        dtype = "BOOL" if f.kind.value == "boolean" else f.v2_datatype
        inputs.append({"name": f.name, "datatype": dtype, "shape": [len(rows)], "data": data})
    return {"id": "v2-req", "inputs": inputs}


def _app(model):
    from serving import http

    async def not_found(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return http.PredictorApp(not_found, model, model.config.max_body_bytes)


def _predictor(source, plog=None, reload_interval_s=0.0):
    from kfloop import config
    from serving.model import Predictor

    cfg = dataclasses.replace(config.ServingConfig(), max_call_seconds=10.0)
    model = Predictor(MODEL, source, cfg, plog, reload_interval_s=reload_interval_s)
    assert model.load()
    model.start()
    return model


async def _calls(app, calls):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        out = []
        for method, path, body in calls:
            r = await (c.get(path) if method == "GET" else c.post(path, json=body))
            out.append((r.status_code, r.json()))
        return out


def test_non_taxi_model_decodes_describes_and_logs_by_its_own_spec(signups_model_dir, signups_spec, tmp_path):
    from kfloop import predlog
    from serving.log_queue import PredictionLog
    from serving.model import ModelSource

    plog = PredictionLog(
        str(tmp_path / "log"), MODEL, 10_000, 10**6, 3600, server_id="t", writer_process=False
    )
    model = _predictor(ModelSource(MODEL, model_dir=signups_model_dir, workdir=str(tmp_path / "w")), plog)
    rows = signups_rows(6)
    app = _app(model)
    (v1, v2, meta) = asyncio.run(
        _calls(
            app,
            [
                ("POST", f"/v1/models/{MODEL}:predict", {"instances": rows}),
                ("POST", f"/v2/models/{MODEL}/infer", _v2_body(signups_spec, rows)),
                ("GET", f"/v2/models/{MODEL}", None),
            ],
        )
    )
    assert v1[0] == 200 and v2[0] == 200, (v1, v2)
    assert np.allclose(v1[1]["predictions"], v2[1]["outputs"][0]["data"])  # V1 and V2 decode alike
    assert meta[0] == 200
    body = meta[1]
    assert [(i["name"], i["datatype"]) for i in body["inputs"]] == [
        ("plan", "BYTES"), ("visits", "FP32"), ("mobile", "INT64"), ("region", "INT64"), ("referrer", "BYTES")
    ]  # fmt: skip
    assert body["parameters"]["spec"] == "signups" and body["parameters"]["label"] == "signed_up"
    assert body["parameters"]["task"] == "binary" and body["versions"] == ["m"]
    model.close()

    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    table = predlog.read_file(
        predlog.log_files(str(tmp_path / "log"), MODEL, "predictions", start, start + dt.timedelta(hours=2))[
            0
        ]
    )
    assert predlog.feature_names(table.schema) == signups_spec.input_names
    assert predlog.spec_digest(table.schema) == signups_spec.digest()
    got = [r for r in table.to_pylist() if r["request_id"] != "v2-req"]
    assert len(got) == 6
    for row, rec in zip(rows, sorted(got, key=lambda r: r["row"]), strict=True):
        assert rec["plan"] == row["plan"] and rec["referrer"] == row["referrer"]
        assert rec["mobile"] == (None if row["mobile"] is None else int(row["mobile"]))
        assert rec["visits"] == row["visits"] and rec["region"] == row["region"]


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"instances": [{**signups_rows(1)[0], "mobile": "yes"}]}, "mobile", "boolean"),
        ({"instances": [{**signups_rows(1)[0], "mobile": 2}]}, "mobile", "boolean"),
        ({"instances": [{k: v for k, v in signups_rows(1)[0].items() if k != "plan"}]}, "plan", "missing"),
        ({"instances": [{**signups_rows(1)[0], "fare": 3.0}]}, "fare", "unknown feature"),
    ],
)
def test_non_taxi_requests_that_do_not_fit_the_spec_are_400_naming_the_field(
    signups_model_dir, tmp_path, body, field, needle
):
    from serving.model import ModelSource

    model = _predictor(ModelSource(MODEL, model_dir=signups_model_dir, workdir=str(tmp_path)))
    ((status, out),) = asyncio.run(_calls(_app(model), [("POST", f"/v1/models/{MODEL}:predict", body)]))
    assert status == 400 and out["field"] == field and needle in out["error"], out
    model.close()


def test_feedback_takes_the_specs_raw_label_values(signups_spec, tmp_path):
    """ "yes" / "no" (and 0 / 1) are labels of the signups spec; a wrong type, a missing token or a near miss
    of the positive class is a 400 naming the item's label, and nothing of the request is written."""
    from kfloop import config, predlog
    from serving.feedback import Feedback
    from serving.request import RequestError

    fb = Feedback(str(tmp_path), MODEL, config.FeedbackConfig())
    fb.spec_of = lambda: signups_spec
    fb.seen("r1", 4, time.time())
    ids, rows, labels, _ = fb.parse(
        {"feedback": [{"request_id": "r1", "row": i, "label": v} for i, v in enumerate(["yes", "no", 1, 0])]}
    )
    assert labels == [1, 0, 1, 0]
    for bad, needle in ((True, "string"), (0.5, "string"), ("NA", "missing"), ("Yes", "positive class")):
        items = [{"request_id": "r1", "row": 0, "label": "yes"}, {"request_id": "r1", "row": 1, "label": bad}]
        with pytest.raises(RequestError) as e:
            fb.parse({"feedback": items})
        assert e.value.status == 400 and e.value.field == "feedback[1].label" and needle in e.value.message
    fb.write(ids, rows, labels, [time.time()] * 4, time.time())
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    got = [r for b in predlog.scan(str(tmp_path), MODEL, "feedback", start, start + dt.timedelta(hours=2))
           for r in b.to_pylist()]  # fmt: skip
    assert sorted((r["row"], r["label"]) for r in got) == [(0, 1), (1, 0), (2, 1), (3, 0)]


def test_hot_reload_to_another_spec_swaps_the_decoder_with_the_model(
    demo_model_dirs, signups_model_dir, signups_spec, taxi_spec, taxi_rows, tmp_path
):
    from kfloop.store import ModelStore
    from serving.log_queue import PredictionLog
    from serving.model import ModelSource
    from tests.serving.test_server import v1_body

    store = ModelStore(str(tmp_path / "store"))
    taxi_v = store.publish(MODEL, demo_model_dirs[0], {"seed": 0})
    other_v = store.publish(MODEL, signups_model_dir, {"seed": 3})
    store.set_alias(MODEL, "champion", taxi_v, reason="test")
    log_root = str(tmp_path / "log")
    plog = PredictionLog(log_root, MODEL, 10_000, 10**6, 3600, server_id="t", writer_process=False)
    model = _predictor(
        ModelSource(MODEL, str(tmp_path / "store"), "champion", workdir=str(tmp_path / "w")), plog, 0.05
    )
    app = _app(model)
    frame, _ = taxi_rows
    taxi_body = v1_body(frame.head(3))
    other_body = {"instances": signups_rows(4)}

    async def scenario():  # one event loop: the predictor's batcher lives on the loop that first used it
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:

            async def call(method, path, body=None):
                r = await (c.get(path) if method == "GET" else c.post(path, json=body))
                return r.status_code, r.json()

            before = [await call("POST", f"/v1/models/{MODEL}:predict", b) for b in (taxi_body, other_body)]
            store.set_alias(MODEL, "champion", other_v, reason="test: another spec")
            deadline = time.monotonic() + 60
            while model.current.version != other_v and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            after = [
                await call("POST", f"/v1/models/{MODEL}:predict", taxi_body),
                await call("POST", f"/v1/models/{MODEL}:predict", other_body),
                await call("GET", f"/v2/models/{MODEL}"),
            ]
            return before, after

    before, after = asyncio.run(scenario())
    assert before[0][0] == 200 and before[0][1]["model_version"] == taxi_v
    assert before[1][0] == 400 and before[1][1]["field"] in signups_spec.input_names  # not a taxi feature
    assert model.current.version == other_v and model.current.spec == signups_spec
    (old_status, old_out), (new_status, new_out), (_, meta) = after
    assert old_status == 400 and old_out["field"] not in signups_spec.input_names, old_out  # a taxi column
    assert "unknown feature" in old_out["error"]
    assert new_status == 200 and new_out["model_version"] == other_v
    assert [i["name"] for i in meta["inputs"]] == list(signups_spec.input_names)
    model.close()

    from kfloop import predlog

    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    files = predlog.log_files(log_root, MODEL, "predictions", start, start + dt.timedelta(hours=2))
    by_spec = {}
    for uri in files:  # one schema per file: the two specs' rows never share one
        t = predlog.read_file(uri)
        assert len(set(t.column("model_version").to_pylist())) == 1
        by_spec.setdefault(predlog.spec_digest(t.schema), []).append(t.num_rows)
    assert sorted(by_spec) == sorted([model.current.digest, taxi_spec.digest()])
    assert sum(by_spec[model.current.digest]) == 4 and sum(by_spec[taxi_spec.digest()]) == 3
