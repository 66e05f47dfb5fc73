"""Real local receivers for the loop's notifications and metrics: an HTTP receiver (webhooks), an SMTP
server (aiosmtpd) and the Debian ``prometheus-pushgateway``. Fixtures: ``receiver``, ``smtp``, ``gateway``."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

#: The Debian package's binary (``make tools`` installs it).
PUSHGATEWAY = shutil.which("prometheus-pushgateway")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- receivers
class _Receiver(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.statuses: list[int] = []  # answered in turn; 200 once exhausted


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    srv = _Receiver()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    inbox.port = ctl.port
    yield inbox
    ctl.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    if PUSHGATEWAY is None:
        pytest.skip("prometheus-pushgateway not installed (`make tools` installs the Debian package)")
    addr = f"127.0.0.1:{free_port()}"
    log = (tmp_path_factory.mktemp("pgw") / "pushgateway.log").open("w")
    proc = subprocess.Popen(
        [PUSHGATEWAY, f"--web.listen-address={addr}"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{addr}/-/ready", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"pushgateway did not start on {addr}") from None
                time.sleep(0.1)
        yield addr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
