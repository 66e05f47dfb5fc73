"""The real predictor over HTTP on loopback: V1/V2 outputs, bad requests, prediction log, hot reload."""

from __future__ import annotations

import concurrent.futures
import json
import math
import threading
import time

import numpy as np
import pytest

from kfloop.spec import Kind
from kfloop.spec import load as load_spec
from tests.conftest import TAXI_SPEC_PATH
from tests.serving.conftest import MODEL, Server, make_store

#: The taxi example's spec (module level: parametrize and hypothesis strategies are built at import).
TAXI = load_spec(TAXI_SPEC_PATH)


pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

MAX_BODY = 200_000
MAX_ROWS = 250


def v1_body(frame) -> dict:
    rows = []
    for rec in frame[[f.name for f in TAXI.model_features]].to_dict("records"):
        rows.append({k: (None if _isna(v) else _py(v)) for k, v in rec.items()})
    return {"instances": rows}


def v2_body(frame, request_id: str | None = None) -> dict:
    inputs = []
    for f in TAXI.model_features:
        data = [None if _isna(v) else _py(v) for v in frame[f.name].tolist()]
        inputs.append({"name": f.name, "datatype": f.v2_datatype, "shape": [len(frame)], "data": data})
    body = {"inputs": inputs}
    if request_id:
        body["id"] = request_id
    return body


def _isna(v) -> bool:
    import pandas as pd

    return v is None or bool(pd.isna(v))


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _sub(columns: dict, lo: int, hi: int) -> dict:
    return {k: v[lo:hi] for k, v in columns.items()}


@pytest.fixture(scope="module")
def shared(tmp_path_factory, demo_model_dirs):
    """One server over a store (champion v0001) for the tests of this module; ``ok`` collects request ids."""
    tmp = tmp_path_factory.mktemp("shared")
    root = make_store(tmp / "store", demo_model_dirs)
    server = Server(
        [
            "--store-uri", root, "--model-name", MODEL, "--max-body-bytes", str(MAX_BODY),
            "--max-rows", str(MAX_ROWS), "--log-flush-seconds", "30", "--reload-interval", "0",
        ],
        tmp / "server.log",
    )  # fmt: skip
    state = {"server": server, "root": root, "ok": {}}  # request id -> rows
    yield state
    server.stop()


def test_v1_and_v2_equal_in_process_outputs(shared, taxi_rows, in_process):
    frame, columns = taxi_rows
    url = shared["server"].url
    want = in_process[0](columns)
    # Requests of different sizes, sent concurrently (so the server micro-batches them together).
    bounds = [(0, 1), (1, 8), (8, 100), (100, 101), (101, 250), (250, 300)]

    def call(i, lo, hi):
        part = frame.iloc[lo:hi]
        if i % 2:
            r = httpx.post(f"{url}/v1/models/{MODEL}:predict", json=v1_body(part), timeout=30)
            assert r.status_code == 200, r.text
            got = r.json()["predictions"]
        else:
            r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=v2_body(part, f"v2-{i}"), timeout=30)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["id"] == f"v2-{i}" and out["model_version"] == "v0001"
            (o,) = out["outputs"]
            assert o["name"] == "probability" and o["datatype"] == "FP32" and o["shape"] == [hi - lo]
            got = o["data"]
        assert r.headers["x-model-version"] == "v0001"
        shared["ok"][r.headers["x-request-id"]] = hi - lo
        return lo, hi, np.asarray(got, dtype=np.float32)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda a: call(*a), [(i, lo, hi) for i, (lo, hi) in enumerate(bounds)]))
    for lo, hi, got in results:
        np.testing.assert_allclose(got, want[lo:hi], rtol=1e-6, atol=1e-7)
        # and each slice alone, in process, gives the same numbers
        np.testing.assert_allclose(got, in_process[0](_sub(columns, lo, hi)), rtol=1e-6, atol=1e-7)
    assert len({round(float(p), 6) for p in want}) > 50  # the model does discriminate between rows


def test_v2_metadata_lists_inputs_and_version(shared):
    r = httpx.get(f"{shared['server'].url}/v2/models/{MODEL}", timeout=10)
    assert r.status_code == 200
    meta = r.json()
    assert meta["versions"] == ["v0001"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (f.name, f.v2_datatype, [-1]) for f in TAXI.model_features
    ]
    assert meta["outputs"][0]["name"] == "probability"


def _bad_requests(frame) -> list[tuple[str, str, dict, object, int, str]]:
    """(case, route, headers, body, expected status, text the error must contain)."""
    one = frame.iloc[:2]
    v1 = v1_body(one)
    v2 = v2_body(one)
    cases = []

    def v1_with(mutate):
        body = json.loads(json.dumps(v1))
        mutate(body["instances"][1])
        return body

    def v2_with(name, mutate):
        body = json.loads(json.dumps(v2))
        mutate(next(i for i in body["inputs"] if i["name"] == name))
        return body

    nan_row = json.dumps({**v1["instances"][0], "fare": 0}).replace('"fare": 0', '"fare": NaN')
    nan_fare = b'{"instances": [' + nan_row.encode() + b"]}"
    cases += [
        ("v1 unknown feature", "v1", {}, v1_with(lambda r: r.update(tip_share=0.3)), 400, "tip_share"),
        ("v1 missing feature", "v1", {}, v1_with(lambda r: r.pop("fare")), 400, "fare"),
        ("v1 string in FP32", "v1", {}, v1_with(lambda r: r.update(fare="12.5")), 400, "fare"),
        ("v1 bool in FP32", "v1", {}, v1_with(lambda r: r.update(trip_miles=True)), 400, "trip_miles"),
        ("v1 number in BYTES", "v1", {}, v1_with(lambda r: r.update(payment_type=3)), 400, "payment_type"),
        (
            "v1 fraction in INT64",
            "v1",
            {},
            v1_with(lambda r: r.update(trip_start_hour=2.5)),
            400,
            "trip_start_hour",
        ),
        ("v1 null not nullable", "v1", {}, v1_with(lambda r: r.update(fare=None)), 400, "fare"),
        ("v1 NaN not nullable", "v1", {}, nan_fare, 400, "fare"),
        ("v1 overflow FP32", "v1", {}, v1_with(lambda r: r.update(trip_miles=1e39)), 400, "trip_miles"),
        ("v1 nested value", "v1", {}, v1_with(lambda r: r.update(fare=[1.0])), 400, "fare"),
        ("v1 instance not object", "v1", {}, {"instances": [1, 2]}, 400, "instances[0]"),
        ("v1 empty batch", "v1", {}, {"instances": []}, 400, "empty"),
        ("v1 no instances", "v1", {}, {"rows": []}, 400, "instances"),
        (
            "v1 too many rows",
            "v1",
            {},
            {"instances": [v1["instances"][0]] * (MAX_ROWS + 1)},
            400,
            str(MAX_ROWS),
        ),
        ("v1 body is a list", "v1", {}, [1, 2], 400, "body"),
        (
            "v2 unknown input",
            "v2",
            {},
            {"inputs": [*v2["inputs"], {**v2["inputs"][0], "name": "tips"}]},
            400,
            "tips",
        ),
        ("v2 missing input", "v2", {}, {"inputs": v2["inputs"][1:]}, 400, TAXI.model_features[0].name),
        (
            "v2 duplicate input",
            "v2",
            {},
            {"inputs": [*v2["inputs"], v2["inputs"][3]]},
            400,
            v2["inputs"][3]["name"],
        ),
        ("v2 wrong datatype", "v2", {}, v2_with("fare", lambda i: i.update(datatype="BYTES")), 400, "fare"),
        ("v2 string in FP32", "v2", {}, v2_with("fare", lambda i: i.update(data=["a", "b"])), 400, "fare"),
        ("v2 shape mismatch", "v2", {}, v2_with("fare", lambda i: i.update(shape=[3])), 400, "fare"),
        (
            "v2 rows disagree",
            "v2",
            {},
            v2_with("fare", lambda i: i.update(shape=[1], data=[1.0])),
            400,
            "fare",
        ),
        ("v2 2-D shape", "v2", {}, v2_with("fare", lambda i: i.update(shape=[1, 2])), 400, "fare"),
        (
            "v2 inf in FP32",
            "v2",
            {},
            v2_with("trip_miles", lambda i: i.update(data=[1.0, 1e300])),
            400,
            "trip_miles",
        ),
        (
            "v2 null not nullable",
            "v2",
            {},
            v2_with("payment_type", lambda i: i.update(data=["Cash", None])),
            400,
            "payment_type",
        ),
        (
            "v2 empty batch",
            "v2",
            {},
            {"inputs": [{**i, "shape": [0], "data": []} for i in v2["inputs"]]},
            400,
            "empty",
        ),
        ("v2 inputs missing", "v2", {}, {"outputs": []}, 400, "inputs"),
        ("malformed JSON", "v1", {}, b'{"instances": [', 400, "malformed JSON"),
        ("not UTF-8", "v1", {}, b'{"instances": "\xff"}', 400, "UTF-8"),
        ("empty body", "v2", {}, b"", 400, "empty"),
        ("wrong content type", "v1", {"content-type": "text/csv"}, b"a,b\n1,2\n", 415, "content-type"),
        (
            "form content type",
            "v2",
            {"content-type": "application/x-www-form-urlencoded"},
            b"a=1",
            415,
            "content-type",
        ),
        ("body too large", "v1", {}, b'{"instances": ["' + b"x" * (MAX_BODY + 10) + b'"]}', 413, "limit"),
    ]
    return cases


def test_bad_requests_get_4xx_naming_the_field(shared, taxi_rows):
    frame, _ = taxi_rows
    url = shared["server"].url
    routes = {"v1": f"{url}/v1/models/{MODEL}:predict", "v2": f"{url}/v2/models/{MODEL}/infer"}
    failures = []
    with httpx.Client(timeout=30) as client:
        for case, route, headers, body, status, needle in _bad_requests(frame):
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs = {"content-type": "application/json", **headers}
            r = client.post(routes[route], content=content, headers=hdrs)
            err = (
                r.json().get("error", "")
                if r.headers.get("content-type", "").startswith("application/json")
                else ""
            )
            if r.status_code != status or needle not in err:
                failures.append(f"{case}: {r.status_code} {r.text[:200]}")
        # still answers afterwards
        r = client.post(routes["v1"], json=v1_body(frame.iloc[:3]))
        assert r.status_code == 200, r.text
        shared["ok"][r.headers["x-request-id"]] = 3
    assert not failures, "\n".join(failures)


def test_body_limit_before_reading_and_while_streaming(shared):
    url = f"{shared['server'].url}/v1/models/{MODEL}:predict"
    # Declared too large: answered from the header alone, before the (never sent) body.
    import socket

    port = shared["server"].port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {MAX_BODY * 50}\r\n\r\n{{".encode()
        )
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b"limit" in payload

    # Chunked body with no length: cut off once it passes the limit.
    def chunks():
        yield b'{"instances": ["'
        for _ in range(100):
            yield b"y" * 10_000
        yield b'"]}'

    r = httpx.post(url, content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert httpx.get(f"{shared['server'].url}/v2/health/ready", timeout=10).status_code == 200


def test_prediction_log_holds_every_prediction_after_shutdown(shared, taxi_rows):
    frame, _ = taxi_rows
    url = shared["server"].url
    with httpx.Client(timeout=30) as client:
        r = client.post(
            f"{url}/v1/models/{MODEL}:predict",
            json=v1_body(frame.iloc[:5]),
            headers={"x-request-id": "mine-1"},
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == "mine-1"
        shared["ok"]["mine-1"] = 5
        mine_preds = r.json()["predictions"]
    # ok: this request plus (when the whole module runs) every successful request of the tests above
    assert shared["server"].stop() == 0  # SIGTERM: clean shutdown flushes the queue

    import datetime as dt

    import pyarrow as pa

    from kfloop import predlog

    end = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    batches = predlog.scan(shared["root"], MODEL, "predictions", end - dt.timedelta(days=3), end)
    table = pa.Table.from_batches(list(batches), schema=predlog.prediction_schema(TAXI))
    records = table.to_pylist()
    by_id: dict[str, list[dict]] = {}
    for rec in records:
        by_id.setdefault(rec["request_id"], []).append(rec)
    assert set(by_id) == set(shared["ok"])  # every successful request, and no failed one
    for rid, n in shared["ok"].items():
        recs = sorted(by_id[rid], key=lambda r: r["row"])
        assert [r["row"] for r in recs] == list(range(n))
        assert {r["model_version"] for r in recs} == {"v0001"}
    mine = sorted(by_id["mine-1"], key=lambda r: r["row"])
    assert [r["probability"] for r in mine] == np.array(mine_preds, dtype=np.float32).tolist()
    first = frame.iloc[0]
    for f in TAXI.model_features:
        v = mine[0][f.name]
        if _isna(first[f.name]):
            assert v is None
        elif f.kind == Kind.NUMERIC:
            assert math.isclose(v, float(np.float32(first[f.name])), rel_tol=1e-12)
        else:
            assert v == _py(first[f.name])
    assert "dropped=0" in shared["server"].log_text()


def test_hot_reload_switches_version_without_failed_requests(start_server, store_root, taxi_rows, in_process):
    from kfloop.store import ModelStore

    frame, columns = taxi_rows
    server = start_server("--store-uri", store_root, "--reload-interval", "0.2", "--log-flush-seconds", "0.5")
    url = f"{server.url}/v1/models/{MODEL}:predict"
    body = v1_body(frame.iloc[:4])
    want = {"v0001": in_process[0](_sub(columns, 0, 4)), "v0002": in_process[1](_sub(columns, 0, 4))}
    assert not np.allclose(want["v0001"], want["v0002"])
    seen, errors = [], []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post(url, json=body)
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                    continue
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    continue
                v = r.json()["model_version"]
                np.testing.assert_allclose(np.float32(r.json()["predictions"]), want[v], rtol=1e-6, atol=1e-7)
                seen.append(v)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 10
        while len(seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        ModelStore(store_root).set_alias(
            MODEL, "champion", "v0002", expected="v0001", reason="hot reload test"
        )
        deadline = time.monotonic() + 60
        while (not seen or seen[-1] != "v0002") and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        n_switch = len(seen)
        while len(seen) < n_switch + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    first_new = seen.index("v0002")
    assert seen[0] == "v0001" and first_new > 0
    assert "v0001" not in seen[first_new + 8 :]  # after the swap (and in-flight stragglers), only v0002
    assert httpx.get(f"{server.url}/v2/models/{MODEL}", timeout=10).json()["versions"] == ["v0002"]


def test_kfloop_serve_runs_the_server_from_a_model_dir(tmp_path, demo_model_dirs, taxi_rows, in_process):
    """``kfloop serve --model-dir`` (the CLI execs the serving env's python; no store, no log)."""
    import sys

    from tests.serving.conftest import free_port

    frame, columns = taxi_rows
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from kfloop.app.commands import serve; import argparse; "
           "p = argparse.ArgumentParser(); s = p.add_subparsers(); serve.register(s); "
           "a = p.parse_args(sys.argv[1:]); a.func(a)",
           "serve", "--model-dir", demo_model_dirs[1], "--port", str(port)]  # fmt: skip
    server = Server([], tmp_path / "cli.log", command=cmd, port=port)
    try:
        r = httpx.post(f"{server.url}/v1/models/{MODEL}:predict", json=v1_body(frame.iloc[:10]), timeout=30)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(
            np.float32(r.json()["predictions"]), in_process[1](_sub(columns, 0, 10)), rtol=1e-6, atol=1e-7
        )
        assert r.json()["model_version"] == "seed1"
    finally:
        assert server.stop() == 0
