"""Bring your own model, served: a hand-written ``tf.Module`` (no Keras) of the non-taxi ``churn-demo`` spec,
published with ``kfloop models publish`` and made champion, is served from the store by the real predictor
over the real HTTP layer (in process): V2 metadata from its stored spec, V1 / V2 predictions equal to the
module's own ``predict_raw``, missing values, requests that do not fit the spec, and the prediction log."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math

import numpy as np
import pytest

from tests import byo_module_model as B

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

NAME = "churn-demo"
V1_PATH = f"/v1/models/{NAME}:predict"
V2_PATH = f"/v2/models/{NAME}/infer"


@pytest.fixture(scope="module")
def churn_store(tmp_path_factory):
    """A store whose champion is the module model, published as ``kfloop models publish`` does.

    Returns:
        ``(store_uri, version, spec)``.
    """
    from kfloop import spec as S
    from kfloop.app import cli
    from kfloop.store import CHAMPION, ModelStore

    d = tmp_path_factory.mktemp("churn-serving")
    spec_path = d / "spec.yaml"
    spec_path.write_text(B.SPEC_YAML)
    spec = S.load(str(spec_path))
    B.export(spec, B.synthetic_frame(800, seed=1), str(d / "module"), steps=200)
    store_uri = str(d / "store")
    (d / "store").mkdir()
    # No --schema: TFDV is not in the serving env, and serving needs only the spec stored with the version.
    argv = ["models", "publish", str(d / "module"), "--spec", str(spec_path), "--store", store_uri]
    assert cli.main(argv) == 0
    ms = ModelStore(store_uri)
    (version,) = ms.versions(NAME)
    ms.set_alias(NAME, CHAMPION, version, reason="test: the module is champion")
    return store_uri, version, spec


def _rows_frame(n: int = 8):
    """Dataset-form rows of the spec, a missing spend and a missing promo among them."""
    import pandas as pd

    frame = B.synthetic_frame(n, seed=11)
    frame.loc[1, "monthly_spend"] = np.nan
    frame.loc[2, "promo"] = pd.NA
    frame.loc[3, ["monthly_spend", "promo"]] = [np.nan, pd.NA]
    return frame


def _instances(frame, spec) -> list[dict]:
    """The frame's rows as V1 instances (JSON values; ``null`` for a missing value)."""
    import pandas as pd

    out = []
    for rec in frame.to_dict("records"):
        row = {}
        for f in spec.model_features:
            v = rec[f.name]
            if pd.isna(v):
                row[f.name] = None
            elif f.kind.value == "boolean":
                row[f.name] = bool(v)
            elif f.kind.value == "numeric":
                row[f.name] = float(v)
            elif f.kind.value == "categorical_int":
                row[f.name] = int(v)
            else:
                row[f.name] = str(v)
        out.append(row)
    return out


def _v2_body(spec, rows: list[dict], request_id: str) -> dict:
    inputs = []
    for f in spec.model_features:
        dtype = "BOOL" if f.kind.value == "boolean" else f.v2_datatype
        data = [r[f.name] for r in rows]
        inputs.append({"name": f.name, "datatype": dtype, "shape": [len(rows)], "data": data})
    return {"id": request_id, "inputs": inputs}


def _module_probabilities(model_dir: str, frame, spec) -> np.ndarray:
    """The module's own ``predict_raw`` on the Dataset-form rows (no serving code involved)."""
    import tensorflow as tf

    from kfloop import contract

    loaded = tf.saved_model.load(model_dir)
    enc = contract.encode_inputs(frame, spec)
    out = loaded.signatures[contract.RAW_SIGNATURE](**{k: tf.constant(v) for k, v in enc.items()})
    return out[contract.OUTPUT_KEY].numpy()


def _predictor(source, plog=None):
    from kfloop import config
    from serving.model import Predictor

    cfg = dataclasses.replace(config.ServingConfig(), max_call_seconds=10.0)
    model = Predictor(NAME, source, cfg, plog, reload_interval_s=0.0)
    assert model.load()
    model.start()
    return model


def _app(model):
    from serving import http

    async def not_found(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return http.PredictorApp(not_found, model, model.config.max_body_bytes)


async def _calls(app, calls):
    """Every call on one client and one event loop (the batcher binds to the first loop it runs on)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        out = []
        for method, path, body, headers in calls:
            if method == "GET":
                r = await c.get(path)
            else:
                r = await c.post(path, json=body, headers=headers or {})
            out.append((r.status_code, r.json()))
        return out


def test_the_module_model_is_served_described_and_logged_by_its_stored_spec(churn_store, tmp_path):
    from kfloop import predlog
    from kfloop.store import ModelStore
    from serving.log_queue import PredictionLog
    from serving.model import ModelSource

    store_uri, version, spec = churn_store
    frame = _rows_frame(8)
    rows = _instances(frame, spec)
    assert rows[3]["monthly_spend"] is None and rows[3]["promo"] is None  # missing nullable values
    expected = _module_probabilities(ModelStore(store_uri).model_uri(NAME, version), frame, spec)

    log_root = str(tmp_path / "log")
    plog = PredictionLog(log_root, NAME, 10_000, 10**6, 3600, server_id="t", writer_process=False)
    model = _predictor(ModelSource(NAME, store_uri, "champion", workdir=str(tmp_path / "w")), plog)
    taxi_row = {**rows[0], "trip_miles": 3.2}
    na_spend = {**rows[0], "monthly_spend": "NA"}  # the CSV's missing token is not a JSON missing value
    null_tenure = {**rows[0], "tenure_months": None}  # not nullable in the spec
    results = asyncio.run(
        _calls(
            _app(model),
            [
                ("GET", f"/v2/models/{NAME}", None, None),
                ("POST", V1_PATH, {"instances": rows}, {"x-request-id": "v1-req"}),
                ("POST", V2_PATH, _v2_body(spec, rows, "v2-req"), None),
                ("POST", V1_PATH, {"instances": [rows[0], taxi_row]}, {"x-request-id": "taxi"}),
                ("POST", V1_PATH, {"instances": [na_spend]}, {"x-request-id": "na"}),
                ("POST", V1_PATH, {"instances": [null_tenure]}, {"x-request-id": "null"}),
            ],
        )
    )
    model.close()
    (meta_status, meta), (v1_status, v1), (v2_status, v2), *rejected = results

    assert meta_status == 200, meta
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("tenure_months", "FP32"), ("monthly_spend", "FP32"), ("plan", "BYTES"), ("support_calls", "INT64"),
        ("promo", "INT64"),
    ]  # fmt: skip
    assert meta["parameters"]["spec"] == "churn-demo" and meta["parameters"]["label"] == "churned"
    assert meta["versions"] == [version]

    assert v1_status == 200 and v2_status == 200, (v1, v2)
    assert v1["model_version"] == version
    v1_probs = np.asarray(v1["predictions"], dtype=np.float32)
    v2_probs = np.asarray(v2["outputs"][0]["data"], dtype=np.float32)
    assert np.allclose(v1_probs, v2_probs, atol=1e-6)  # V1 and V2 decode alike
    assert np.allclose(v1_probs, expected, atol=1e-6)  # and equal the module's own predict_raw
    assert len(set(np.round(expected, 4))) > 4  # the rows really differ (not a constant model)

    (taxi_status, taxi), (na_status, na), (null_status, null) = rejected
    assert taxi_status == 400 and taxi["field"] == "trip_miles" and "unknown feature" in taxi["error"], taxi
    assert na_status == 400 and na["field"] == "monthly_spend" and "expected a number" in na["error"], na
    assert null_status == 400 and null["field"] == "tenure_months" and "not nullable" in null["error"], null

    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    files = predlog.log_files(log_root, NAME, "predictions", start, start + dt.timedelta(hours=2))
    tables = [predlog.read_file(u) for u in files]
    assert tables, "nothing logged"
    for t in tables:
        assert predlog.feature_names(t.schema) == spec.input_names
        assert predlog.spec_digest(t.schema) == spec.digest()
        types = {f.name: str(t.schema.field(f.name).type) for f in spec.model_features}
        assert types == {
            "tenure_months": "float", "monthly_spend": "float", "plan": "string", "support_calls": "int64",
            "promo": "int64",
        }  # fmt: skip
    logged = [r for t in tables for r in t.to_pylist()]
    # One row per answered instance: 8 of V1, 8 of V2; none of the three refused requests.
    assert sorted((r["request_id"], r["row"]) for r in logged) == sorted(
        [("v1-req", i) for i in range(8)] + [("v2-req", i) for i in range(8)]
    )
    assert {r["model_version"] for r in logged} == {version}
    for rec in logged:
        want = rows[rec["row"]]
        assert rec["plan"] == want["plan"] and rec["support_calls"] == want["support_calls"]
        assert rec["promo"] == (None if want["promo"] is None else int(want["promo"]))
        for name in ("tenure_months", "monthly_spend"):
            if want[name] is None:
                assert rec[name] is None, (name, rec)
            else:
                assert math.isclose(rec[name], want[name], rel_tol=1e-6), (name, rec)
        assert math.isclose(rec["probability"], float(expected[rec["row"]]), abs_tol=1e-6)
