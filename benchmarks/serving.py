"""Serving benchmark: kfloop's predictor (prediction log on) vs a naive ``kserve.Model``, same model, same run.

Starts the servers on loopback (each a subprocess):

* **kfloop**: ``python -m serving`` (micro-batching, HTTP fast path, Parquet prediction log on: the
  production setting).
* **naive**: a plain ``kserve.Model`` whose ``predict`` turns the V1 instances into arrays and calls the
  SavedModel signature once per request (kserve 0.21 defaults otherwise; it logs nothing).
* **kfloop, log off** (``--no-prediction-log``): what the log costs.

and drives them one at a time with the same load: ``wrk`` (C, one thread; ``apt-get install -y wrk``) when
it is installed, so the load generator does not take the server's CPU, else an asyncio closed loop.
Points (the issue's table): 1-row V1 requests at 8 connections (req/s, p99), 1,000-row V1 requests at 2
connections (rows/s), 1,000-row V2 requests at 2 connections (rows/s vs the in-process model-call rate of
the same SavedModel at batch 1,000), and the same V2 points with binary tensor data (the Open Inference
Protocol's extension, :mod:`serving.binary`: prebuilt bodies, binary outputs asked; 1-row at 8 connections
and 1,000-row at 2), and 1,000-row V2 over gRPC at 2 connections (``ModelInfer`` with ``raw_input_contents``,
raw outputs) driven by the official client ``tritonclient.grpc`` running in another process
(``benchmarks/grpc_load.py``). Also the prediction log's bytes per row. ``--grpc-only``: only the 1,000-row
gRPC point of kfloop with the log on and off, and the in-process limit.

The servers' start / stop and the load generators live in :mod:`benchmarks.load`.

Usage (serving env)::

    .venv-serving/bin/python benchmarks/serving.py [--seconds 5] [--model-dir SAVED_MODEL] [--no-wrk] [--grpc-only]

Without ``--model-dir`` the demo model of :mod:`serving.demo_model` (same signatures as the trainer's) is used.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# This file is called serving.py: keep its folder off sys.path so `import serving` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
#: The bundled example whose rows drive the load (its spec names the features and the model).
TAXI_SPEC = ROOT / "examples" / "taxi" / "spec.yaml"

from benchmarks.load import drive, drive_grpc, drive_wrk, free_port, request_bytes, start, stop  # noqa: E402

NAIVE_SERVER = r"""
import sys, numpy as np, kserve, tensorflow as tf
from kfloop import contract

class Naive(kserve.Model):
    def __init__(self, path):
        self.spec = contract.read_spec(path)
        super().__init__(self.spec.name)
        self.sig = tf.saved_model.load(path).signatures[contract.RAW_SIGNATURE]
        self.ready = True

    def predict(self, payload, headers=None):
        rows = payload["instances"]
        cols = {}
        for f in self.spec.model_features:
            vals = [f.missing if r[f.name] is None else r[f.name] for r in rows]
            cols[f.name] = np.array(vals, dtype=object if f.dtype == "string" else f.dtype)
        return {"predictions": self.sig(**cols)[contract.OUTPUT_KEY].numpy().tolist()}

path, port = sys.argv[1], int(sys.argv[2])
kserve.ModelServer(http_port=port, enable_grpc=False).start([Naive(path)])
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--seconds", type=float, default=5.0, help="measured seconds per point (after 1 s warm-up)"
    )
    ap.add_argument("--model-dir", help="SavedModel with the predict_raw signature (default: demo model)")
    ap.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator even with wrk")
    ap.add_argument("--grpc-only", action="store_true", help="only the 1,000-row V2 gRPC point")
    args = ap.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk

    from examples.taxi import fetch as data
    from kfloop import clean, contract, datasets
    from kfloop import spec as kspec

    work = Path(tempfile.mkdtemp(prefix="kfloop-bench-serving-"))
    model_dir = args.model_dir
    if model_dir is None:
        from serving import demo_model

        model_dir = demo_model.build(work / "model", kspec.load(TAXI_SPEC))
    spec = contract.read_spec(model_dir)  # the served model's features and name
    frame = clean.clean(clean.read_raw(str(data.fetch())), spec)
    frame = frame.sample(3000, random_state=1).reset_index(drop=True)
    import pandas as pd

    rows = [
        {k: None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        for rec in frame[list(spec.input_names)].to_dict("records")
    ]

    def v2(chunk: list[dict]) -> bytes:
        inputs = [
            {
                "name": f.name,
                "datatype": f.v2_datatype,
                "shape": [len(chunk)],
                "data": [r[f.name] for r in chunk],
            }
            for f in spec.model_features
        ]
        return json.dumps({"inputs": inputs}).encode()

    def v2_binary(chunk: list[dict]) -> tuple[bytes, int]:
        """A binary V2 body of the rows (null -> the spec's missing value) asking for binary outputs."""
        inputs, blobs = [], []
        for f in spec.model_features:
            values = [f.missing if r[f.name] is None else r[f.name] for r in chunk]
            if f.v2_datatype == "BYTES":
                encoded = [str(v).encode() for v in values]
                blob = b"".join(struct.pack("<I", len(b)) + b for b in encoded)
            else:
                blob = np.asarray(values, dtype="<f4" if f.v2_datatype == "FP32" else "<i8").tobytes()
            inputs.append({"name": f.name, "datatype": f.v2_datatype, "shape": [len(chunk)],
                           "parameters": {"binary_data_size": len(blob)}})  # fmt: skip
            blobs.append(blob)
        head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
        return head + b"".join(blobs), len(head)

    v1_path, v2_path = f"/v1/models/{spec.name}:predict", f"/v2/models/{spec.name}/infer"
    loads = {
        "1row": (v1_path, [json.dumps({"instances": [r]}).encode() for r in rows[:200]], 8),
        "v1big": (
            v1_path,
            [json.dumps({"instances": rows[i : i + 1000]}).encode() for i in (0, 1000, 2000)],
            2,
        ),
        "v2big": (v2_path, [v2(rows[i : i + 1000]) for i in (0, 1000, 2000)], 2),
        "bin1": (v2_path, [v2_binary([r]) for r in rows[:200]], 8),
        "binbig": (v2_path, [v2_binary(rows[i : i + 1000]) for i in (0, 1000, 2000)], 2),
    }
    binary_loads = {"bin1", "binbig"}
    grpc_requests = work / "grpc-requests.pkl"  # the gRPC client's 1,000-row requests (encoded columns)
    with grpc_requests.open("wb") as f:
        chunks = [datasets.encode(frame.iloc[i : i + 1000], spec) for i in (0, 1000, 2000)]
        pickle.dump([[(x.name, x.v2_datatype, c[x.name]) for x in spec.model_features] for c in chunks], f)
    loads["gbig"] = (None, [], 2)
    ports = {"kfloop": free_port(), "naive": free_port(), "nolog": free_port()}
    gports = {"kfloop": free_port(), "nolog": free_port()}
    cmds = {
        "kfloop": [sys.executable, "-m", "serving", "--model-dir", model_dir, "--http_port", str(ports["kfloop"]),
                   "--grpc_port", str(gports["kfloop"]), "--log-uri", str(work / "log")],
        "naive": [sys.executable, "-c", NAIVE_SERVER, model_dir, str(ports["naive"])],
        "nolog": [sys.executable, "-m", "serving", "--model-dir", model_dir, "--http_port", str(ports["nolog"]),
                  "--grpc_port", str(gports["nolog"]), "--no-prediction-log"],
    }  # fmt: skip

    def run(name: str, load: str) -> dict:
        path, bodies, conc = loads[load]
        if load == "gbig":
            r = drive_grpc(gports[name], spec.name, grpc_requests, conc, args.seconds)
            print(
                f"  {load:<6} c={conc} {name:<7} {r['req_s']:8.0f} req/s {r['req_s'] * 1000:10,.0f} rows/s"
                f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  (n={r['n']}, shed {r['shed']}, "
                "tritonclient.grpc in another process)",
                flush=True,
            )
            return r
        lengths = None
        if load in binary_loads:
            bodies, lengths = [b for b, _ in bodies], [n for _, n in bodies]
        if use_wrk:
            r = drive_wrk(ports[name], path, bodies, conc, args.seconds, work, lengths)
        else:
            reqs = [
                request_bytes(ports[name], path, b, n)
                for b, n in zip(bodies, lengths or [None] * len(bodies), strict=True)
            ]
            r = drive(ports[name], reqs, conc, args.seconds)
        rows_per = 1 if load in ("1row", "bin1") else 1000
        print(
            f"  {load:<6} c={conc} {name:<7} {r['req_s']:8.0f} req/s {r['req_s'] * rows_per:10,.0f} rows/s"
            f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  (n={r['n']}, shed {r.get('shed', 0)})",
            flush=True,
        )
        return r

    results: dict = {}
    procs = {}
    log_bytes = log_rows = 0
    print(
        f"load generator: {'wrk (C, 1 thread; binary V2 bodies prebuilt, read from files by its Lua script)' if use_wrk else 'asyncio closed loop'}",
        flush=True,
    )
    all_loads = ("gbig",) if args.grpc_only else ("1row", "v1big", "v2big", "bin1", "binbig", "gbig")
    try:
        for name in ("kfloop",) if args.grpc_only else ("naive", "kfloop"):
            procs[name] = start(cmds[name], ports[name], work / f"{name}.log")
        for load in all_loads:
            for name in ("naive", "kfloop"):  # same load, back to back, same run
                if name == "naive" and load in ("v2big", "gbig", *binary_loads):
                    continue  # the naive model speaks V1 only
                results[(name, load)] = run(name, load)
        stop(procs.pop("kfloop"))  # SIGTERM flushes the log; the no-log variant gets the machine too
        import pyarrow.parquet as pq

        for f in (work / "log").rglob("*.parquet"):
            log_bytes += f.stat().st_size
            log_rows += pq.ParquetFile(f).metadata.num_rows
        procs["nolog"] = start(cmds["nolog"], ports["nolog"], work / "nolog.log")
        for load in all_loads:
            results[("nolog", load)] = run("nolog", load)
    finally:
        for p in procs.values():
            stop(p)

    # In-process model-call rate at batch 1,000 (public signature call, tensors pre-built).
    import tensorflow as tf

    sig = tf.saved_model.load(model_dir).signatures[contract.RAW_SIGNATURE]
    cols = datasets.encode(frame.iloc[:1000], spec)
    tensors = {k: tf.constant(v) for k, v in cols.items()}
    sig(**tensors)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        sig(**tensors)
        n += 1
    inproc = n * 1000 / (time.perf_counter() - t0)

    def cell(name, load):
        r = results.get((name, load))
        if r is None:
            return "-"
        if load in ("1row", "bin1"):
            return f"{r['req_s']:,.0f} req/s, p99 {r['p99_ms']:.1f} ms"
        return f"{r['req_s'] * 1000:,.0f} rows/s"

    def grpc_rows() -> None:
        if ("kfloop", "binbig") in results:
            kB, kBn = results[("kfloop", "binbig")], results[("nolog", "binbig")]
            print(
                f"| 1,000-row V2 binary, 2 connections | {cell('kfloop', 'binbig')} ({kB['req_s'] * 1000 / inproc:.0%}"
                f" of in-process) | - | {cell('nolog', 'binbig')} ({kBn['req_s'] * 1000 / inproc:.0%}) |"
            )
        kG, kGn = results[("kfloop", "gbig")], results[("nolog", "gbig")]
        print(
            f"| 1,000-row V2 gRPC (tritonclient.grpc, another process), 2 connections | {cell('kfloop', 'gbig')} "
            f"({kG['req_s'] * 1000 / inproc:.0%} of in-process, p99 {kG['p99_ms']:.1f} ms, shed {kG['shed']}) | - | "
            f"{cell('nolog', 'gbig')} ({kGn['req_s'] * 1000 / inproc:.0%}, p99 {kGn['p99_ms']:.1f} ms) |"
        )

    if args.grpc_only:
        print("\n## serving benchmark, the V2 gRPC point (loopback, same SavedModel, same run)\n")
        print("| load | kfloop (log on) | naive kserve | kfloop, log off |\n|---|---|---|---|")
        grpc_rows()
        print(f"\nin-process limit of the same SavedModel at batch 1,000: {inproc:,.0f} rows/s")
        t5 = results[("kfloop", "gbig")]["req_s"] * 1000 / inproc
        print(
            f"\ntargets:\n  1,000-row V2 gRPC: >= 40% of in-process: {t5:.0%} {'met' if t5 >= 0.4 else 'MISSED'}"
        )
        shutil.rmtree(work, ignore_errors=True)
        return 0
    k1, n1 = results[("kfloop", "1row")], results[("naive", "1row")]
    kb, nb = results[("kfloop", "v1big")], results[("naive", "v1big")]
    k2 = results[("kfloop", "v2big")]
    print("\n## serving benchmark (loopback, same SavedModel, same run)\n")
    print("| load | kfloop (log on) | naive kserve | kfloop, log off |")
    print("|---|---|---|---|")
    print(
        f"| 1-row V1, 8 connections | {cell('kfloop', '1row')} | {cell('naive', '1row')} | {cell('nolog', '1row')} |"
    )
    print(
        f"| 1,000-row V1, 2 connections | {cell('kfloop', 'v1big')} ({kb['req_s'] / nb['req_s']:.2f}x naive) | "
        f"{cell('naive', 'v1big')} | {cell('nolog', 'v1big')} |"
    )
    k2n = results[("nolog", "v2big")]
    print(
        f"| 1,000-row V2, 2 connections | {cell('kfloop', 'v2big')} ({k2['req_s'] * 1000 / inproc:.0%} of "
        f"in-process) | - | {cell('nolog', 'v2big')} ({k2n['req_s'] * 1000 / inproc:.0%}) |"
    )
    print(f"| 1-row V2 binary, 8 connections | {cell('kfloop', 'bin1')} | - | {cell('nolog', 'bin1')} |")
    grpc_rows()
    kB = results[("kfloop", "binbig")]
    print(f"\nin-process limit of the same SavedModel at batch 1,000: {inproc:,.0f} rows/s")
    if log_rows:
        print(
            f"prediction log: {log_rows:,} rows in {log_bytes:,} bytes = {log_bytes / log_rows:.1f} bytes/row"
        )
    t1 = k1["req_s"] / n1["req_s"]
    print("\ntargets:")
    print(
        f"  1-row V1 c=8: >= 3x naive throughput: {t1:.2f}x {'met' if t1 >= 3 else 'MISSED'}; p99 <= naive p99: "
        f"{k1['p99_ms']:.1f} vs {n1['p99_ms']:.1f} ms {'met' if k1['p99_ms'] <= n1['p99_ms'] else 'MISSED'}"
    )
    t2 = kb["req_s"] / nb["req_s"]
    print(f"  1,000-row V1: >= 1.5x naive rows/s: {t2:.2f}x {'met' if t2 >= 1.5 else 'MISSED'}")
    t3 = k2["req_s"] * 1000 / inproc
    print(f"  1,000-row V2: >= 25% of in-process: {t3:.0%} {'met' if t3 >= 0.25 else 'MISSED'}")
    t4 = kB["req_s"] * 1000 / inproc
    print(f"  1,000-row V2 binary: >= 50% of in-process: {t4:.0%} {'met' if t4 >= 0.5 else 'MISSED'}")
    t5 = results[("kfloop", "gbig")]["req_s"] * 1000 / inproc
    print(f"  1,000-row V2 gRPC: >= 40% of in-process: {t5:.0%} {'met' if t5 >= 0.4 else 'MISSED'}")
    if log_rows:
        print(
            f"  log size <= 80 bytes/row: {log_bytes / log_rows:.1f} {'met' if log_bytes / log_rows <= 80 else 'MISSED'}"
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
