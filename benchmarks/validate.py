"""TFDV statistics throughput (rows/s) on the taxi data replicated to ``--rows`` rows (default 1 M).

Runs in one process (pipeline env). The real taxi CSV is ingested (15,002 rows) and its rows are repeated
in memory up to ``--rows`` (nothing is written to the repository). Then:

* **in-memory** (the baseline): Beam's DirectRunner in its default in-process mode.
* **multi-process**: the same pipeline with ``--direct_running_mode=multi_processing
  --direct_num_workers=N`` (default 2 workers).
* **growth**: in-memory time at each size of ``--sizes`` (default 100k, 250k, 500k and ``--rows``).

Every run's statistics are checked against the rows fed (``num_examples``); the script prints the counts
and fails if one differs (data-validation#247). Times are for the Beam statistics pipeline over Arrow record
batches; the CSV → Arrow conversion (:func:`kfloop.tfdv.ops.to_record_batches`) is timed
separately, once per size.

Usage::

    .venv/bin/python benchmarks/validate.py [--rows 1000000] [--workers 2] [--sizes 100000,250000,500000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: The bundled example this benchmark runs on, and its committed schema.
TAXI_SPEC = ROOT / "examples" / "taxi" / "spec.yaml"
TAXI_SCHEMA = ROOT / "examples" / "taxi" / "schema.pbtxt"
#: The taxi example's time split (``make run``'s ``--cutoff``).
TAXI_CUTOFF = "2015-01-01"


def _replicate(frame, rows: int):
    import pandas as pd

    reps = -(-rows // len(frame))
    return pd.concat([frame] * reps, ignore_index=True).iloc[:rows]


def _timed(batches, rows: int, schema, args: list[str], spec) -> tuple[float, int]:
    from kfloop.tfdv import ops as V

    start = time.perf_counter()
    stats = V.statistics_from_batches(batches, spec=spec, schema=schema, beam_pipeline_args=args)
    elapsed = time.perf_counter() - start
    got = int(stats.datasets[0].num_examples)
    V.check_count(stats, rows)  # raises StatisticsCountError on a mismatch
    return elapsed, got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the main comparison (default 1M)")
    p.add_argument("--workers", type=int, default=2, help="multi-process DirectRunner workers (default 2)")
    p.add_argument("--sizes", default="100000,250000,500000", help="extra sizes for the growth table")
    p.add_argument("--batch-rows", type=int, default=10_000, help="rows per Arrow record batch")
    args = p.parse_args(argv)
    if args.rows < 1 or args.workers < 1:
        p.error("--rows and --workers must be >= 1")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()} | {args.rows})

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("apache_beam").setLevel(logging.ERROR)

    from examples.taxi import fetch as data
    from kfloop import spec as kspec
    from kfloop.ingest import ingest
    from kfloop.tfdv import ops as V

    spec = kspec.load(TAXI_SPEC)
    schema = V.load_schema(TAXI_SCHEMA)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"{k}.csv") for k in ("train", "eval", "live")]
        ingest(str(data.fetch()), spec, TAXI_CUTOFF, *paths)
        import pandas as pd

        taxi = pd.concat([V.read_frame(p) for p in paths], ignore_index=True)
    print(
        f"taxi rows: {len(taxi):,}; replicated up to {max(sizes):,}; batch {args.batch_rows:,} rows; "
        f"cpu cores: {os.cpu_count()}"
    )

    # Warm-up: the first Beam/TFDV pipeline of a process pays one-off imports and setup.
    warm = _replicate(taxi, 20_000)
    _timed(V.to_record_batches(warm, args.batch_rows, spec=spec), len(warm), schema, [], spec)

    growth = {}
    for n in sizes:
        frame = _replicate(taxi, n)
        t0 = time.perf_counter()
        batches = V.to_record_batches(frame, args.batch_rows, spec=spec)
        convert = time.perf_counter() - t0
        secs, got = _timed(batches, n, schema, [], spec)
        growth[n] = secs
        print(
            f"in-memory  {n:>9,} rows: {secs:7.2f} s  {n / secs:>10,.0f} rows/s  num_examples={got:,} "
            f"(csv->arrow {convert:.2f} s)"
        )
        if n == args.rows:
            mp_args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
            mp_secs, mp_got = _timed(batches, n, schema, mp_args, spec)
            print(
                f"multi-proc {n:>9,} rows: {mp_secs:7.2f} s  {n / mp_secs:>10,.0f} rows/s  "
                f"num_examples={mp_got:,} ({args.workers} workers)"
            )
            base = n / secs
    n = args.rows
    print()
    print(
        f"rows/s at {n:,} rows: in-memory {n / growth[n]:,.0f}, multi-process ({args.workers} workers) "
        f"{n / mp_secs:,.0f}; ratio multi-process / in-memory = {(n / mp_secs) / base:.2f}x"
    )
    smallest = sizes[0]
    print(
        "growth (in-memory): "
        + ", ".join(
            f"{s:,}: {growth[s]:.2f} s ({growth[s] / growth[smallest]:.1f}x time for {s / smallest:.1f}x rows)"
            for s in sizes
        )
    )
    print("every run: num_examples == rows fed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
