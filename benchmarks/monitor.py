"""Monitoring benchmark: N logged predictions through the real logger, then the monitoring step on the window.

For each N (default 100 k, 1 M, 5 M), in a fresh temporary store:

1. **write** (child process): real taxi rows (the 15,002 trips of the fetched CSV, cycled, with the
   numeric features jittered so rows are not exact copies) are submitted as requests of 1 to 64 rows to
   the server's own :class:`serving.log_queue.PredictionLog` (bounded queue, background Parquet writer, the
   serving defaults of :class:`kfloop.config.ServingConfig`), spread over two days of prediction time and
   three model versions; labels for 60% of the rows are written to the feedback log.
2. **monitor** (a second child process, so its peak RSS is its own): :func:`components.monitor.monitor.monitor`
   on the whole window against a stored reference (built once beforehand from the training split, as push
   does), the in-process Beam DirectRunner.

Prints, per N: rows/s of the monitoring step, its peak RSS, log bytes per row; then the growth from the
smallest to the largest N (time should grow linearly, memory should not grow). Targets (issue): 1 M in
<= 30 s with <= 1.5 GB peak RSS; 5 M with peak RSS within 1.3x of the 1 M figure.

Usage (pipeline env, ~5 min for the default sizes here)::

    .venv/bin/python benchmarks/monitor.py [--sizes 100000,1000000,5000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

#: The bundled example this benchmark runs on (its spec names the features, label and model).
TAXI_SPEC = ROOT / "examples" / "taxi" / "spec.yaml"
#: The taxi example's time split (``make run``'s ``--cutoff``).
TAXI_CUTOFF = "2015-01-01"
MODEL = "taxi-tips"
START = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=2)


def _write(store: str, n: int) -> dict:
    """Child: N predictions through the real logger, labels for 60% of them."""
    import numpy as np
    import pandas as pd

    from examples.taxi import fetch as data
    from kfloop import config, datasets, predlog
    from kfloop import spec as kspec
    from kfloop.clean import clean
    from serving.log_queue import PredictionLog

    spec = kspec.load(TAXI_SPEC)
    raw = pd.read_csv(str(data.fetch()), dtype=str, keep_default_na=False)
    frame = clean(raw, spec).reset_index(drop=True)
    cols = datasets.encode(frame, spec)
    m = len(frame)
    rng = np.random.default_rng(0)
    cfg = config.ServingConfig()
    plog = PredictionLog(
        store,
        MODEL,
        cfg.log_queue_size,
        cfg.log_flush_rows,
        cfg.log_flush_seconds,
        server_id="bench",
        schema=spec,
    )
    versions = ["v0001", "v0002", "v0003"]
    numeric = [f.name for f in spec.features_of(kspec.Kind.NUMERIC)]
    t0 = time.perf_counter()
    done = req = 0
    fb_ids, fb_rows, fb_labels = [], [], []
    labels = frame[spec.label.name].fillna(0).astype(int).to_numpy()
    waits = 0
    while done < n:
        k = int(min(n - done, rng.choice([1, 1, 1, 4, 16, 64])))
        lo = (done * 7919) % (m - 64)
        batch = {name: v[lo : lo + k].copy() for name, v in cols.items()}
        for name in numeric:
            batch[name] = (batch[name] * rng.uniform(0.97, 1.03)).astype(np.float32)
        probs = rng.random(k).astype(np.float32)
        epoch = (START + SPAN * (done / n)).timestamp()
        rid = f"bench-{req:09d}"
        version = versions[min(2, 3 * done // n)]
        while not plog.submit(rid, epoch, version, batch, probs):
            waits += 1
            plog.dropped -= k  # backpressure for the benchmark: wait for the writer, do not lose rows
            time.sleep(0.002)
        if rng.random() < 0.6:
            fb_ids.extend([rid] * k)
            fb_rows.extend(range(k))
            fb_labels.extend(labels[lo : lo + k].tolist())
        if len(fb_ids) >= 200_000:
            predlog.write_table(
                store, MODEL, "feedback", predlog.feedback_table(fb_ids, fb_rows, fb_labels, epoch + 600)
            )
            fb_ids, fb_rows, fb_labels = [], [], []
        done += k
        req += 1
    plog.close(timeout=600)
    if fb_ids:
        predlog.write_table(
            store, MODEL, "feedback", predlog.feedback_table(fb_ids, fb_rows, fb_labels, epoch + 600)
        )
    seconds = time.perf_counter() - t0
    files = list(Path(store, "predictions").rglob("*.parquet"))
    size = sum(f.stat().st_size for f in files)
    return {"rows": plog.written, "dropped": plog.dropped, "files": len(files), "bytes": size,
            "write_s": seconds, "requests": req}  # fmt: skip


def _monitor(store: str, ref: str, beam_args: list[str]) -> dict:
    """Child: one monitoring run on the whole window; wall time and this process's peak RSS."""
    from components.monitor import monitor as M
    from kfloop import reference as R
    from kfloop import spec as kspec

    reference = R.load_reference(ref)
    t0 = time.perf_counter()
    s = M.monitor(
        store,
        MODEL,
        START.isoformat(),
        (START + SPAN + dt.timedelta(minutes=1)).isoformat(),
        spec=kspec.load(TAXI_SPEC),
        reference=reference,
        record=False,
        beam_pipeline_args=beam_args,
    )
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "peak_rss": rss, "rows": s["rows"], "labelled": s["labelled_rows"],
            "live_auc": s["live_auc"], "bad": s["bad_records"], "versions": s["model_versions"],
            "status": s["status"]}  # fmt: skip


def _child(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000,5000000")
    ap.add_argument("--beam-arg", action="append", default=[], help="Beam option for the statistics pipeline")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        out = _write(rest[0], int(rest[1])) if kind == "write" else _monitor(rest[0], rest[1], rest[2:])
        print(json.dumps(out))
        return 0

    from examples.taxi import fetch as data
    from kfloop import spec as kspec
    from kfloop.ingest import ingest
    from kfloop.reference import build_reference

    spec = kspec.load(TAXI_SPEC)
    work = Path(tempfile.mkdtemp(prefix="kfloop-bench-monitor-"))
    paths = {k: str(work / f"{k}.csv") for k in ("train", "eval", "live")}
    ingest(str(data.fetch()), spec, TAXI_CUTOFF, paths["train"], paths["eval"], paths["live"])
    ref = str(work / "reference")
    build_reference(paths["train"], paths["eval"], ref, spec=spec)
    results = []
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            store = str(work / f"store-{n}")
            w = _child(["--child", "write", store, str(n)])
            m = _child(["--child", "monitor", store, ref, *args.beam_arg])
            assert m["rows"] == w["rows"] == n, (m, w)
            results.append((n, w, m))
            print(
                f"N={n:>9,}: monitor {m['seconds']:7.1f} s = {n / m['seconds']:9,.0f} rows/s, peak RSS "
                f"{m['peak_rss'] / 2**20:7,.0f} MiB | log {w['bytes'] / n:5.1f} bytes/row in {w['files']} files, "
                f"written at {n / w['write_s']:,.0f} rows/s | labelled {m['labelled']:,}, live AUC "
                f"{m['live_auc']:.3f}, versions {m['versions']}",
                flush=True,
            )
            shutil.rmtree(store, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("\n## monitoring benchmark (whole window, in-process DirectRunner)\n")
    print("| logged predictions | seconds | rows/s | peak RSS MiB | log bytes/row |")
    print("|---:|---:|---:|---:|---:|")
    for n, w, m in results:
        print(
            f"| {n:,} | {m['seconds']:.1f} | {n / m['seconds']:,.0f} | {m['peak_rss'] / 2**20:,.0f} | "
            f"{w['bytes'] / n:.1f} |"
        )
    (n0, _, m0), (n1, _, m1) = results[0], results[-1]
    print(
        f"\ngrowth {n0:,} -> {n1:,} rows ({n1 / n0:.0f}x): time {m1['seconds'] / m0['seconds']:.2f}x, "
        f"peak RSS {m1['peak_rss'] / m0['peak_rss']:.2f}x"
    )
    by_n = {n: m for n, _, m in results}
    if 1_000_000 in by_n:
        m = by_n[1_000_000]
        print(
            f"target 1 M: <= 30 s ({m['seconds']:.1f} s: {'met' if m['seconds'] <= 30 else 'MISSED'}), "
            f"<= 1.5 GB peak RSS ({m['peak_rss'] / 1e9:.2f} GB: {'met' if m['peak_rss'] <= 1.5e9 else 'MISSED'})"
        )
        if 5_000_000 in by_n:
            r = by_n[5_000_000]["peak_rss"] / m["peak_rss"]
            t = by_n[5_000_000]["seconds"] / m["seconds"]
            print(
                f"target 5 M: peak RSS within 1.3x of 1 M ({r:.2f}x: {'met' if r <= 1.3 else 'MISSED'}); time {t:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
