"""Store fault injection (issue #12): kill -9 during publish, concurrent promote/rollback, transient GCS
errors from a fault-injecting proxy in front of a real fake-gcs-server.

What must hold after every fault:

- no version that a reader lists is incomplete (each one verifies and fetches), committed versions never
  change, and the next publish proceeds without any repair;
- every committed version has a publish record and every alias move a success record (possibly rebuilt
  from the store's state, ``recovered``), and the history is readable;
- per alias, the success records form one chain (each move starts where the previous one ended) ending at
  the alias's current value: no move is lost.

``KFLOOP_STRESS=1`` runs larger trial counts (marker ``stress``).
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kfloop import fs, store
from kfloop.store import ModelStore
from tests.test_store import NAME, make_model_dir

ROOT = Path(__file__).resolve().parents[1]
STRESS = os.environ.get("KFLOOP_STRESS") == "1"


def stress(f):
    """Marker ``stress``: a larger trial count, run only with ``KFLOOP_STRESS=1``."""
    return pytest.mark.stress(pytest.mark.skipif(not STRESS, reason="larger run: set KFLOOP_STRESS=1")(f))


def _child(args: dict, *, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.store_child", json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _tree(ms: ModelStore, version: str) -> dict[str, str]:
    root = fs.join(ms.root, "models", NAME, version)
    return {u[len(root) :]: hashlib.sha256(fs.read_bytes(u)).hexdigest() for u in fs.list_files(root)}


def check_invariants(ms: ModelStore, committed: dict[str, dict], tmp: Path) -> None:
    """The reader-side promises after any fault; ``committed`` maps versions seen before to their files."""
    versions = ms.versions(NAME)
    for v, tree in committed.items():
        assert v in versions, f"committed {v} vanished"
        assert _tree(ms, v) == tree, f"committed {v} changed"
    for v in versions:
        ms.verify(NAME, v)
        if v not in committed:
            dest = tmp / f"fetch-{v}-{time.monotonic_ns()}"
            ms.fetch(NAME, v, str(dest))
            committed[v] = _tree(ms, v)
    hist = ms.history(NAME)
    published = [r["version"] for r in hist if r["event"] == "publish"]
    assert sorted(published) == versions, "a publish record is missing, doubled or names an invisible version"
    for alias, version in ms.aliases(NAME).items():
        assert version in versions
        chain = [
            r for r in hist if r["event"] == "alias" and r["alias"] == alias and r["outcome"] == "success"
        ]
        for a, b in itertools.pairwise(chain):
            assert b["from"] == a["to"], f"{alias}: a move is missing between {a} and {b}"
        assert chain and chain[-1]["to"] == version, f"{alias}: its current value has no record"


def _fresh_publish(ms: ModelStore, model: Path, tmp: Path, committed: dict) -> str:
    """The next publish in this process: must work without any repair, on a never-used version."""
    before = {p for p in _version_dirs(ms)}
    v = ms.publish(NAME, str(model), {"run_id": f"fresh-{time.monotonic_ns()}"})
    assert v not in before, f"publish reused the directory of {v}"
    ms.set_alias(NAME, store.CANARY, v)
    check_invariants(ms, committed, tmp)
    return v


def _version_dirs(ms: ModelStore) -> set[str]:
    base = fs.join(ms.root, "models", NAME) + "/"
    return {u[len(base) :].split("/")[0] for u in fs.list_files(fs.join(ms.root, "models", NAME))} & {
        f"v{i:04d}" for i in range(1, 10000)
    }


def _kill_trials(ms: ModelStore, tmp_path: Path, env: dict, *, step: int = 1, timed: int = 10) -> dict:
    model = make_model_dir(tmp_path, "k")
    committed: dict = {}
    first = ms.publish(NAME, str(model), {"run_id": "seed"})
    ms.set_alias(NAME, store.CHAMPION, first)
    check_invariants(ms, committed, tmp_path)
    probe = _child({"mode": "publish", "root": ms.root, "model_dir": str(model), "run": "probe"}, env=env)
    assert probe.returncode == 0, probe.stderr
    writes = json.loads(probe.stdout.splitlines()[-1])["writes"]
    check_invariants(ms, committed, tmp_path)
    stats = {"writes_per_publish": writes, "killed": 0, "trials": 0}
    # Every write of a publish + alias move (claim, counter, run index, model files, metadata, commit
    # marker, publish record, alias swap, alias record), killed just before it and just after it.
    for k in range(1, writes + 1, step):
        for when in ("before", "after"):
            args = {"mode": "publish", "root": ms.root, "model_dir": str(model), "run": f"k{k}{when}"}
            r = _child({**args, "kill_at": k, "when": when}, env=env)
            assert r.returncode in (-9, 0), r.stderr[-2000:]
            stats["killed"] += r.returncode == -9
            stats["trials"] += 1
            check_invariants(ms, committed, tmp_path)
            if stats["trials"] % 4 == 0:
                _fresh_publish(ms, model, tmp_path, committed)
    # Random moments: a process publishing and moving aliases in a loop, killed after 0.05..0.8 s.
    rng = random.Random(12)
    for i in range(timed):
        args = {"mode": "loop", "root": ms.root, "model_dir": str(model), "run": f"t{i}"}
        p = subprocess.Popen(
            [sys.executable, "-m", "tests.store_child", json.dumps(args)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.05, 0.8) + (1.0 if ms.is_gcs else 0.3))  # + interpreter start-up
        p.kill()
        _, err = p.communicate(timeout=30)
        assert p.returncode == -9, err.decode()[-2000:]
        stats["killed"] += 1
        stats["trials"] += 1
        check_invariants(ms, committed, tmp_path)
    _fresh_publish(ms, model, tmp_path, committed)
    stats["versions"] = len(ms.versions(NAME))
    return stats


def test_kill_9_during_publish_local(tmp_path):
    stats = _kill_trials(ModelStore(str(tmp_path / "store")), tmp_path, {}, timed=30 if STRESS else 8)
    print("kill -9 trials (local):", stats)
    assert stats["trials"] >= 30 and stats["killed"] >= 30


def test_kill_9_during_publish_gcs(fake_gcs, gcs_bucket, tmp_path):
    env = {"STORAGE_EMULATOR_HOST": fake_gcs.url}
    stats = _kill_trials(
        ModelStore(f"gs://{gcs_bucket}/s"), tmp_path, env, step=1 if STRESS else 3, timed=10 if STRESS else 2
    )
    print("kill -9 trials (gcs):", stats)
    assert stats["killed"] >= 8


# ----------------------------------------------------------------------------------------- concurrency
def _churn(ms: ModelStore, tmp_path: Path, workers: int, ops: int, env: dict) -> dict:
    for t in "abcd":
        v = ms.publish(NAME, str(make_model_dir(tmp_path, t)), {})
    ms.set_alias(NAME, store.CHAMPION, "v0001")
    ms.set_alias(NAME, store.CHAMPION, "v0002")
    ms.set_alias(NAME, store.CANARY, v)
    out = tmp_path / "applied.jsonl"
    start_at = time.time() + (3.0 if ms.is_gcs else 1.5)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.store_child",
                json.dumps(
                    {
                        "mode": "churn",
                        "root": ms.root,
                        "worker": w,
                        "seed": w,
                        "ops": ops,
                        "out": str(out),
                        "start_at": start_at,
                    }
                ),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    applied = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    hist = ms.history(NAME)
    success = [r for r in hist if r["event"] == "alias" and r["outcome"] == "success"]
    reasons = [r["reason"] for r in success]
    for a in applied:
        assert reasons.count(a["reason"]) == 1, f"move {a} is not recorded exactly once"
    check_invariants(ms, {}, tmp_path)
    return {
        "workers": workers,
        "ops": workers * ops,
        "applied": len(applied),
        "conflicts": sum(r.get("outcome") == "conflict" for r in hist),
        "moves": len(success),
    }


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_promote_and_rollback_local(tmp_path, workers):
    stats = _churn(ModelStore(str(tmp_path / "store")), tmp_path, workers, 12, {})
    print("concurrent alias operations (local):", stats)
    assert stats["applied"] > 0


@stress
@pytest.mark.parametrize("workers", [8])
def test_concurrent_promote_and_rollback_local_stress(tmp_path, workers):
    stats = _churn(ModelStore(str(tmp_path / "store")), tmp_path, workers, 40, {})
    print("concurrent alias operations (local, stress):", stats)


def test_concurrent_promote_and_rollback_gcs(fake_gcs, gcs_bucket, tmp_path):
    env = {"STORAGE_EMULATOR_HOST": fake_gcs.url}
    stats = _churn(ModelStore(f"gs://{gcs_bucket}/s"), tmp_path, 8 if STRESS else 3, 20 if STRESS else 8, env)
    print("concurrent alias operations (gcs):", stats)
    assert stats["applied"] > 0


# ------------------------------------------------------------------------------- transient GCS errors
class FaultProxy(ThreadingHTTPServer):
    """HTTP proxy on 127.0.0.1 in front of fake-gcs-server injecting 429, 503, connection resets before
    the request reaches the server, and lost responses after it was applied."""

    daemon_threads = True

    def __init__(self, upstream: str, write_rate: float, read_rate: float, seed: int = 7):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.write_rate, self.read_rate = write_rate, read_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: dict[str, int] = {}
        self.requests = 0
        self.enabled = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def pick(self, method: str) -> str | None:
        with self.lock:
            self.requests += 1
            rate = self.write_rate if method != "GET" else self.read_rate
            if not self.enabled or self.rng.random() >= rate:
                return None
            fault = self.rng.choice(["429", "503", "reset", "lost"])
            self.injected[fault] = self.injected.get(fault, 0) + 1
            return fault


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _any(self) -> None:
        body = self._body()
        fault = self.server.pick(self.command)
        if fault in ("429", "503"):
            msg = json.dumps({"error": {"code": int(fault), "message": "injected"}}).encode()
            self.send_response(int(fault))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        if fault == "reset":
            return self._reset()
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")
        }
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if fault == "lost":
            return self._reset()  # applied upstream, the client never hears of it
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any


@pytest.fixture
def faulty_gcs(fake_gcs, monkeypatch):
    """A bucket reached through the fault proxy; yields ``(bucket, proxy)``."""
    proxy = FaultProxy(fake_gcs.url, write_rate=0.0, read_rate=0.0)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    monkeypatch.setattr(fs, "BACKOFF_INITIAL_S", 0.05)
    fs.reset_client()
    bucket = f"kfloop-faults-{random.randrange(1 << 30):x}"
    fs.gcs_client().create_bucket(bucket)
    yield bucket, proxy
    proxy.shutdown()
    fs.reset_client()


def test_transient_gcs_errors_are_retried_and_never_duplicate_a_version(faulty_gcs, tmp_path):
    bucket, proxy = faulty_gcs
    ms = ModelStore(f"gs://{bucket}/s")
    models = [make_model_dir(tmp_path, t) for t in "abcdef"]
    proxy.write_rate, proxy.read_rate = 0.2, 0.01
    published = []
    n = 24 if STRESS else 4
    for i in range(n):
        v = ms.publish(NAME, str(models[i % len(models)]), {"run_id": f"run-{i}"})
        published.append(v)
        ms.set_alias(NAME, store.CANARY if i % 2 else store.CHAMPION, v, reason=f"move {i}")
    # A retried task of an earlier run (same run id) publishes nothing new.
    assert ms.publish(NAME, str(models[0]), {"run_id": "run-0"}) == published[0]
    proxy.enabled = False
    print("faults injected:", proxy.injected, "of", proxy.requests, "requests")
    assert sum(proxy.injected.values()) >= 5 and proxy.injected.get("lost", 0) >= 1
    assert published == [f"v{i:04d}" for i in range(1, n + 1)]  # no duplicate, no gap
    assert ms.versions(NAME) == published
    for i, v in enumerate(published):
        meta = ms.verify(NAME, v)
        assert meta["run_id"] == f"run-{i}"
    check_invariants(ms, {}, tmp_path)
    moves = [r for r in ms.history(NAME) if r["event"] == "alias"]
    assert sorted(r["reason"] for r in moves) == sorted(f"move {i}" for i in range(n))
