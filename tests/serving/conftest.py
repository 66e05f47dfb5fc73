"""Serving fixtures: demo SavedModels (taxi spec and a synthetic non-taxi spec) in a real model store, real taxi
rows, and live servers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = "taxi-tips"


def pytest_collection_modifyitems(config, items):
    """``fuzz`` tests (large hypothesis runs) run only when ``-m`` names them, never in ``make test``."""
    if "fuzz" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="fuzz: large run; select with pytest -m fuzz tests/serving")
    for item in items:
        if "fuzz" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``python -m serving`` subprocess on a free loopback port."""

    def __init__(
        self, args: list[str], log_path: Path, command: list[str] | None = None, port: int | None = None
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), KFLOOP_SERVING_PYTHON=sys.executable
        )
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = command or [sys.executable, "-m", "serving", "--http_port", str(self.port)]
        self.proc = subprocess.Popen(
            [*argv, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """Clean shutdown (SIGTERM, as Kubernetes does); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def demo_model_dirs(tmp_path_factory, taxi_spec):
    """Two demo SavedModels of the taxi spec (seed 0 and seed 1) with the trainer's signatures."""
    from serving import demo_model

    out = tmp_path_factory.mktemp("demo-models")
    return [demo_model.build(out / f"seed{seed}", taxi_spec, seed=seed) for seed in (0, 1)]


@pytest.fixture(scope="session")
def signups_spec():
    """The synthetic non-taxi spec (:mod:`tests.serving.specs`)."""
    from tests.serving.specs import signups_spec

    return signups_spec()


@pytest.fixture(scope="session")
def signups_model_dir(tmp_path_factory, signups_spec):
    """A demo SavedModel of the signups spec (a model with other features than the taxi ones)."""
    from serving import demo_model

    return demo_model.build(tmp_path_factory.mktemp("signups-model") / "m", signups_spec, seed=3)


@pytest.fixture(scope="session")
def in_process(demo_model_dirs):
    """In-process model calls: ``in_process[i](columns) -> probabilities`` through the public signature."""
    import tensorflow as tf

    fns = []
    for d in demo_model_dirs:
        sig = tf.saved_model.load(d).signatures["predict_raw"]
        fns.append(
            lambda cols, sig=sig: sig(**{k: tf.constant(v) for k, v in cols.items()})["probability"].numpy()
        )
    return fns


def make_store(root: Path, model_dirs: list[str]) -> str:
    """A fresh model store at ``root`` with v0001 (seed 0, champion) and v0002 (seed 1)."""
    from kfloop.store import ModelStore

    store = ModelStore(str(root))
    v1 = store.publish(MODEL, model_dirs[0], {"seed": 0})
    v2 = store.publish(MODEL, model_dirs[1], {"seed": 1})
    assert (v1, v2) == ("v0001", "v0002")
    store.set_alias(MODEL, "champion", v1, reason="test fixture")
    return str(root)


@pytest.fixture
def store_root(tmp_path, demo_model_dirs):
    """A fresh model store with v0001 (seed 0, champion) and v0002 (seed 1)."""
    return make_store(tmp_path / "store", demo_model_dirs)


@pytest.fixture(scope="session")
def taxi_rows(taxi_csv, taxi_spec):
    """300 real taxi rows: ``(frame, encoded columns)``."""
    from kfloop import datasets

    frame = datasets.read_dataset(str(taxi_csv), taxi_spec).sample(300, random_state=7).reset_index(drop=True)
    return frame, datasets.encode(frame, taxi_spec)


@pytest.fixture
def start_server(tmp_path):
    """Factory: ``start_server(*args) -> Server``; every server started is stopped at teardown."""
    started = []

    def start(*args: str) -> Server:
        server = Server(list(args), tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


SMALL_MAX_ROWS = 8


@pytest.fixture(scope="session")
def small_server(tmp_path_factory, demo_model_dirs):
    """One server shared by the fuzz and control-surface tests: ``--max-rows 8``, log on, no hot reload."""
    tmp = tmp_path_factory.mktemp("small-server")
    root = make_store(tmp / "store", demo_model_dirs)
    server = Server(
        [
            "--store-uri", root, "--max-rows", str(SMALL_MAX_ROWS), "--max-body-bytes", "400000",
            "--reload-interval", "0", "--log-flush-seconds", "5",
        ],
        tmp / "server.log",
    )  # fmt: skip
    yield server
    assert server.stop() == 0
