"""Graceful drain on SIGTERM: not ready first, in-flight requests finish, the log is flushed, exit in time.

The time budget comes from one place: :class:`kfloop.config.ServingConfig` (the server's shutdown steps) and
the InferenceService rendered from :class:`kfloop.config.DeployConfig` (preStop sleep, grace period).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time

import pytest

from tests.serving.conftest import MODEL, Server, make_store
from tests.serving.test_overload import Held
from tests.serving.test_server import v1_body

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

EXIT_MARGIN_S = 2.0  # process teardown after the last step (interpreter exit, TF threads)


def pod_budget() -> tuple[float, float]:
    """``(terminationGracePeriodSeconds, preStop sleep)`` of the rendered RawDeployment InferenceService."""
    from kfloop import config, deploy

    cfg = dataclasses.replace(config.DeployConfig(), deployment_mode="RawDeployment")
    isvc = deploy.render_inference_service(MODEL, "/tmp/store", "v0001", cfg=cfg)
    predictor = isvc["spec"]["predictor"]
    grace = float(predictor["terminationGracePeriodSeconds"])
    command = predictor["model"]["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return grace, float(command[-1])


def server_budget(cfg) -> float:
    return (
        cfg.shutdown_delay_s
        + cfg.accept_drain_s
        + cfg.shutdown_requests_timeout_s
        + cfg.shutdown_log_timeout_s
        + EXIT_MARGIN_S
    )


def test_shutdown_budget_fits_the_pods_grace_period():
    from kfloop import config

    grace, pre_stop = pod_budget()
    assert pre_stop + server_budget(config.ServingConfig()) <= grace, (
        grace,
        pre_stop,
        config.ServingConfig(),
    )


def test_sigterm_not_ready_first_then_in_flight_finish_log_flushed_exit_in_time(
    tmp_path, demo_model_dirs, taxi_rows
):
    from kfloop import config
    from serving.logcount import count_logged_rows

    frame, _ = taxi_rows
    grace, pre_stop = pod_budget()
    delay = 1.5
    cfg = dataclasses.replace(config.ServingConfig(), shutdown_delay_s=delay)
    root = make_store(tmp_path / "store", demo_model_dirs)
    server = Server(
        [
            "--store-uri",
            root,
            "--shutdown-delay",
            str(delay),
            "--log-flush-seconds",
            "60",
            "--reload-interval",
            "0",
        ],
        tmp_path / "server.log",
    )
    body = json.dumps(v1_body(frame.iloc[:200])).encode()
    answered = 0
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        nonlocal answered
        while not stop.is_set():
            try:  # one connection per request: it is either refused (listener closed) or must be answered
                r = httpx.post(
                    f"{server.url}/v1/models/{MODEL}:predict",
                    content=body,
                    headers={"content-type": "application/json", "connection": "close"},
                    timeout=60,
                )
            except httpx.ConnectError:
                return
            except httpx.HTTPError as e:
                failures.append(f"in-flight request lost: {e!r}")
                return
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                with lock:
                    answered += 200

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    held = Held(server.port, body, 100)  # a request in flight across the whole shutdown
    time.sleep(0.2)
    t_term = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    first_not_ready = first_refused = None
    live_during_drain = []
    while time.monotonic() - t_term < delay + 5:
        now = time.monotonic()
        try:
            ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code
            live_during_drain.append(httpx.get(f"{server.url}/v2/health/live", timeout=5).status_code)
        except httpx.ConnectError:
            first_refused = first_refused or now
            break
        if ready == 503 and first_not_ready is None:
            first_not_ready = now
        if ready == 200 and first_not_ready is not None:
            failures.append("ready again after SIGTERM")
        time.sleep(0.05)
    status, out = held.finish()  # the listener is closed by now; the request already in flight is answered
    assert status == 200 and len(out["predictions"]) == 200
    answered += 200
    stop.set()
    for t in threads:
        t.join(60)
    rc = server.proc.wait(grace)
    elapsed = time.monotonic() - t_term
    server.stop()
    assert not failures, failures[:5]
    assert first_not_ready is not None and first_refused is not None and first_not_ready < first_refused
    assert live_during_drain and set(live_during_drain) == {200}
    assert rc == 0, server.log_text()[-2000:]
    assert elapsed <= server_budget(cfg) and elapsed <= grace - pre_stop, elapsed
    assert count_logged_rows(root, MODEL) == answered  # every answered row is in the flushed log
    assert "dropped=0" in server.log_text()
