"""Speed of the paired comparison (:mod:`kfloop.paired`): DeLong vs the paired bootstrap, same rows.

``.venv/bin/python benchmarks/paired.py [--rows 100000] [--samples 200]`` prints seconds per comparison and
the bootstrap / DeLong ratio in one process, plus how far the two intervals' ends are apart (they estimate
the same thing; a large gap means one of them is wrong). Synthetic scores of two similar models.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from kfloop import config, paired


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    base = y * 1.5 + rng.normal(size=n)
    return y, base + rng.normal(scale=0.5, size=n), base + rng.normal(scale=0.5, size=n)


def _time(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t0) / repeat, out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--samples", type=int, default=200, help="bootstrap resamples")
    args = p.parse_args(argv)
    y, a, b = _rows(args.rows)
    cfg = config.ComparisonConfig()
    boot = dataclasses.replace(cfg, method="bootstrap", bootstrap_samples=args.samples)
    t_d, d = _time(lambda: paired.compare(y, a, b, cfg=cfg), 5)
    t_b, s = _time(lambda: paired.compare(y, a, b, cfg=boot), 1)
    print(f"rows {args.rows:,}, bootstrap resamples {args.samples}")
    print(f"delong     {t_d * 1000:9.1f} ms   {d.interval_text()}")
    print(f"bootstrap  {t_b * 1000:9.1f} ms   {s.interval_text()}")
    print(f"ratio bootstrap / delong: {t_b / t_d:.0f}x")
    print(f"interval ends apart: low {abs(d.low - s.low):.5f}, high {abs(d.high - s.high):.5f}")


if __name__ == "__main__":
    main()
