"""The prediction log's writer under faults, against a live server (issue 23, items 4 and 5).

* kill -9 of the writer process under load: every answered row is logged exactly once (the next writer gets
  the unacknowledged frames, under a fresh file-name id: no ``FileExistsError``), nothing is dropped.
* Log storage that cannot write (the writer's file-size limit set to 0: every write fails with ``EFBIG``,
  like a full disk): under ``shed`` new requests get 503 + Retry-After and readiness 503 with the reason,
  the rows already answered are retried and written once storage works again; under ``drop`` requests are
  answered and readiness still says the log cannot write.
* A stopped writer (SIGSTOP): liveness fails after ``--log-stall-seconds``.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import threading
import time

import pytest

from tests.serving.conftest import MODEL
from tests.serving.test_predlog import _children, _log, _wait_for
from tests.serving.test_server import v1_body

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")


class Load:
    """Client threads sending one-row requests with unique ids; records every answer's id and status."""

    def __init__(self, url: str, body: dict, threads: int = 2):
        self.url, self.body = url, body
        self.answered: list[str] = []
        self.statuses: list[int] = []
        self.shed: list[httpx.Response] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._n = 0
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, i: int) -> None:
        with httpx.Client(timeout=30) as c:
            while not self._stop.is_set():
                with self._lock:
                    rid = f"t{i}-{self._n}"
                    self._n += 1
                r = c.post(
                    f"{self.url}/v1/models/{MODEL}:predict", json=self.body, headers={"x-request-id": rid}
                )
                with self._lock:
                    self.statuses.append(r.status_code)
                    if r.status_code == 200:
                        self.answered.append(rid)
                    elif r.status_code == 503:
                        self.shed.append(r)
                        time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def _start(start_server, store_root, log_root, *extra):
    return start_server(
        "--store-uri",
        store_root,
        "--model-name",
        MODEL,
        "--log-uri",
        str(log_root),
        "--log-flush-seconds",
        "0.2",
        "--reload-interval",
        "0",
        *extra,
    )


def _final_counts(server) -> tuple[int, int]:
    """``(written, dropped)`` from the server's last line at exit."""
    m = re.search(r"prediction log written=(\d+) dropped=(\d+)", server.log_text())
    assert m, server.log_text()[-2000:]
    return int(m.group(1)), int(m.group(2))


def _logged_ids(log_root) -> list[str]:
    return _log(log_root).column("request_id").to_pylist()


def _writer_pid(server) -> int:
    (pid,) = _children(server.proc.pid)
    return pid


def _set_fsize(pid: int, soft: int) -> None:
    """The file-size limit of process ``pid`` (soft only: a process may lower and raise it for its child)."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


def test_kill9_of_the_writer_under_load_loses_and_doubles_no_answered_row(
    start_server, store_root, taxi_rows, tmp_path
):
    frame, _ = taxi_rows
    log_root = tmp_path / "log"
    server = _start(start_server, store_root, log_root)
    load = Load(server.url, v1_body(frame.iloc[:1]))
    try:
        for _ in range(3):  # three writers killed in turn, each while it holds answered rows
            time.sleep(1.0)
            pid = _writer_pid(server)
            os.kill(pid, signal.SIGKILL)
            assert _wait_for(lambda pid=pid: _children(server.proc.pid) not in ([], [pid]), 20)
        time.sleep(1.0)
    finally:
        load.stop()
    assert server.stop() == 0
    logged = _logged_ids(log_root)
    written, dropped = _final_counts(server)
    assert len(load.answered) > 50, load.statuses[-20:]
    assert "FileExistsError" not in server.log_text()
    assert sorted(logged) == sorted(load.answered)  # every answered row, once
    assert (written, dropped) == (len(load.answered), 0)
    print(f"kill -9 x3: answered {len(load.answered)} logged {len(logged)} dropped {dropped}")


@pytest.mark.parametrize("policy", ["shed", "drop"])
def test_log_storage_that_cannot_write_sheds_and_fails_readiness_until_it_recovers(
    start_server, store_root, taxi_rows, tmp_path, policy
):
    frame, _ = taxi_rows
    log_root = tmp_path / "log"
    server = _start(start_server, store_root, log_root, "--log-when-full", policy)
    body = v1_body(frame.iloc[:1])
    with httpx.Client(timeout=30) as c:
        assert c.post(f"{server.url}/v1/models/{MODEL}:predict", json=body).status_code == 200
        assert _wait_for(lambda: len(list(log_root.rglob("*.parquet"))) == 1)
        writer = _writer_pid(server)
        _set_fsize(writer, 0)  # every write of the log now fails (EFBIG), like a full disk
        load = Load(server.url, body)
        try:

            def not_ready():
                r = c.get(f"{server.url}/v2/health/ready")
                return r.status_code == 503 and "cannot write" in r.json()["error"]

            assert _wait_for(not_ready, 20), c.get(f"{server.url}/v2/health/ready").text
            time.sleep(1.0)
            during = len(load.answered)
            time.sleep(1.0)
            answered_while_failing = len(load.answered) - during
            live = c.get(f"{server.url}/v2/health/live")
            assert live.status_code == 200  # storage is not the pod's fault: no restart
            if policy == "shed":
                assert answered_while_failing == 0, answered_while_failing
                assert load.shed, load.statuses[-10:]
                r = load.shed[-1]
                assert r.headers["retry-after"] == "1" and "cannot write" in r.json()["error"], r.text
            else:
                assert answered_while_failing > 0 and not load.shed
            _set_fsize(writer, resource.RLIM_INFINITY)  # storage works again
            assert _wait_for(lambda: c.get(f"{server.url}/v2/health/ready").status_code == 200, 20)
            recovered = len(load.answered)
            assert _wait_for(lambda: len(load.answered) > recovered + 5, 20)
        finally:
            load.stop()
    assert server.stop() == 0
    logged = _logged_ids(log_root)
    written, dropped = _final_counts(server)
    assert len(_first(logged)) == 1 and sorted(logged) == sorted([*_first(logged), *load.answered])
    assert dropped == 0 and written == len(load.answered) + 1
    print(
        f"{policy}: answered {len(load.answered) + 1} logged {len(logged)} dropped {dropped} "
        f"shed {len(load.shed)} answered while failing {answered_while_failing}"
    )


def _first(logged: list[str]) -> list[str]:
    """The id of the request sent before the fault (the server chose it: not one of the load's)."""
    return [rid for rid in logged if not rid.startswith("t")]


def test_a_stopped_writer_fails_liveness_after_the_stall_bound(start_server, store_root, taxi_rows, tmp_path):
    frame, _ = taxi_rows
    log_root = tmp_path / "log"
    server = _start(start_server, store_root, log_root, "--log-stall-seconds", "2")
    body = v1_body(frame.iloc[:1])
    with httpx.Client(timeout=30) as c:
        writer = _writer_pid(server)
        os.kill(writer, signal.SIGSTOP)
        try:
            answered = [c.post(f"{server.url}/v1/models/{MODEL}:predict", json=body) for _ in range(5)]
            assert all(r.status_code == 200 for r in answered)
            stopped_at = time.monotonic()
            assert c.get(f"{server.url}/v2/health/live").status_code == 200  # within the bound

            def not_live():
                r = c.get(f"{server.url}/v2/health/live")
                return r.status_code == 503 and "no progress" in r.json()["error"]

            assert _wait_for(not_live, 20), c.get(f"{server.url}/v2/health/live").text
            waited = time.monotonic() - stopped_at
            assert 1.5 <= waited <= 10, waited
            assert c.get(f"{server.url}/v2/health/ready").status_code == 503
        finally:
            os.kill(writer, signal.SIGCONT)
        assert _wait_for(lambda: c.get(f"{server.url}/v2/health/live").status_code == 200, 20)
    assert server.stop() == 0
    assert sorted(_logged_ids(log_root)) == sorted(r.headers["x-request-id"] for r in answered)
    assert _final_counts(server) == (5, 0)
    print(f"SIGSTOP: liveness 503 after {waited:.1f} s (bound 2 s)")
