"""Overload over HTTP against a live server: bounded admission (503 + Retry-After), health always answered."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import select
import socket
import threading
import time

import numpy as np
import pytest

from tests.serving.conftest import MODEL, Server, make_store
from tests.serving.test_server import _sub, v1_body

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

HEALTH = ["/", "/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}/ready", f"/v1/models/{MODEL}"]


def _probe_timeout() -> float:
    """The kubelet's probe timeout from the rendered manifest: a health answer slower than this is a failure."""
    from kfloop import config, deploy

    isvc = deploy.render_inference_service(
        MODEL,
        "/tmp/store",
        "v0001",
        cfg=dataclasses.replace(config.DeployConfig(), deployment_mode="RawDeployment"),
    )
    model = isvc["spec"]["predictor"]["model"]
    return float(min(model["livenessProbe"]["timeoutSeconds"], model["readinessProbe"]["timeoutSeconds"]))


class Held:
    """A request whose headers (and part of its body) are sent; the rest is sent by :meth:`finish`."""

    def __init__(self, port: int, body: bytes, sent: int):
        self.body, self.sent = body, sent
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(
            f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body[:sent]
        )
        # Let the server take the headers (and admit the request) before the test sends anything else; if it
        # answered already, the request was shed, not held.
        readable, _, _ = select.select([self.sock], [], [], 0.5)
        assert not readable, self.sock.recv(65536)[:300]

    def finish(self) -> tuple[int, dict]:
        self.sock.sendall(self.body[self.sent :])
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(
            next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
        )
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.sock.close()
        return int(head.split()[1]), json.loads(rest)


@pytest.fixture(scope="module")
def bounded(tmp_path_factory, demo_model_dirs):
    tmp = tmp_path_factory.mktemp("overload")
    root = make_store(tmp / "store", demo_model_dirs)
    server = Server(
        [
            "--store-uri", root, "--max-rows", "50", "--max-queue-rows", "50", "--max-queue-requests", "3",
            "--max-body-bytes", "60000", "--max-inflight-bytes", "60000", "--reload-interval", "0",
        ],
        tmp / "server.log",
    )  # fmt: skip
    yield server
    server.stop()


def _post(client, url, body: bytes):
    return client.post(
        f"{url}/v1/models/{MODEL}:predict", content=body, headers={"content-type": "application/json"}
    )


def _shed_until(client, url, body: bytes) -> httpx.Response:
    """Posts ``body`` until it is shed (the held requests are admitted asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        r = _post(client, url, body)
        if r.status_code == 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def _assert_shed(r: httpx.Response, why: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert "overloaded" in r.json()["error"] and why in r.json()["error"], r.text


def test_requests_bound_sheds_before_parsing_and_recovers(bounded, taxi_rows, in_process):
    frame, columns = taxi_rows
    one = json.dumps(v1_body(frame.iloc[:1])).encode()
    held = [Held(bounded.port, one, len(one) // 2) for _ in range(3)]
    with httpx.Client(timeout=30) as client:
        _assert_shed(_shed_until(client, bounded.url, one), "too many requests")
        # Shed on the headers: a body that is not even JSON gets the 503, not a 400.
        _assert_shed(_post(client, bounded.url, b"{not json"), "too many requests")
        for path in HEALTH:  # health is never subject to admission
            assert client.get(bounded.url + path).status_code == 200, path
        for h in held:
            status, out = h.finish()
            assert status == 200
            np.testing.assert_allclose(
                out["predictions"], in_process[0](_sub(columns, 0, 1)), rtol=1e-6, atol=1e-7
            )
        r = _post(client, bounded.url, one)
        assert r.status_code == 200, r.text
        assert (
            client.post(f"{bounded.url}/v1/models/{MODEL}:predict", content=b"{not json").status_code == 400
        )


def test_rows_bound_uses_the_declared_length(bounded, taxi_rows):
    frame, _ = taxi_rows
    body = {n: json.dumps(v1_body(frame.iloc[:n])).encode() for n in (5, 20, 40)}
    with httpx.Client(timeout=30) as client:
        for _ in range(10):  # the server learns the bytes per row of these bodies
            assert _post(client, bounded.url, body[40]).status_code == 200
        held = Held(bounded.port, body[40], 10)  # ~40 rows declared, not yet sent
        _assert_shed(_shed_until(client, bounded.url, body[20]), "too many rows")
        assert _post(client, bounded.url, body[5]).status_code == 200  # 40 + 5 rows fit the bound of 50
        status, out = held.finish()
        assert status == 200 and len(out["predictions"]) == 40
        assert _post(client, bounded.url, body[20]).status_code == 200


def test_burst_of_big_requests_gets_200_or_503_and_health_stays_answered(
    tmp_path, demo_model_dirs, taxi_rows, in_process
):
    """Many clients sending 1,000-row requests at once: bounded work, only 200/503, probes never time out."""
    frame, columns = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    server = Server(
        ["--store-uri", root, "--max-rows", "1000", "--max-queue-rows", "2000", "--log-flush-seconds", "0.5"],
        tmp_path / "server.log",
    )
    reps = -(-1000 // len(frame))
    big = frame.iloc[np.arange(reps * len(frame)) % len(frame)].iloc[:1000]
    body = json.dumps(v1_body(big)).encode()
    idx = np.arange(1000) % len(frame)
    want = in_process[0]({k: v[idx] for k, v in columns.items()})
    stop = threading.Event()
    statuses: dict[int, int] = {}
    answered_rows = 0
    errors: list[str] = []
    lock = threading.Lock()
    probe_timeout = _probe_timeout()

    def client_loop():
        nonlocal answered_rows
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                r = _post(client, server.url, body)
                with lock:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    got = np.float32(r.json()["predictions"])
                    if not np.allclose(got, want, rtol=1e-6, atol=1e-7):
                        errors.append("wrong predictions")
                    with lock:
                        answered_rows += 1000
                elif r.status_code == 503:
                    if r.headers.get("retry-after") != "1":
                        errors.append(f"503 without Retry-After: {r.headers}")
                else:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    probes: list[str] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            futures = [pool.submit(client_loop) for _ in range(24)]
            with httpx.Client(timeout=probe_timeout) as probe:
                deadline = time.monotonic() + 4
                while time.monotonic() < deadline:
                    for path in HEALTH:
                        try:
                            r = probe.get(server.url + path)
                            if r.status_code != 200:
                                probes.append(f"{path}: {r.status_code}")
                        except httpx.TimeoutException:
                            probes.append(f"{path}: no answer within the probe timeout ({probe_timeout} s)")
                    time.sleep(0.05)
            stop.set()
            for f in futures:
                f.result()
    finally:
        stop.set()
        assert server.stop() == 0
    assert not errors, errors[:5]
    assert not probes, probes[:5]
    assert set(statuses) <= {200, 503} and statuses.get(503, 0) > 0 and statuses.get(200, 0) > 0, statuses
    from serving.logcount import count_logged_rows

    assert (
        count_logged_rows(root, MODEL) == answered_rows
    )  # shed requests are not logged; answered ones all are


@pytest.mark.parametrize("when_full", ["shed", "drop"])
def test_a_log_behind_sheds_so_every_answer_is_logged(tmp_path, demo_model_dirs, taxi_rows, when_full):
    """The log's writer holds the first request's rows (no flush for 60 s) and the queue fits only those:
    ``shed`` answers the next request 503 (health still 200); ``drop`` answers it and drops its log rows."""
    frame, _ = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    n = len(frame)
    server = Server(
        [
            "--store-uri", root, "--reload-interval", "0", "--max-rows", str(n), "--log-queue-size",
            str(n + n // 2), "--log-flush-rows", "1000000", "--log-flush-seconds", "60", "--log-when-full",
            when_full,
        ],
        tmp_path / "server.log",
    )  # fmt: skip
    body = json.dumps(v1_body(frame)).encode()
    try:
        with httpx.Client(timeout=30) as client:
            first = _post(client, server.url, body)
            assert first.status_code == 200, first.text
            second = _post(client, server.url, body)
            one = _post(client, server.url, json.dumps(v1_body(frame.iloc[:1])).encode())
            for path in HEALTH:
                assert client.get(server.url + path).status_code == 200, path
            metrics = client.get(server.url + "/metrics").text
    finally:
        assert server.stop() == 0
    from serving.logcount import count_logged_rows

    if when_full == "shed":
        _assert_shed(second, "prediction log is behind")
        assert f"--log-queue-size {n + n // 2}" in second.json()["error"]
        assert one.status_code == 200, one.text  # a smaller request still fits the log's room
        assert "kfloop_requests_shed_total 1.0" in metrics
        assert count_logged_rows(root, MODEL) == n + 1  # exactly the answered rows
        assert "dropped=0" in server.log_text()
    else:
        assert second.status_code == 200 and one.status_code == 200, (second.text, one.text)
        assert count_logged_rows(root, MODEL) == n + 1  # the second request's rows did not fit
        assert f"dropped={n}" in server.log_text()


def test_a_row_estimate_over_the_log_bound_is_capped_at_max_rows(tmp_path, demo_model_dirs, taxi_rows):
    """The estimate on the headers (body bytes / bytes per row seen so far) may exceed the log's bound for a
    request that fits it (here: JSON padded with spaces); it is capped at --max-rows, which the log fits."""
    frame, _ = taxi_rows
    root = make_store(tmp_path / "store", demo_model_dirs)
    server = Server(
        ["--store-uri", root, "--reload-interval", "0", "--max-rows", "50", "--log-queue-size", "50",
         "--log-flush-rows", "1"],
        tmp_path / "server.log",
    )  # fmt: skip
    one = json.dumps(v1_body(frame.iloc[:1])).encode()
    padded = json.dumps(v1_body(frame.iloc[:50]), indent=200).encode()  # ~50x the bytes of its rows
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(5):  # the server learns the bytes per row of compact bodies
                assert _post(client, server.url, one).status_code == 200
            deadline = time.monotonic() + 20
            while "kfloop_prediction_log_written_total 5.0" not in client.get(server.url + "/metrics").text:
                assert time.monotonic() < deadline, "the 5 rows were not written"
                time.sleep(0.05)
            r = _post(client, server.url, padded)
            assert r.status_code == 200 and len(r.json()["predictions"]) == 50, r.text[:300]
    finally:
        assert server.stop() == 0
    from serving.logcount import count_logged_rows

    assert count_logged_rows(root, MODEL) == 55
