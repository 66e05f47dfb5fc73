"""Serving benchmark: kfloop's predictor vs a naive ``kserve.Model``, same model, same load, same run.

Starts two servers on loopback (each a subprocess):

* **kfloop**: ``python -m serving`` (micro-batching, HTTP fast path, prediction log on).
* **naive**: a plain ``kserve.Model`` whose ``predict`` turns the V1 instances into arrays and calls the
  SavedModel signature once per request (kserve 0.21 defaults otherwise).

and drives both with the same closed-loop load generator (asyncio, raw HTTP/1.1 keep-alive connections,
pre-built 1-row V1 requests on real taxi rows) at concurrency 1, 8 and 32 for ``--seconds`` each. Prints
req/s, p50, p99 and the kfloop/naive ratios; then rows/s for 1,000-row requests against the in-process
model-call rate at batch 1,000.

Usage (serving env)::

    .venv-serving/bin/python benchmarks/serving.py [--seconds 5] [--model-dir SAVED_MODEL]

Without ``--model-dir`` the demo model of :mod:`serving.demo_model` (same signatures as the trainer's) is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is called serving.py: keep its folder off sys.path so `import serving` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

NAIVE_SERVER = r"""
import sys, numpy as np, kserve, tensorflow as tf
from kfloop import features as F

class Naive(kserve.Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.sig = tf.saved_model.load(path).signatures["predict_raw"]
        self.ready = True

    def predict(self, payload, headers=None):
        rows = payload["instances"]
        cols = {}
        for f in F.MODEL_FEATURES:
            vals = [f.missing if r[f.name] is None else r[f.name] for r in rows]
            cols[f.name] = np.array(vals, dtype=object if f.dtype == "string" else f.dtype)
        return {"predictions": self.sig(**cols)["probability"].numpy().tolist()}

path, port = sys.argv[1], int(sys.argv[2])
kserve.ModelServer(http_port=port, enable_grpc=False).start([Naive("taxi-tips", path)])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, log: Path) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server not ready: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request_bytes(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _conn(
    port: int, requests: list[bytes], until: float, warm_until: float, lat: list, errors: list, k: int
):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = k
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= until:
                return
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            t1 = time.perf_counter()
            if status != 200:
                errors.append((status, body[:200]))
            elif t0 >= warm_until:
                lat.append(t1 - t0)
    finally:
        writer.close()


def drive(port: int, requests: list[bytes], concurrency: int, seconds: float, warmup: float = 1.0) -> dict:
    """Closed-loop load: ``concurrency`` connections, each sends its next request when the reply arrives."""
    lat: list[float] = []
    errors: list = []

    async def main():
        now = time.perf_counter()
        warm_until, until = now + warmup, now + warmup + seconds
        await asyncio.gather(
            *(_conn(port, requests, until, warm_until, lat, errors, k) for k in range(concurrency))
        )

    asyncio.run(main())
    if errors:
        raise SystemExit(f"benchmark requests failed: {errors[:3]}")
    lat.sort()
    n = len(lat)
    return {
        "req_s": n / seconds,
        "p50_ms": 1000 * lat[n // 2],
        "p99_ms": 1000 * lat[min(n - 1, int(n * 0.99))],
        "n": n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--seconds", type=float, default=5.0, help="measured seconds per point (after 1 s warm-up)"
    )
    ap.add_argument("--model-dir", help="SavedModel with the predict_raw signature (default: demo model)")
    ap.add_argument("--concurrency", default="1,8,32")
    args = ap.parse_args()

    from kfloop import data, datasets
    from kfloop import features as F

    work = Path(tempfile.mkdtemp(prefix="kfloop-bench-serving-"))
    model_dir = args.model_dir
    if model_dir is None:
        from serving import demo_model

        model_dir = demo_model.build(work / "model")
    frame = datasets.read_dataset(str(data.fetch())).sample(2000, random_state=1).reset_index(drop=True)
    import pandas as pd

    rows = [
        {k: None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        for rec in frame[[f.name for f in F.MODEL_FEATURES]].to_dict("records")
    ]
    path = "/v1/models/taxi-tips:predict"

    ports = {"kfloop": free_port(), "naive": free_port(), "nolog": free_port()}
    cmds = {
        "kfloop": [sys.executable, "-m", "serving", "--model-dir", model_dir, "--http_port", str(ports["kfloop"]),
                   "--log-uri", str(work / "log")],
        "naive": [sys.executable, "-c", NAIVE_SERVER, model_dir, str(ports["naive"])],
        "nolog": [sys.executable, "-m", "serving", "--model-dir", model_dir, "--http_port", str(ports["nolog"]),
                  "--no-prediction-log"],
    }  # fmt: skip
    one_row = {
        name: [request_bytes(port, path, json.dumps({"instances": [r]}).encode()) for r in rows[:500]]
        for name, port in ports.items()
    }
    big = {
        name: [
            request_bytes(port, path, json.dumps({"instances": rows[i : i + 1000]}).encode())
            for i in (0, 500, 1000)
        ]
        for name, port in ports.items()
    }
    results: dict = {}
    procs = {}
    try:
        for name in ("naive", "kfloop"):
            procs[name] = start(cmds[name], ports[name], work / f"{name}.log")
        for c in (int(x) for x in args.concurrency.split(",")):
            for name in ("naive", "kfloop"):  # same load, back to back, same run
                results[(name, c)] = drive(ports[name], one_row[name], c, args.seconds)
                r = results[(name, c)]
                print(
                    f"  1-row  c={c:<3} {name:<7} {r['req_s']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
                    f"  p99 {r['p99_ms']:6.2f} ms  (n={r['n']})",
                    flush=True,
                )
        for name in ("naive", "kfloop"):
            results[(name, "big")] = drive(ports[name], big[name], 2, args.seconds)
        stop(procs.pop("kfloop"))  # the no-log variant gets the machine to itself too
        procs["nolog"] = start(cmds["nolog"], ports["nolog"], work / "nolog.log")
        results[("nolog", "big")] = drive(ports["nolog"], big["nolog"], 2, args.seconds)
    finally:
        for p in procs.values():
            stop(p)

    # In-process model-call rate at batch 1,000 (public signature call, tensors pre-built).
    import tensorflow as tf

    sig = tf.saved_model.load(model_dir).signatures["predict_raw"]
    cols = datasets.encode(frame.iloc[:1000])
    tensors = {k: tf.constant(v) for k, v in cols.items()}
    sig(**tensors)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        sig(**tensors)
        n += 1
    inproc_rows_s = n * 1000 / (time.perf_counter() - t0)

    print("\n## serving benchmark (1-row V1 requests, closed loop, loopback)\n")
    print("| concurrency | naive req/s | kfloop req/s | ratio | naive p50 / p99 ms | kfloop p50 / p99 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for c in (int(x) for x in args.concurrency.split(",")):
        a, b = results[("naive", c)], results[("kfloop", c)]
        print(
            f"| {c} | {a['req_s']:.0f} | {b['req_s']:.0f} | {b['req_s'] / a['req_s']:.2f}x | "
            f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} |"
        )
    a, b = results[("naive", "big")], results[("kfloop", "big")]
    print("\n| 1,000-row requests (c=2) | rows/s | vs in-process |")
    print("|---|---:|---:|")
    print(f"| naive | {a['req_s'] * 1000:,.0f} | {a['req_s'] * 1000 / inproc_rows_s:.2f} |")
    print(
        f"| kfloop (prediction log on: 1,000 JSONL records per request) | {b['req_s'] * 1000:,.0f} | {b['req_s'] * 1000 / inproc_rows_s:.2f} |"
    )
    c = results[("nolog", "big")]
    print(
        f"| kfloop --no-prediction-log | {c['req_s'] * 1000:,.0f} | {c['req_s'] * 1000 / inproc_rows_s:.2f} |"
    )
    print(f"| in-process model call, batch 1,000 | {inproc_rows_s:,.0f} | 1.00 |")
    c8 = results[("kfloop", 8)]["req_s"] / results[("naive", 8)]["req_s"]
    p99_ok = results[("kfloop", 8)]["p99_ms"] <= results[("naive", 8)]["p99_ms"]
    print(
        f"\ntarget at c=8: >= 3x naive throughput ({c8:.2f}x) at no worse p99 ({'yes' if p99_ok else 'NO'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
