"""Closed-loop V2 gRPC load with the official client (``tritonclient.grpc``: raw inputs, raw outputs), run
in its own process by ``benchmarks/serving.py`` so the client's CPU is not the server's interpreter.

Usage::

    python benchmarks/grpc_load.py PORT MODEL REQUESTS.pkl CONNECTIONS SECONDS [WARMUP_SECONDS]

``REQUESTS.pkl``: a list of requests, each a list of ``(input name, V2 datatype, numpy column)``. One client
(one HTTP/2 connection) per connection, each in its own thread, sending requests back to back. Prints one JSON
line: ``{"req_s", "p50_ms", "p99_ms", "n", "shed", "errors"}`` (answered requests only in the rate and
latencies; ``shed``: refused by the server's admission bound, e.g. while the prediction log is behind).
"""

from __future__ import annotations

import json
import pickle
import sys
import threading
import time

import numpy as np


def main(argv: list[str]) -> int:
    port, model, path, conc, seconds = argv[:5]
    warmup = float(argv[5]) if len(argv) > 5 else 1.0
    import tritonclient.grpc as tc

    with open(path, "rb") as f:
        requests = pickle.load(f)
    start = time.perf_counter()
    measure_from, until = start + warmup, start + warmup + float(seconds)
    lat: list[float] = []
    errors: list[str] = []
    shed = [0]

    def worker(k: int) -> None:
        client = tc.InferenceServerClient(url=f"127.0.0.1:{port}")
        prebuilt = []
        for req in requests:
            inputs = []
            for name, dt, col in req:
                i = tc.InferInput(name, [len(col)], dt)
                i.set_data_from_numpy(col)
                inputs.append(i)
            prebuilt.append(inputs)
        i = k
        while (t0 := time.perf_counter()) < until:
            ok = True
            try:
                client.infer(model, prebuilt[i % len(prebuilt)])
            except Exception as e:  # counted and reported, never a silent success
                ok = False
                if "overloaded:" in str(e):  # shed by admission (RESOURCE_EXHAUSTED / UNAVAILABLE)
                    shed[0] += t0 >= measure_from
                else:
                    errors.append(str(e)[:200])
            t1 = time.perf_counter()
            if ok and t0 >= measure_from:
                lat.append(t1 - t0)
            i += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(int(conc))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = np.asarray(lat) * 1000 if lat else np.zeros(1)
    print(
        json.dumps(
            {
                "req_s": len(lat) / float(seconds),
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "n": len(lat),
                "shed": shed[0],
                "errors": len(errors),
                "first_error": errors[0] if errors else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
