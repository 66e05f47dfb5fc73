"""Serving benchmark: kfloop's predictor (prediction log on) vs a naive ``kserve.Model`` and the peers a
user would pick instead (MLServer, BentoML), same model, same run.

Starts the servers on loopback (each a subprocess):

* **kfloop**: ``python -m serving`` (micro-batching, HTTP fast path, Parquet prediction log on: the
  production setting).
* **naive**: a plain ``kserve.Model`` whose ``predict`` turns the V1 instances into arrays and calls the
  SavedModel signature once per request (kserve 0.21 defaults otherwise; it logs nothing).
* **mlserver** and **bentoml**: the peers, each with its own adaptive batching, from its own env
  (:mod:`benchmarks.peers.launch`; ``make bench-peers-env``). A peer whose env is missing is skipped with
  one line saying so; ``--no-peers`` leaves them out.
* **kfloop, log off** (``--no-prediction-log``): what the log costs.

and drives them one at a time with the same load: ``wrk`` (C, one thread; ``apt-get install -y wrk``) when
it is installed, so the load generator does not take the server's CPU, else an asyncio closed loop.
Points (the issue's table): 1-row V1 requests at 8 connections (req/s, p99), 1,000-row V1 requests at 2
connections (rows/s), 1,000-row V2 requests at 2 connections (rows/s vs the in-process model-call rate of
the same SavedModel at batch 1,000), and the same V2 points with binary tensor data (the Open Inference
Protocol's extension, :mod:`serving.binary`: prebuilt bodies, binary outputs asked; 1-row at 8 connections
and 1,000-row at 2), and 1,000-row V2 over gRPC at 2 connections (``ModelInfer`` with ``raw_input_contents``,
raw outputs) driven by the official client ``tritonclient.grpc`` running in another process
(``benchmarks/grpc_load.py``); 1-row V2 JSON at 8 connections (MLServer's 1-row point: the same bodies).
A peer is timed on the points whose body carries the same as its own (MLServer: kfloop's V2 JSON bodies;
BentoML: kfloop's V1 instances as ``{"rows": [...]}``), and :mod:`benchmarks.serving_report` prints the
table, kfloop vs the best peer and vs naive, and the targets. Also the prediction log's bytes per row.
``--grpc-only``: only the 1,000-row gRPC point of kfloop with the log on and off, and the in-process limit.

Every server must answer the in-process predictions of a few rows before it is timed; non-2xx answers are
counted and left out of the rate.

The servers' start / stop and the load generators live in :mod:`benchmarks.load`.

Usage (serving env)::

    .venv-serving/bin/python benchmarks/serving.py [--seconds 5] [--model-dir SAVED_MODEL] [--no-wrk] [--grpc-only]
        [--no-peers]

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

from benchmarks import serving_report as report  # noqa: E402
from benchmarks.load import drive, drive_grpc, drive_wrk, free_port, request_bytes, start, stop  # noqa: E402
from benchmarks.peers import launch  # noqa: E402
from benchmarks.serving_report import ONE_ROW  # noqa: E402

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
    ap.add_argument("--no-peers", action="store_true", help="leave out the MLServer and BentoML peers")
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
        "v2one": (v2_path, [v2([r]) for r in rows[:200]], 8),
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
    # What each server is timed on: (load, path, bodies, the answer's format for the correctness check).
    serves = {
        "naive": {"1row": "v1", "v1big": "v1"},
        **{
            k: {load: "v1" if load in ("1row", "v1big") else "v2" for load in loads}
            for k in ("kfloop", "nolog")
        },
    }
    paths: dict[tuple[str, str], tuple[str, list]] = {}
    peers = {}
    for name in () if args.grpc_only or args.no_peers else launch.PEERS:
        if (reason := launch.missing_reason(name)) is not None:
            print(reason, flush=True)
            continue
        port = ports[name] = free_port()
        if name == "mlserver":
            peers[name] = launch.mlserver(model_dir, spec.name, port, free_port(), free_port(), work)
            serves[name] = {"v2one": "v2", "v2big": "v2"}  # the same bodies as kfloop's V2 JSON points
        else:
            peers[name] = launch.bentoml(model_dir, port, work)
            serves[name] = {"1row": "rows", "v1big": "rows"}  # kfloop's V1 instances as {"rows": [...]}
            paths[(name, "1row")] = ("/predict", [launch.rows_body([r]) for r in rows[:200]])
            paths[(name, "v1big")] = (
                "/predict",
                [launch.rows_body(rows[i : i + 1000]) for i in (0, 1000, 2000)],
            )
        paths.setdefault((name, "v2one"), (peers[name].path, loads["v2one"][1]))
        paths.setdefault((name, "v2big"), (peers[name].path, loads["v2big"][1]))

    def run(name: str, load: str) -> dict:
        path, bodies, conc = loads[load]
        path, bodies = paths.get((name, load), (path, bodies))
        if load == "gbig":
            r = drive_grpc(gports[name], spec.name, grpc_requests, conc, args.seconds)
            print(
                f"  {load:<6} c={conc} {name:<8} {r['req_s']:8.0f} req/s {r['req_s'] * 1000:10,.0f} rows/s"
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
        rows_per = 1 if load in ONE_ROW else 1000
        print(
            f"  {load:<6} c={conc} {name:<8} {r['req_s']:8.0f} req/s {r['req_s'] * rows_per:10,.0f} rows/s"
            f"  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  (n={r['n']}, non-2xx {r.get('shed', 0)})",
            flush=True,
        )
        return r

    # The model's own answer for a few rows: every server must give it before it is timed.
    import tensorflow as tf

    sig = tf.saved_model.load(model_dir).signatures[contract.RAW_SIGNATURE]
    key = contract.output_key(spec)
    expected = sig(**{k: tf.constant(v) for k, v in datasets.encode(frame.iloc[:8], spec).items()})[
        key
    ].numpy()

    def check(name: str) -> None:
        for load, fmt in serves[name].items():
            if load in binary_loads or load == "gbig":
                continue
            path = paths.get((name, load), loads[load])[0]
            body = {
                "v1": lambda c: json.dumps({"instances": c}).encode(),
                "v2": v2,
                "rows": launch.rows_body,
            }[fmt]
            launch.check(name, ports[name], path, fmt, body(rows[:8]), expected)

    results: dict = {}
    procs = {}
    log_bytes = log_rows = 0
    print(
        f"load generator: {'wrk (C, 1 thread; binary V2 bodies prebuilt, read from files by its Lua script)' if use_wrk else 'asyncio closed loop'}",
        flush=True,
    )
    all_loads = ("gbig",) if args.grpc_only else ("1row", "v2one", "v1big", "v2big", "bin1", "binbig", "gbig")
    first = ("kfloop",) if args.grpc_only else ("naive", "kfloop", *peers)
    try:
        for name in first:
            if name in peers:
                p = peers[name]
                procs[name] = start(p.cmd, p.port, work / f"{name}.log", p.ready_path, p.env)
            else:
                procs[name] = start(cmds[name], ports[name], work / f"{name}.log")
            check(name)
        for load in all_loads:
            for name in first:  # same load, back to back, same run
                if load in serves[name]:
                    results[(name, load)] = run(name, load)
        for name in first:  # SIGTERM flushes kfloop's log; the no-log variant gets the machine alone
            stop(procs.pop(name))
        import pyarrow.parquet as pq

        for f in (work / "log").rglob("*.parquet"):
            log_bytes += f.stat().st_size
            log_rows += pq.ParquetFile(f).metadata.num_rows
        procs["nolog"] = start(cmds["nolog"], ports["nolog"], work / "nolog.log")
        check("nolog")
        for load in all_loads:
            results[("nolog", load)] = run("nolog", load)
    finally:
        for p in procs.values():
            stop(p)

    # In-process model-call rate at batch 1,000 (public signature call, tensors pre-built).
    cols = datasets.encode(frame.iloc[:1000], spec)
    tensors = {k: tf.constant(v) for k, v in cols.items()}
    sig(**tensors)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        sig(**tensors)
        n += 1
    inproc = n * 1000 / (time.perf_counter() - t0)
    report.print_report(results, inproc, log_rows, log_bytes, grpc_only=args.grpc_only)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
