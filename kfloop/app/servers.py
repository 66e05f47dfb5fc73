"""The local loop's processes: KServe servers in subprocesses, and task output sent to log files.

Only the standard library is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]


#: The local servers' prediction-log flush interval (``--log-flush-seconds``).
FLUSH_SECONDS = 0.5
#: The local loop's watermark (the monitoring pipeline's ``close_after_seconds``): the loop waits until its
#: servers report every answered row written (:meth:`Server.wait_logged`), so a window can close this soon
#: after its end; the cluster default (``MonitoringConfig.close_after_seconds``) allows for what it cannot see.
WATERMARK_SECONDS = 1.0


class LoopError(RuntimeError):
    """A loop step failed; the message names the step and where its logs are."""


@contextlib.contextmanager
def redirected(log_path: Path):
    """Sends this process's stdout / stderr (and its children's: file descriptors 1 and 2) to a log file.

    kfp.local prints every task's full output; ``kfloop run`` shows progress lines and keeps those logs.

    Raises:
        LoopError: whatever failed inside, re-raised with the log's path and its last lines.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except Exception as e:
            sys.stdout.flush()
            sys.stderr.flush()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-12:])
            raise LoopError(f"{type(e).__name__}: {e}\n(log: {log_path})\n{tail}") from e
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving_python() -> str:
    """The serving env's interpreter: ``$KFLOOP_SERVING_PYTHON`` or ``.venv-serving/bin/python``."""
    return os.environ.get("KFLOOP_SERVING_PYTHON") or str(_ROOT / ".venv-serving" / "bin" / "python")


class Server:
    """A local KServe server (``python -m serving``) in a subprocess, its output in a log file."""

    def __init__(
        self,
        store_uri: str,
        model_name: str,
        log_path: Path,
        *,
        ref: str = "champion",
        log: bool = True,
        log_uri: str | None = None,
    ):
        self.store_uri, self.model_name, self.ref, self.log = store_uri, model_name, ref, log
        self.log_uri = log_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.flush_seconds = FLUSH_SECONDS

    def start(self, timeout: float) -> None:
        python = serving_python()
        if not os.path.exists(python):
            raise LoopError(
                f"serving env python not found at {python} (run `make env` or set KFLOOP_SERVING_PYTHON)"
            )
        cmd = [python, "-m", "serving", "--store-uri", self.store_uri, "--model-name", self.model_name]
        cmd += ["--model-ref", self.ref, "--http_port", str(self.port), "--reload-interval", "0.5"]
        cmd += ["--log-flush-seconds", str(self.flush_seconds)]
        if not self.log:
            cmd.append("--no-prediction-log")
        elif self.log_uri:
            cmd += ["--log-uri", self.log_uri]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it while it runs
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(_ROOT), env=env)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LoopError(f"server ({self.ref}) exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.version() is not None:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise LoopError(
            f"server ({self.ref}) not ready after {timeout:.0f} s; log {self.log_path}:\n{self.tail()}"
        )

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def version(self) -> str | None:
        """The version the server serves now (V2 model metadata), or None while it is not ready."""
        try:
            with urllib.request.urlopen(f"{self.url}/v2/models/{self.model_name}", timeout=2) as r:
                data = json.loads(r.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        versions = data.get("versions") or []
        return versions[0] if versions else None

    def counters(self) -> dict[str, float]:
        """The server's ``kfloop_*_total`` counters from ``/metrics`` (empty when it does not answer)."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
                text = r.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("kfloop_") and name.endswith("_total"):
                out[name] = float(value)
        return out

    def wait_logged(self, timeout: float) -> bool:
        """Waits until every row this server answered is written to its prediction log (or dropped and
        counted so), at most ``timeout`` seconds. True when it is; a server without a log is at once."""
        deadline = time.monotonic() + timeout
        while self.log:
            c = self.counters()
            answered = c.get("kfloop_rows_answered_total", 0.0)
            done = c.get("kfloop_prediction_log_written_total", 0.0)
            done += c.get("kfloop_prediction_log_dropped_total", 0.0)
            if c and done >= answered:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
