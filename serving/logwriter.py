"""The prediction log's writer process: ``python -m serving.logwriter`` (started by :mod:`serving.predlog`).

The server hands what its prediction-log queue holds to this process over a pipe every few milliseconds,
and this process writes one file per ``--flush-rows`` rows or ``--flush-seconds``: building the Arrow
table, encoding the Parquet file and publishing it (about 2 us of CPU per logged row, much of it holding
the GIL) run beside the server's event loop instead of inside its interpreter.

Protocol (stdin → stdout):

* stdin: frames of an 8-byte little-endian length and a pickle of a list of the queue's items
  ``(request ids, row counts, epochs, version, columns, probabilities)``. A frame cut short (the server
  killed in the middle of sending it) is discarded whole.
* stdout: one JSON line per written file batch (or failed write): ``{"rows", "files", "ok", "error",
  "cpu_s"}``; the server counts written / dropped rows from these.
* End of stdin (the server closed the pipe, or died, ``kill -9`` included) → the rows already received
  are written, then the process exits. SIGINT / SIGTERM are ignored: the server's own shutdown closes
  the pipe after its last flush, and a terminal's Ctrl-C must not cut that flush short.

Only numpy, pyarrow and :mod:`kfloop` are imported (no TensorFlow, no kserve): it starts in ~0.3 s.
"""

from __future__ import annotations

import argparse
import json
import pickle
import signal
import struct
import sys
import time

HEADER = struct.Struct("<Q")


def _read_exact(stream, n: int) -> bytes | None:
    """``n`` bytes, or None at the end of the stream (a partial read counts as the end)."""
    chunks, got = [], 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks) if len(chunks) > 1 else chunks[0]


def frames(stream):
    """The unpickled frames of ``stream`` until its end (a truncated last frame is dropped)."""
    while True:
        head = _read_exact(stream, HEADER.size)
        if head is None:
            return
        (n,) = HEADER.unpack(head)
        body = _read_exact(stream, n)
        if body is None:
            return
        yield pickle.loads(body)


def encode_frame(items: list) -> bytes:
    """One frame of the protocol (the server side)."""
    body = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.logwriter", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="log root (local dir or gs://bucket/prefix)")
    p.add_argument("--model-name", required=True)
    p.add_argument("--writer-id", required=True, help="first part of the file names")
    p.add_argument("--source", default="online", choices=("online", "batch"))
    p.add_argument("--flush-rows", type=int, default=5_000, help="write a file once this many rows are held")
    p.add_argument("--flush-seconds", type=float, default=2.0, help="... or this long after the last write")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Writer(args).run(sys.stdin.buffer, sys.stdout)
    return 0


class Writer:
    """Holds received items and writes them as one file per ``flush_rows`` rows / ``flush_seconds``."""

    def __init__(self, args):
        self.args = args
        self.acks = True

    def run(self, src, out) -> None:
        import queue
        import threading

        received: queue.Queue = queue.Queue()
        end = object()

        def read() -> None:
            try:
                for items in frames(src):
                    received.put(items)
            finally:
                received.put(end)

        threading.Thread(target=read, name="read", daemon=True).start()
        held, rows, last = [], 0, time.monotonic()
        while True:
            timeout = max(0.0, self.args.flush_seconds - (time.monotonic() - last)) if held else None
            try:
                got = received.get(timeout=timeout)
            except queue.Empty:
                got = None
            if got is end:
                if held:
                    self.write(held, rows, out)
                return
            if got is not None:
                held.extend(got)
                rows += sum(len(it[5]) for it in got)
            if held and (rows >= self.args.flush_rows or time.monotonic() - last >= self.args.flush_seconds):
                self.write(held, rows, out)
                held, rows, last = [], 0, time.monotonic()
            elif not held:
                last = time.monotonic()

    def write(self, items: list, n: int, out) -> None:
        from kfloop import predlog
        from serving.predlog import items_table

        ack = {"rows": n, "files": 0, "ok": True, "error": None}
        try:
            uris = predlog.write_table(
                self.args.root,
                self.args.model_name,
                predlog.PREDICTIONS,
                items_table(items, self.args.source),
                writer_id=self.args.writer_id,
            )
            ack["files"] = len(uris)
        except Exception as e:  # reported to the server, which counts the rows as dropped
            ack.update(ok=False, error=f"{type(e).__name__}: {e}"[:500])
        ack["cpu_s"] = round(time.process_time(), 4)
        if self.acks:
            try:
                out.write(json.dumps(ack) + "\n")
                out.flush()
            except (BrokenPipeError, OSError):  # the server is gone: keep writing what was received
                self.acks = False


if __name__ == "__main__":
    sys.exit(main())
