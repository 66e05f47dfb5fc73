"""The serving benchmark's load side: servers as subprocesses and the closed-loop load that drives them.

Used by ``benchmarks/serving.py`` (and its peers' launchers in ``benchmarks/peers/``), standard library only
(``httpx`` for the readiness probe):

* :func:`start` / :func:`stop`: a server subprocess, ready when its health path answers 200.
* :func:`drive_wrk`: ``wrk -t1`` (C) over prebuilt bodies, JSON or binary V2; non-2xx answers are counted
  (``shed``) and left out of the rate.
* :func:`drive`: the asyncio closed loop (when ``wrk`` is not installed), over :func:`request_bytes`.
* :func:`drive_grpc`: the 1,000-row gRPC point, ``benchmarks/grpc_load.py`` in its own process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    cmd: list[str], port: int, log: Path, ready_path: str = "/v2/health/ready", env: dict | None = None
) -> subprocess.Popen:
    """Starts ``cmd`` (cwd: the repo, ``PYTHONPATH``: the repo, plus ``env``), output to ``log``; returns
    once ``GET ready_path`` on ``port`` answers 200 (``SystemExit`` with the log's tail if it exits or is
    not ready within 180 s)."""
    import httpx

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server not ready: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request_bytes(port: int, path: str, body: bytes, header_length: int | None = None) -> bytes:
    """One HTTP/1.1 request; ``header_length``: a binary V2 body's JSON length (its extension header)."""
    if header_length is None:
        extra = "content-type: application/json\r\n"
    else:
        extra = (
            f"content-type: application/octet-stream\r\ninference-header-content-length: {header_length}\r\n"
        )
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{extra}content-length: {len(body)}\r\n\r\n"
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


_LUA = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%s", nil, bodies[i])
end
"""

#: Binary bodies (arbitrary bytes) are read from files; each has its own Inference-Header-Content-Length.
_LUA_BINARY = """
local paths = {%s}
local lengths = {%s}
local bodies = {}
for k, p in ipairs(paths) do
  local f = assert(io.open(p, "rb"))
  bodies[k] = f:read("*a")
  f:close()
end
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%s", {["Content-Type"] = "application/octet-stream",
                                   ["Inference-Header-Content-Length"] = lengths[i]}, bodies[i])
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def drive_wrk(
    port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float, work: Path, lengths=None
) -> dict:
    """``wrk -t1 -c<concurrency>`` over the bodies in turn (1 s warm-up run first); req/s and p50 / p99.

    ``lengths``: binary V2 bodies' JSON lengths (the bodies go to files the Lua script reads)."""
    script = work / f"wrk-{port}-{len(bodies[0])}-{len(bodies)}.lua"
    if lengths is None:
        quoted = ", ".join("[==[" + b.decode() + "]==]" for b in bodies)
        script.write_text(_LUA % (quoted, path))
    else:
        files = []
        for k, b in enumerate(bodies):
            files.append(work / f"{script.stem}-{k}.bin")
            files[-1].write_bytes(b)
        paths = ", ".join(f'"{f}"' for f in files)
        script.write_text(_LUA_BINARY % (paths, ", ".join(f'"{n}"' for n in lengths), path))
    url = f"http://127.0.0.1:{port}"
    base = ["wrk", "-t1", f"-c{concurrency}", "-s", str(script), "--latency", "--timeout", "10s"]
    subprocess.run([*base, "-d1s", url], capture_output=True, check=False)
    out = subprocess.run([*base, f"-d{max(1, round(seconds))}s", url], capture_output=True, text=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errs and any(int(x) for x in errs.groups()):
        raise SystemExit(f"benchmark requests failed (wrk):\n{out}")
    # 503s (shed: the log behind) are left out of the rate; wrk's latency figures still include them
    shed = int(bad.group(1)) if bad else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * (total - shed) / max(total, 1)
    lat = {
        q: float(v) * _UNITS[u] for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    return {"req_s": rate, "p50_ms": lat["50"], "p99_ms": lat["99"], "n": total - shed, "shed": shed}


def drive_grpc(port: int, model: str, requests: Path, concurrency: int, seconds: float) -> dict:
    """The 1,000-row gRPC point: ``benchmarks/grpc_load.py`` (tritonclient.grpc) in its own process."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "grpc_load.py"), str(port), model, str(requests)]
    out = subprocess.run(
        [*cmd, str(concurrency), str(seconds)], capture_output=True, text=True, timeout=seconds + 120
    )
    if out.returncode != 0:
        raise SystemExit(f"gRPC load failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r["errors"]:
        raise SystemExit(f"benchmark gRPC requests failed ({r['errors']}): {r['first_error']}")
    return r
