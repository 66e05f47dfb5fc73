"""gRPC V2 (``GRPCInferenceService``, :mod:`serving.grpc_v2`) against live servers (issue 28).

The official client (``tritonclient.grpc``: raw inputs, raw outputs) and hand-built ``ModelInferRequest``
messages with typed contents (kserve's generated stubs) get the numbers HTTP JSON gets; bad requests are
``INVALID_ARGUMENT`` with the HTTP error text, naming the field, and never reach the model; the admission
budget is shared with HTTP (``RESOURCE_EXHAUSTED`` + ``retry-after-ms``), a log behind sheds
(``UNAVAILABLE``); SIGTERM mid-load and a ``kill -9`` of the log's writer lose no answered row; the log rows
equal HTTP's for the same request.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import numpy as np
import pytest

from kfloop.spec import Kind
from tests.serving.conftest import MODEL, Server, free_port, make_store
from tests.serving.test_binary import (
    INFER,
    TAXI,
    HeldBinary,
    _rows_answered,
    _sub,
    binary_body,
    json_values,
    kill9_the_writer_under,
    post_binary,
    tensor_bytes,
)

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")
grpc = pytest.importorskip("grpc")


def _pb():
    """kserve's generated V2 stubs. (``tritonclient.grpc`` registers the same ``inference.*`` protobuf names,
    so the two cannot live in one process: the official client runs in a subprocess, :data:`CLIENT`.)"""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    return pb, pb_grpc


#: The official client, as a user runs it: argv ``PORT MODEL COLUMNS.pkl``; prints what it got as JSON.
CLIENT = r"""
import json, pickle, sys
import tritonclient.grpc as tc

port, model, path = sys.argv[1:4]
with open(path, "rb") as f:
    requests = pickle.load(f)
client = tc.InferenceServerClient(url=f"127.0.0.1:{port}")
meta = client.get_model_metadata(model, as_json=True)
out = {"live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(model),
       "inputs": [i["name"] for i in meta["inputs"]], "outputs": [o["name"] for o in meta["outputs"]],
       "versions": meta["versions"], "answers": []}
for k, cols in enumerate(requests):
    inputs = []
    for name, dt, col in cols:
        i = tc.InferInput(name, [len(col)], dt)
        i.set_data_from_numpy(col)
        inputs.append(i)
    r = client.infer(model, inputs, request_id=f"g-{k}")
    resp = r.get_response()
    chosen = client.infer(model, inputs, outputs=[tc.InferRequestedOutput("probability")])
    out["answers"].append({"probability": r.as_numpy("probability").tolist(), "id": resp.id,
                           "version": resp.model_version, "raw": len(resp.raw_output_contents),
                           "chosen": chosen.as_numpy("probability").tolist()})
client.close()
print(json.dumps(out))
"""


def grpc_server(tmp, root, *extra) -> Server:
    port = free_port()
    srv = Server(
        ["--store-uri", root, "--grpc_port", str(port), "--reload-interval", "0", *extra], tmp / "s.log"
    )
    srv.grpc_port = port
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dirs):
    tmp = tmp_path_factory.mktemp("grpc")
    root = make_store(tmp / "store", demo_model_dirs)
    srv = grpc_server(
        tmp, root, "--max-rows", "250", "--max-body-bytes", "400000", "--log-flush-seconds", "0.2"
    )
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def stub(server):
    _, pb_grpc = _pb()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def typed_request(cols: dict, request_id: str = "", raw: bool = False, **kw):
    """A ``ModelInferRequest`` of encoded columns: typed contents (or ``raw_input_contents``)."""
    pb, _ = _pb()
    req = pb.ModelInferRequest(model_name=MODEL, id=request_id, **kw)
    for f in TAXI.model_features:
        col = cols[f.name]
        t = req.inputs.add(name=f.name, datatype=f.v2_datatype, shape=[len(col)])
        if raw:
            req.raw_input_contents.append(tensor_bytes(f.v2_datatype, col))
        elif f.v2_datatype == "FP32":
            t.contents.fp32_contents.extend(np.asarray(col, dtype=np.float32).tolist())
        elif f.v2_datatype == "INT64":
            t.contents.int64_contents.extend(np.asarray(col).tolist())
        else:
            t.contents.bytes_contents.extend(str(v).encode() for v in col)
    return req


def http_json(url: str, cols: dict) -> httpx.Response:
    n = len(next(iter(cols.values())))
    body = {
        "inputs": [
            {"name": f.name, "datatype": f.v2_datatype, "shape": [n], "data": json_values(f, cols[f.name])}
            for f in TAXI.model_features
        ]
    }
    return httpx.post(url + INFER, json=body, timeout=30)


def test_tritonclient_grpc_gets_the_http_json_numbers(server, taxi_rows, in_process, tmp_path):
    import pickle
    import subprocess
    import sys

    pytest.importorskip("tritonclient")
    _, columns = taxi_rows
    ranges = [(0, 1), (1, 8), (0, 250)]
    path = tmp_path / "requests.pkl"
    with path.open("wb") as f:
        pickle.dump([[(x.name, x.v2_datatype, _sub(columns, lo, hi)[x.name]) for x in TAXI.model_features]
                     for lo, hi in ranges], f)  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", CLIENT, str(server.grpc_port), MODEL, str(path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["inputs"] == [f.name for f in TAXI.model_features]
    assert got["outputs"] == ["probability"] and got["versions"] == ["v0001"]
    for k, (lo, hi) in enumerate(ranges):
        cols = _sub(columns, lo, hi)
        j = http_json(server.url, cols)
        assert j.status_code == 200, j.text
        json_probs = np.asarray(j.json()["outputs"][0]["data"], dtype=np.float32)
        np.testing.assert_allclose(json_probs, in_process[0](cols), rtol=1e-6, atol=1e-7)
        a = got["answers"][k]
        np.testing.assert_array_equal(np.asarray(a["probability"], np.float32), json_probs)
        np.testing.assert_array_equal(np.asarray(a["chosen"], np.float32), json_probs)
        assert (a["id"], a["version"], a["raw"]) == (f"g-{k}", "v0001", 1)  # raw outputs, as Triton answers


def test_typed_contents_get_typed_outputs_and_the_same_numbers(server, stub, taxi_rows):
    pb, _ = _pb()
    _, columns = taxi_rows
    cols = _sub(columns, 0, 40)
    want = np.asarray(http_json(server.url, cols).json()["outputs"][0]["data"], dtype=np.float32)
    resp, call = stub.ModelInfer.with_call(typed_request(cols), metadata=[("x-request-id", "typed-1")])
    assert resp.id == "typed-1" and dict(call.initial_metadata())["x-request-id"] == "typed-1"
    assert not resp.raw_output_contents and resp.outputs[0].datatype == "FP32"
    np.testing.assert_array_equal(np.asarray(resp.outputs[0].contents.fp32_contents, np.float32), want)
    # typed in, raw out when asked; raw in (by hand), raw out
    req = typed_request(cols)
    req.parameters["binary_data_output"].bool_param = True
    resp = stub.ModelInfer(req)
    np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], "<f4"), want)
    resp = stub.ModelInfer(typed_request(cols, raw=True))
    np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], "<f4"), want)
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready


def _bad_cases(cols):
    """``(name, request, field)``: a bad gRPC request and the field its error must name."""
    f0 = TAXI.model_features[0]
    out = []
    r = typed_request(cols)
    r.inputs[0].datatype = "BYTES" if f0.v2_datatype != "BYTES" else "FP32"
    out.append(("datatype", r, f0.name))
    r = typed_request(cols)
    r.inputs[0].shape[0] = 3
    out.append(("shape", r, f0.name))
    r = typed_request(cols)
    r.inputs[1].name = "nope"
    out.append(("unknown input", r, "nope"))
    r = typed_request(cols, raw=True)
    r.raw_input_contents[0] = r.raw_input_contents[0][:-1]
    out.append(("raw size vs shape", r, f0.name))
    r = typed_request(cols, raw=True)
    r.raw_input_contents.pop()
    out.append(("raw count", r, "raw_input_contents"))
    strings = [f for f in TAXI.model_features if f.v2_datatype == "BYTES"]
    if strings:
        i = TAXI.model_features.index(strings[0])
        r = typed_request(cols, raw=True)
        r.raw_input_contents[i] = r.raw_input_contents[i][:-2]
        out.append(("truncated BYTES", r, strings[0].name))
        r = typed_request(cols)
        r.inputs[i].contents.bytes_contents[0] = b"\xff\xfe"
        out.append(("not UTF-8", r, strings[0].name))
    r = typed_request(cols)
    r.inputs[0].contents.int_contents.append(1)
    out.append(("wrong contents field", r, f0.name))
    numeric = [f for f in TAXI.model_features if f.kind == Kind.NUMERIC and not f.nullable]
    if numeric:
        i = TAXI.model_features.index(numeric[0])
        r = typed_request(cols)
        r.inputs[i].contents.fp32_contents[0] = float("inf")
        out.append(("infinite", r, numeric[0].name))
    r = typed_request(cols)
    r.parameters["binary_data_output"].string_param = "yes"
    out.append(("parameter", r, "parameters"))
    r = typed_request(cols)
    r.outputs.add(name="nope")
    out.append(("unknown output", r, "outputs"))
    return out


def test_bad_requests_are_invalid_argument_naming_the_field_and_never_reach_the_model(
    server, stub, taxi_rows
):
    _, columns = taxi_rows
    cols = _sub(columns, 0, 5)
    before = _rows_answered(httpx, server.url)
    for name, req, field in _bad_cases(cols):
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req)
        err = e.value
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.details())
        assert dict(err.trailing_metadata())["field"] == field, (name, err.details())
        assert err.details().startswith(field) or field in err.details(), (name, err.details())
    # the same mistake over HTTP (a binary body) has the same text
    body, n = binary_body(cols)
    head = json.loads(body[:n])
    head["inputs"][0]["shape"] = [3]
    cut = json.dumps(head).encode()
    http = post_binary(httpx, server.url, cut + body[n:], len(cut))
    raw = typed_request(cols, raw=True)
    raw.inputs[0].shape[0] = 3
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(raw)
    assert http.status_code == 400 and http.json()["error"] == e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(typed_request(cols), metadata=[("x-request-id", "x" * 300)])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "x-request-id" in e.value.details()
    other = typed_request(cols)
    other.model_name = "other"
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(other)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    big = typed_request(cols, raw=True)
    big.raw_input_contents[0] = b"\0" * 500_000  # over --max-body-bytes 400000: refused by gRPC itself
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(big)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    pb, _ = _pb()
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="other"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert _rows_answered(httpx, server.url) == before  # nothing reached the model


def test_http_and_grpc_share_one_admission_budget(tmp_path, demo_model_dirs, taxi_rows, in_process):
    _, columns = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    server = grpc_server(tmp_path, root, "--max-rows", "50", "--max-queue-requests", "2")
    cols = _sub(columns, 0, 5)
    body, n = binary_body(cols)
    _, pb_grpc = _pb()
    try:
        held = [HeldBinary(server.port, body, n, n + 10) for _ in range(2)]  # two HTTP requests held
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(typed_request(cols), timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
            assert "too many requests" in e.value.details()
            assert dict(e.value.trailing_metadata())["retry-after-ms"] == "1000"
            for h in held:
                assert h.finish()[0] == 200
            resp = stub.ModelInfer(typed_request(cols), timeout=10)  # room again
            np.testing.assert_allclose(resp.outputs[0].contents.fp32_contents, in_process[0](cols), rtol=1e-6)
    finally:
        assert server.stop() == 0


def test_a_log_behind_sheds_grpc_unavailable_and_every_answer_is_logged(tmp_path, demo_model_dirs, taxi_rows):
    from serving.logcount import count_logged_rows

    _, columns = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    n = 100
    server = grpc_server(
        tmp_path, root, "--max-rows", str(n), "--log-queue-size", str(n + n // 2), "--log-flush-rows",
        "1000000", "--log-flush-seconds", "60",
    )  # fmt: skip
    _, pb_grpc = _pb()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            stub.ModelInfer(typed_request(_sub(columns, 0, n), raw=True))
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(typed_request(_sub(columns, 0, n), raw=True))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
            assert "prediction log is behind" in e.value.details()
            assert dict(e.value.trailing_metadata())["retry-after-ms"] == "1000"
            stub.ModelInfer(typed_request(_sub(columns, 0, 1), raw=True))  # a small one still fits
    finally:
        assert server.stop() == 0
    assert count_logged_rows(root, MODEL) == n + 1


def test_sigterm_mid_load_answers_in_flight_rpcs_and_loses_no_logged_row(
    tmp_path, demo_model_dirs, taxi_rows
):
    from serving.logcount import count_logged_rows

    _, columns = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    server = grpc_server(tmp_path, root, "--shutdown-delay", "1", "--log-flush-seconds", "60")
    _, pb_grpc = _pb()
    answered, errors, stop = [], [], threading.Event()
    pb, _ = _pb()

    def load(k: int):
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            i = 0
            while not stop.is_set():
                rows = 1 + (i * 37 + k) % 120
                try:
                    resp = stub.ModelInfer(typed_request(_sub(columns, 0, rows), raw=True), timeout=20)
                    answered.append(len(np.frombuffer(resp.raw_output_contents[0], "<f4")))
                except grpc.RpcError as e:
                    errors.append(e.code())
                    if e.code() == grpc.StatusCode.UNAVAILABLE:
                        return  # the listener is closed
                i += 1

    threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:  # still answering, not ready
        assert not pb_grpc.GRPCInferenceServiceStub(ch).ServerReady(pb.ServerReadyRequest(), timeout=5).ready
    for t in threads:
        t.join(30)
    stop.set()
    assert server.proc.wait(30) == 0
    server.stop()
    # refused once the listener closed (UNAVAILABLE), or an RPC that reached the transport as the server
    # stopped and never reached the servicer (CANCELLED); never an answer lost: the log holds every answer
    refused = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert answered and set(errors) <= refused, errors
    assert count_logged_rows(root, MODEL) == sum(answered)


def test_the_same_request_over_http_and_grpc_logs_identical_rows(
    start_server, store_root, taxi_rows, tmp_path
):
    from kfloop import datasets
    from tests.serving.test_predlog import _NAMES, _log, _with_gaps
    from tests.serving.test_server import v2_body

    frame, _ = taxi_rows
    rows = _with_gaps(frame)
    cols = datasets.encode(rows, TAXI)
    log_root = tmp_path / "log"
    port = free_port()
    server = start_server("--store-uri", store_root, "--log-uri", str(log_root), "--grpc_port", str(port))
    r1 = httpx.post(server.url + INFER, json=v2_body(rows, "json"), timeout=30)
    assert r1.status_code == 200, r1.text
    _, pb_grpc = _pb()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        stub.ModelInfer(typed_request(cols, raw=True), metadata=[("x-request-id", "raw")])
        stub.ModelInfer(typed_request(cols, request_id="typed"))
    assert server.stop() == 0
    t = _log(log_root).to_pandas()
    logged = {
        rid: t[t.request_id == rid].sort_values("row").reset_index(drop=True)
        for rid in ("json", "raw", "typed")
    }
    cols_ = [*_NAMES, "probability", "model_version", "row", "source"]
    assert len(logged["json"]) == len(rows)
    assert logged["json"][cols_].equals(logged["raw"][cols_])
    assert logged["json"][cols_].equals(logged["typed"][cols_])


def test_kill9_of_the_writer_under_grpc_load_loses_and_doubles_no_answered_row(
    start_server, store_root, taxi_rows, tmp_path
):

    from tests.serving.test_predlog_faults import _start

    _, columns = taxi_rows
    log_root = tmp_path / "log"
    port = free_port()
    server = _start(start_server, store_root, log_root, "--grpc_port", str(port))
    _, pb_grpc = _pb()
    answered: list[str] = []
    stop = threading.Event()

    def load(k: int):
        i = 0
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.GRPCInferenceServiceStub(ch)
            while not stop.is_set():
                rid = f"g{k}-{i}"
                i += 1
                req = typed_request(_sub(columns, i % 50, i % 50 + 1), request_id=rid, raw=bool(i % 2))
                try:
                    stub.ModelInfer(req, timeout=30)
                    answered.append(rid)
                except grpc.RpcError:
                    pass  # shed while the writer restarts: not answered, so not owed to the log

    kill9_the_writer_under(load, server, log_root, answered, stop)
