"""The V2 binary tensor data extension over HTTP against live servers (issue 28).

The official client (``tritonclient.http``, binary inputs and binary outputs) gets the numbers the JSON
requests and the in-process model get; hand-made bodies for every way a binary body can lie or be cut short
get a 4xx naming the field and never reach the model; the prediction log holds the same rows for the same
request sent as JSON and as binary; and one binary case each of the overload, drain and log-loss tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest

from kfloop.spec import Kind
from kfloop.spec import load as load_spec
from tests.conftest import TAXI_SPEC_PATH
from tests.serving.conftest import MODEL, Server, make_store

TAXI = load_spec(TAXI_SPEC_PATH)

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

INFER = f"/v2/models/{MODEL}/infer"
_WIRE = {"FP32": "<f4", "INT64": "<i8"}

# --------------------------------------------------------------------------------------- a client, by hand


def tensor_bytes(datatype: str, values) -> bytes:
    """One tensor's binary data as the extension defines it (written here from the spec, not the server)."""
    if datatype == "BYTES":
        encoded = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
        return b"".join(struct.pack("<I", len(b)) + b for b in encoded)
    if datatype == "BOOL":
        return np.asarray(values, dtype=np.uint8).tobytes()
    return np.asarray(values, dtype=_WIRE[datatype]).tobytes()


def json_values(f, column) -> list:
    """A feature's encoded column as JSON ``data`` (NaN -> null)."""
    if f.kind == Kind.NUMERIC:
        return [None if np.isnan(v) else float(v) for v in column]
    return column.tolist()


def binary_body(columns: dict, features=None, json_inputs=(), request_id=None, extra=None):
    """``(body, header length)`` of a V2 request of encoded ``columns``: every input binary except
    ``json_inputs`` (JSON ``data``). ``extra``: keys added to the JSON header (``parameters``, ``outputs``)."""
    features = features or TAXI.model_features
    inputs, blobs = [], []
    for f in features:
        col = columns[f.name]
        inp = {"name": f.name, "datatype": f.v2_datatype, "shape": [len(col)]}
        if f.name in json_inputs:
            inp["data"] = json_values(f, col)
        else:
            blob = tensor_bytes(f.v2_datatype, col)
            inp["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        inputs.append(inp)
    head = {"inputs": inputs, **(extra or {})}
    if request_id:
        head["id"] = request_id
    header = json.dumps(head).encode()
    return header + b"".join(blobs), len(header)


def post_binary(client, url: str, body: bytes, header_length, path: str = INFER, **headers):
    hdrs = {"inference-header-content-length": str(header_length), "content-type": "application/octet-stream"}
    hdrs.update(headers)
    return client.post(url + path, content=body, headers=hdrs)


def read_binary_outputs(r) -> dict[str, np.ndarray]:
    """The outputs of a binary answer, read per the extension (JSON header, then each output's bytes)."""
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    pos, out = n, {}
    for o in head["outputs"]:
        size = o["parameters"]["binary_data_size"]
        raw = r.content[pos : pos + size]
        pos += size
        if o["datatype"] == "BYTES":
            vals, i = [], 0
            while i < len(raw):
                (k,) = struct.unpack_from("<I", raw, i)
                vals.append(raw[i + 4 : i + 4 + k].decode())
                i += 4 + k
            out[o["name"]] = np.array(vals, dtype=object)
        else:
            out[o["name"]] = np.frombuffer(raw, dtype=_WIRE[o["datatype"]]).reshape(o["shape"])
    assert pos == len(r.content)
    return out


def _sub(columns: dict, lo: int, hi: int) -> dict:
    return {k: v[lo:hi] for k, v in columns.items()}


def _rows_answered(client, url: str) -> float:
    for line in client.get(url + "/metrics").text.splitlines():
        if line.startswith("kfloop_rows_answered_total "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dirs):
    tmp = tmp_path_factory.mktemp("binary")
    root = make_store(tmp / "store", demo_model_dirs)
    srv = Server(
        ["--store-uri", root, "--max-rows", "250", "--max-body-bytes", "400000", "--reload-interval", "0",
         "--log-flush-seconds", "0.2"],
        tmp / "server.log",
    )  # fmt: skip
    yield srv
    assert srv.stop() == 0


# ------------------------------------------------------------------------------------ the official client


def test_tritonclient_binary_inputs_and_outputs_get_the_json_numbers(server, taxi_rows, in_process):
    tc = pytest.importorskip("tritonclient.http")
    _, columns = taxi_rows
    client = tc.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL)
    assert [i["name"] for i in meta["inputs"]] == [f.name for f in TAXI.model_features]

    def inputs(cols, binary: bool, json_names=()):
        out = []
        for f in TAXI.model_features:
            arr = cols[f.name]
            i = tc.InferInput(f.name, list(arr.shape), f.v2_datatype)
            i.set_data_from_numpy(arr, binary_data=binary and f.name not in json_names)
            out.append(i)
        return out

    with httpx.Client(timeout=30) as http:
        for lo, hi in [(0, 1), (1, 8), (0, 250)]:
            cols = _sub(columns, lo, hi)
            want = in_process[0](cols)
            j = http.post(
                server.url + INFER,
                json={
                    "inputs": [
                        {"name": f.name, "datatype": f.v2_datatype, "shape": [hi - lo],
                         "data": json_values(f, cols[f.name])}
                        for f in TAXI.model_features
                    ]
                },
            )  # fmt: skip
            assert j.status_code == 200, j.text
            assert j.headers["content-type"] == "application/json"
            json_probs = np.asarray(j.json()["outputs"][0]["data"], dtype=np.float32)
            np.testing.assert_allclose(json_probs, want, rtol=1e-6, atol=1e-7)
            # binary in, binary out (the client's default: no outputs named -> binary_data_output)
            r = client.infer(MODEL, inputs(cols, True), request_id=f"bin-{lo}")
            assert r.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 4 * (hi - lo)
            np.testing.assert_array_equal(r.as_numpy("probability"), json_probs)
            assert r.get_response()["id"] == f"bin-{lo}"
            # binary in, JSON out; JSON in (the client's JSON encoding), binary out; mixed inputs
            asked = [tc.InferRequestedOutput("probability", binary_data=False)]
            r = client.infer(MODEL, inputs(cols, True), outputs=asked)
            assert "data" in r.get_response()["outputs"][0]
            np.testing.assert_array_equal(r.as_numpy("probability"), json_probs)
            r = client.infer(MODEL, inputs(cols, False))
            np.testing.assert_array_equal(r.as_numpy("probability"), json_probs)
            mixed = inputs(cols, True, json_names={"fare", "company", "trip_start_hour"})
            r = client.infer(MODEL, mixed, outputs=[tc.InferRequestedOutput("probability")])
            np.testing.assert_array_equal(r.as_numpy("probability"), json_probs)
    client.close()


def test_hand_made_binary_request_and_binary_answer(server, taxi_rows, in_process):
    _, columns = taxi_rows
    cols = _sub(columns, 10, 30)
    want = in_process[0](cols)
    with httpx.Client(timeout=30) as client:
        body, n = binary_body(cols, request_id="hand-1", extra={"parameters": {"binary_data_output": True}})
        r = post_binary(client, server.url, body, n)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-request-id"] == "hand-1"
        head = json.loads(r.content[: int(r.headers["inference-header-content-length"])])
        assert head["id"] == "hand-1" and head["model_version"] == "v0001"
        assert head["outputs"] == [
            {"name": "probability", "datatype": "FP32", "shape": [20], "parameters": {"binary_data_size": 80}}
        ]
        np.testing.assert_allclose(read_binary_outputs(r)["probability"], want, rtol=1e-6, atol=1e-7)
        # without binary_data_output: the JSON answer as before (and without a content-type, on a versions path)
        body, n = binary_body(cols)
        r = client.post(
            server.url + f"/v2/models/{MODEL}/versions/v0001/infer",
            content=body,
            headers={"inference-header-content-length": str(n)},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
        np.testing.assert_allclose(r.json()["outputs"][0]["data"], want, rtol=1e-6, atol=1e-7)
        # binary data without the header (what the issue saw: "not valid UTF-8") says what is missing
        r = client.post(server.url + INFER, content=body, headers={"content-type": "application/json"})
        assert (
            r.status_code == 400 and "needs the Inference-Header-Content-Length header" in r.json()["error"]
        )
        # a JSON body may carry the header too (its whole length: no binary part)
        j = json.dumps(json.loads(binary_body(cols, json_inputs=set(cols))[0])).encode()
        r = post_binary(client, server.url, j, len(j), **{"content-type": "application/json"})
        assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------ lying / cut bodies


def _bad_bodies(columns) -> list[tuple[str, bytes, object, str, int]]:
    """``(case, body, header length, field the error names, status)``."""
    cols = _sub(columns, 0, 2)
    body, n = binary_body(cols)
    head = json.loads(body[:n])
    blob = body[n:]
    names = [f.name for f in TAXI.model_features]
    last = names[-1]

    def edit(mutate, blobs=None):
        """The body with its JSON header mutated (``mutate(inputs by name)``) and the binary part replaced."""
        h = json.loads(json.dumps(head))
        mutate({i["name"]: i for i in h["inputs"]})
        text = json.dumps(h).encode()
        return text + (blob if blobs is None else blobs), len(text)

    def with_tensor(name: str, raw: bytes, size: int | None = None, **changes):
        """The body with input ``name``'s bytes replaced by ``raw`` (declared ``size``, default len(raw))."""
        parts, pos = [], 0
        for i in head["inputs"]:
            k = i["parameters"]["binary_data_size"]
            parts.append(raw if i["name"] == name else blob[pos : pos + k])
            pos += k

        def mutate(by):
            by[name]["parameters"]["binary_data_size"] = len(raw) if size is None else size
            by[name].update(changes)

        return edit(mutate, b"".join(parts))

    hdr = "inference-header-content-length"
    # fmt: off
    cases = [
        ("header not a number", body, "abc", hdr, 400),
        ("header negative", body, "-5", hdr, 400),
        ("header past the body", body, len(body) + 1, hdr, 400),
        ("header cuts the JSON", body, n - 5, "body", 400),
        ("header reaches into the binary part", body, n + 3, "body", 400),
        ("body cut short", body[:-1], n, last, 400),
        ("body cut inside the first tensor", body[: n + 3], n, names[0], 400),
        ("bytes after the last tensor", body + b"\0\0\0\0", n, "body", 400),
        ("size off by one (sizes then do not add up)", *edit(lambda by: by["fare"]["parameters"].update(binary_data_size=7)), "body", 400),
        ("size not shape x 4 (FP32)", *with_tensor("fare", tensor_bytes("FP32", [1.0])), "fare", 400),
        ("size not shape x 8 (INT64)", *with_tensor("trip_start_hour", b"\0" * 12), "trip_start_hour", 400),
        ("size a string", *edit(lambda by: by["fare"]["parameters"].update(binary_data_size="8")), "fare", 400),
        ("size negative", *edit(lambda by: by["fare"]["parameters"].update(binary_data_size=-8)), "fare", 400),
        ("size a boolean", *edit(lambda by: by["fare"]["parameters"].update(binary_data_size=True)), "fare", 400),
        ("data and binary_data_size", *edit(lambda by: by["fare"].update(data=[1.0, 2.0])), "fare", 400),
        ("datatype FP64", *with_tensor("fare", np.array([1.0, 2.0]).tobytes(), datatype="FP64"), "fare", 400),
        ("datatype BYTES for FP32", *with_tensor("fare", tensor_bytes("BYTES", ["a", "b"]), datatype="BYTES"), "fare", 400),
        ("datatype FP32 for BYTES", *with_tensor("payment_type", tensor_bytes("FP32", [1, 2]), datatype="FP32"), "payment_type", 400),
        ("shape 3 rows, others 2", *edit(lambda by: by["fare"].update(shape=[3])), "fare", 400),
        ("shape [2, 2]", *edit(lambda by: by["fare"].update(shape=[2, 2])), "fare", 400),
        ("infinity in FP32", *with_tensor("fare", tensor_bytes("FP32", [1.0, np.inf])), "fare", 400),
        ("NaN in a non-nullable FP32", *with_tensor("fare", tensor_bytes("FP32", [np.nan, 1.0])), "fare", 400),
        ("BYTES length past its tensor", *with_tensor("payment_type", struct.pack("<I", 100) + b"Cash" + struct.pack("<I", 4) + b"Cash"), "payment_type", 400),
        ("BYTES length prefix cut", *with_tensor("payment_type", tensor_bytes("BYTES", ["Cash"]) + b"\1\0"), "payment_type", 400),
        ("BYTES fewer elements than rows", *with_tensor("payment_type", tensor_bytes("BYTES", ["Cash"])), "payment_type", 400),
        ("BYTES bytes after the elements", *with_tensor("payment_type", tensor_bytes("BYTES", ["Cash", "Cash"]) + b"x"), "payment_type", 400),
        ("BYTES not UTF-8", *with_tensor("payment_type", tensor_bytes("BYTES", [b"Ca\xffsh", b"Cash"])), "payment_type", 400),
        ("binary data without the header", body, None, "body", 400),
        ("binary_data_size but no binary part", body[:n], None, names[0], 400),
        ("binary_data_output not a boolean", *edit(lambda by: None), "parameters", 400),
        ("unknown output asked", *edit(lambda by: None), "outputs", 400),
        ("octet-stream without the header", body, "no-header+octet", "content-type", 415),
    ]
    # fmt: on
    # (the two parameter / output cases get their own headers below)
    out = []
    for case, b, length, field, status in cases:
        if case == "binary_data_output not a boolean":
            h = {**head, "parameters": {"binary_data_output": "yes"}}
            b = json.dumps(h).encode() + blob
            length = len(b) - len(blob)
        elif case == "unknown output asked":
            h = {**head, "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}
            b = json.dumps(h).encode() + blob
            length = len(b) - len(blob)
        out.append((case, b, length, field, status))
    return out


def test_lying_or_cut_binary_bodies_are_4xx_naming_the_field_and_never_reach_the_model(server, taxi_rows):
    _, columns = taxi_rows
    failures = []
    with httpx.Client(timeout=30) as client:
        before = _rows_answered(client, server.url)
        for case, body, length, field, status in _bad_bodies(columns):
            if length is None:
                r = client.post(
                    server.url + INFER, content=body, headers={"content-type": "application/json"}
                )
            elif length == "no-header+octet":
                r = client.post(
                    server.url + INFER, content=body, headers={"content-type": "application/octet-stream"}
                )
            else:
                r = post_binary(client, server.url, body, length)
            try:
                err = r.json()
            except ValueError:
                err = {}
            if r.status_code != status or err.get("field") != field or field not in err.get("error", ""):
                failures.append(f"{case}: {r.status_code} {r.text[:300]}")
        assert _rows_answered(client, server.url) == before  # none of them reached the model
        # and the server still answers a good one
        body, n = binary_body(_sub(columns, 0, 2))
        assert post_binary(client, server.url, body, n).status_code == 200
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------------------- the log


def test_the_same_request_as_json_and_as_binary_logs_identical_rows(
    start_server, store_root, taxi_rows, tmp_path
):
    from tests.serving.test_predlog import _NAMES, _log, _with_gaps
    from tests.serving.test_server import v2_body

    frame, _ = taxi_rows
    rows = _with_gaps(frame)
    from kfloop import datasets

    cols = datasets.encode(rows, TAXI)
    log_root = tmp_path / "log"
    server = start_server("--store-uri", store_root, "--model-name", MODEL, "--log-uri", str(log_root))
    with httpx.Client(timeout=30) as c:
        r1 = c.post(server.url + INFER, json=v2_body(rows, "json"))
        body, n = binary_body(cols, request_id="binary")
        r2 = post_binary(c, server.url, body, n)
        body, n = binary_body(cols, json_inputs={"fare", "trip_seconds", "company"}, request_id="mixed")
        r3 = post_binary(c, server.url, body, n)
    assert all(r.status_code == 200 for r in (r1, r2, r3)), (r1.text, r2.text, r3.text)
    assert r1.json()["outputs"] == r2.json()["outputs"] == r3.json()["outputs"]
    assert server.stop() == 0
    t = _log(log_root).to_pandas()
    logged = {
        rid: t[t.request_id == rid].sort_values("row").reset_index(drop=True)
        for rid in ("json", "binary", "mixed")
    }
    cols_ = [*_NAMES, "probability", "model_version", "row", "source"]
    assert len(logged["json"]) == len(rows)
    assert logged["json"][cols_].equals(logged["binary"][cols_])
    assert logged["json"][cols_].equals(logged["mixed"][cols_])
    for f in TAXI.model_features:  # the gaps are logged as missing, not as the sentinel values
        assert logged["binary"][f.name].isna().tolist() == rows[f.name].isna().tolist(), f.name


# --------------------------------------------------------------------------- overload, drain, log loss


class HeldBinary:
    """A binary V2 request whose headers and part of its body are sent; :meth:`finish` sends the rest."""

    def __init__(self, port: int, body: bytes, header_length: int, sent: int):
        self.body, self.sent = body, sent
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n"
            f"inference-header-content-length: {header_length}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body[:sent]
        )
        time.sleep(0.3)  # the server takes the headers (and admits the request)

    def finish(self) -> tuple[int, bytes, dict]:
        self.sock.sendall(self.body[self.sent :])
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
        }
        while len(rest) < int(headers[b"content-length"]):
            rest += self.sock.recv(65536)
        self.sock.close()
        return int(head.split()[1]), rest, headers


def test_binary_requests_are_shed_on_the_headers_and_held_ones_answered(
    tmp_path, demo_model_dirs, taxi_rows, in_process
):
    _, columns = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    server = Server(
        ["--store-uri", root, "--max-rows", "50", "--max-queue-requests", "2", "--reload-interval", "0"],
        tmp_path / "server.log",
    )  # fmt: skip
    cols = _sub(columns, 0, 5)
    body, n = binary_body(cols, extra={"parameters": {"binary_data_output": True}})
    try:
        held = [HeldBinary(server.port, body, n, n + 10) for _ in range(2)]
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 10
            while (r := post_binary(client, server.url, body, n)).status_code != 503:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.05)
            assert r.headers["retry-after"] == "1" and "too many requests" in r.json()["error"]
            # a lying body is shed too: the 503 goes out on the headers, before anything is read
            r = post_binary(client, server.url, b"\xff" * 64, 1000)
            assert r.status_code == 503, r.text
            assert client.get(server.url + "/v2/health/ready").status_code == 200
        want = in_process[0](cols)
        for h in held:
            status, payload, headers = h.finish()
            assert status == 200 and headers[b"content-type"] == b"application/octet-stream"
            k = int(headers[b"inference-header-content-length"])
            np.testing.assert_allclose(np.frombuffer(payload[k:], "<f4"), want, rtol=1e-6, atol=1e-7)
    finally:
        assert server.stop() == 0


def test_sigterm_answers_and_logs_a_binary_request_in_flight(tmp_path, demo_model_dirs, taxi_rows):
    from serving.logcount import count_logged_rows

    _, columns = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    server = Server(
        ["--store-uri", root, "--shutdown-delay", "1", "--log-flush-seconds", "60", "--reload-interval", "0"],
        tmp_path / "server.log",
    )  # fmt: skip
    body, n = binary_body(_sub(columns, 0, 200))
    held = HeldBinary(server.port, body, n, n + 100)
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    while True:  # not ready first, then the listener closes
        try:
            httpx.get(server.url + "/v2/health/ready", timeout=5)
        except httpx.ConnectError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, payload, _ = held.finish()
    assert status == 200 and len(json.loads(payload)["outputs"][0]["data"]) == 200
    assert server.proc.wait(30) == 0
    server.stop()
    assert count_logged_rows(root, MODEL) == 200


def test_kill9_of_the_writer_under_binary_load_loses_and_doubles_no_answered_row(
    start_server, store_root, taxi_rows, tmp_path
):
    from tests.serving.test_predlog_faults import _start

    _, columns = taxi_rows
    log_root = tmp_path / "log"
    server = _start(start_server, store_root, log_root)
    answered: list[str] = []
    stop = threading.Event()

    def load(k: int):
        i = 0
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                rid = f"b{k}-{i}"
                i += 1
                body, n = binary_body(_sub(columns, i % 50, i % 50 + 1), request_id=rid)
                if post_binary(c, server.url, body, n).status_code == 200:
                    answered.append(rid)

    kill9_the_writer_under(load, server, log_root, answered, stop)


def kill9_the_writer_under(load, server, log_root, answered: list, stop: threading.Event) -> None:
    """Two ``load(k)`` threads run while the log writer is killed -9 and restarted; then every answered
    request id is logged exactly once and the server's counters agree (over HTTP binary or gRPC)."""
    from tests.serving.test_predlog import _children, _wait_for
    from tests.serving.test_predlog_faults import _final_counts, _logged_ids, _writer_pid

    threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        pid = _writer_pid(server)
        os.kill(pid, signal.SIGKILL)
        assert _wait_for(lambda: _children(server.proc.pid) not in ([], [pid]), 20)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert server.stop() == 0
    assert len(answered) > 20
    assert sorted(_logged_ids(log_root)) == sorted(answered)  # every answered row, once
    assert _final_counts(server) == (len(answered), 0)
