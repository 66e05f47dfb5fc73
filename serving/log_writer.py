"""The prediction log's writer process: ``python -m serving.log_writer`` (started by :mod:`serving.log_queue`).

The server hands what its prediction-log queue holds to this process over a pipe every few milliseconds,
and this process writes one file per ``--flush-rows`` rows or ``--flush-seconds``; a write takes the frames
already received with it, up to :data:`BATCH_FLUSHES` flushes (when it is behind: fewer, bigger files, less
CPU per row). Building the Arrow table, encoding the Parquet file and publishing it (about 1-2 us of CPU per
logged row, much of it holding the GIL) run beside the server's event loop instead of inside its interpreter.

Protocol (stdin → stdout):

* stdin: frames of an 8-byte little-endian length and a pickle of ``(frame id, items)``, the items being
  the queue's ``(request ids, row counts, epochs, version, columns, probabilities, log schema)`` (the
  prediction log schema of the predicting model's spec: items of different schemas go to different files);
  a column is a numpy array, or an Arrow string array where the request's decode had one
  (:func:`serving.log_tables.wire_items`). A frame holds at most ``--flush-rows`` rows (or one item). A
  frame cut short (the server killed in the middle of sending it) is discarded whole.
* stdout: one JSON line per written file batch, failed write or heartbeat: ``{"rows", "frames", "files",
  "ok", "error", "cpu_s"}``. ``frames`` are the ids whose rows are now all published (``ok``) or dropped
  for good (not ``ok``); ``"retry": true`` means a storage failure (full, read-only, unreachable): the
  batch is kept and retried every ``--retry-seconds``; ``"heartbeat": true`` (every ``--heartbeat-seconds``
  while rows are held) only says the writer is alive. The server counts written / dropped rows from these,
  sheds while writes fail, and fails liveness when no line comes for its stall bound.
* File names are ``<--writer-id>-<pid>-<random>-<seq>``: a restarted writer (its predecessor killed) never
  reuses a name; a name found taken anyway gets a fresh id, and the rows are published under it.
* End of stdin (the server closed the pipe, or died, ``kill -9`` included) → the rows already received
  are written (one last try), then the process exits. SIGINT / SIGTERM are ignored: the server's own
  shutdown closes the pipe after its last flush, and a terminal's Ctrl-C must not cut that flush short.

Only numpy, pyarrow and :mod:`kfloop` are imported (no TensorFlow, no kserve): it starts in ~0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import struct
import sys
import time
import uuid

import numpy as np
import pyarrow as pa

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


def frame_parts(items: list, frame_id: int = 0) -> tuple[bytes, bytes]:
    """One frame of the protocol (the server side), ``(frame_id, items)``, as its header and its body."""
    body = pickle.dumps((frame_id, items), protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)), body


def encode_frame(items: list, frame_id: int = 0) -> bytes:
    """One frame of the protocol (the server side): ``(frame_id, items)``, in one piece."""
    return b"".join(frame_parts(items, frame_id))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.log_writer", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="log root (local dir or gs://bucket/prefix)")
    p.add_argument("--model-name", required=True)
    p.add_argument(
        "--writer-id", required=True, help="first part of the file names (this process adds its own)"
    )
    p.add_argument("--source", default="online", choices=("online", "batch"))
    p.add_argument("--flush-rows", type=int, default=5_000, help="write a file once this many rows are held")
    p.add_argument("--flush-seconds", type=float, default=2.0, help="... or this long after the last write")
    p.add_argument("--retry-seconds", type=float, default=RETRY_S, help="retry a failed write this often")
    p.add_argument("--heartbeat-seconds", type=float, default=HEARTBEAT_S, help="report progress this often")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Writer(args).run(sys.stdin.buffer, sys.stdout)
    return 0


#: A failed write (storage full, read-only, unreachable) is retried this often (``--retry-seconds``).
RETRY_S = 1.0
#: While it holds rows, the writer reports that it is alive this often (the server's stall bound).
HEARTBEAT_S = 1.0
#: A write takes the frames already received with it, up to this many ``--flush-rows`` in all (when the
#: writer is behind: fewer, bigger files, less CPU per row).
BATCH_FLUSHES = 4
#: Fresh file names tried when a name is already taken, before the write counts as failed.
NAME_TRIES = 3


def fresh_writer_id(prefix: str) -> str:
    """``<prefix>-<pid>-<random>``: unique per writer process, so a restarted writer never reuses a name."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def transient(e: BaseException) -> bool:
    """Whether a failed write is worth retrying: storage errors (OSError, GCS / HTTP client errors), not
    rows that do not fit the log's schema."""
    return isinstance(e, OSError) or type(e).__module__.split(".")[0] in ("google", "requests", "urllib3")


class Batch:
    """The rows of some frames, as one table per spec and UTC date, published part by part (never twice)."""

    def __init__(self, frame_ids: list[int], rows: int, parts: list):
        self.frame_ids = frame_ids
        self.rows = rows
        self.parts = parts
        self.files = 0


class Writer:
    """Holds received frames and writes them as one file per date per ``flush_rows`` rows / ``flush_seconds``.

    A write that fails on storage (full, read-only, unreachable) is kept and retried every
    ``retry_seconds`` (frames received meanwhile wait behind it); the server hears about every failed try
    (``"retry": true``) and sheds new requests until a write succeeds. Frames are acknowledged by id once
    all their rows are published, so the server can hand unacknowledged frames to the next writer if this
    one dies.
    """

    def __init__(self, args):
        self.args = args
        self.acks = True
        self.writer_id = fresh_writer_id(args.writer_id)
        self.failed: Batch | None = None
        self.retry_at = 0.0
        self.beat_at = time.monotonic()

    def run(self, src, out) -> None:
        import queue
        import threading

        received: queue.Queue = queue.Queue()
        end = object()

        def read() -> None:
            try:
                for frame in frames(src):
                    received.put(frame)
            finally:
                received.put(end)

        threading.Thread(target=read, name="read", daemon=True).start()
        held, rows, last = [], 0, time.monotonic()
        while True:
            now = time.monotonic()
            if self.failed is not None:
                timeout = max(0.0, self.retry_at - now)
            elif held:
                timeout = max(0.0, min(self.args.flush_seconds - (now - last), self.beat_at - now))
            else:
                timeout = None
            try:
                got = received.get(timeout=timeout)
            except queue.Empty:
                got = None
            if got is end:
                if self.failed is not None:
                    self.attempt(self.failed, out, final=True)
                if held:
                    self.attempt(self.batch(held, rows, out), out, final=True)
                return
            if got is not None:
                held.append(got)
                rows += sum(len(it[5]) for it in got[1])
            now = time.monotonic()
            if self.failed is not None:
                if now >= self.retry_at:
                    self.attempt(self.failed, out)
                continue  # what arrives meanwhile waits behind the failed write
            if held and (rows >= self.args.flush_rows or now - last >= self.args.flush_seconds):
                # Frames already received would wait behind this write: they go in the same files (a
                # bigger file costs less CPU per row to build and encode), up to BATCH_FLUSHES flushes.
                while rows < BATCH_FLUSHES * self.args.flush_rows:
                    try:
                        more = received.get_nowait()
                    except queue.Empty:
                        break
                    if more is end:
                        received.put(end)  # the reader is done: end stays the last thing received
                        break
                    held.append(more)
                    rows += sum(len(it[5]) for it in more[1])
                self.attempt(self.batch(held, rows, out), out)
                held, rows, last = [], 0, time.monotonic()
            elif not held:
                last = now
            elif now >= self.beat_at:
                self.ack({"rows": 0, "frames": [], "ok": True, "heartbeat": True}, out)

    def batch(self, held: list, n: int, out) -> Batch | None:
        """The held frames as one :class:`Batch` (None, and the rows reported dropped, if they cannot be
        made into the log's table)."""
        from kfloop import predlog
        from serving.log_tables import items_tables

        ids = [fid for fid, _ in held]
        try:
            parts = []
            for table in items_tables([it for _, items in held for it in items], self.args.source):
                table = table.combine_chunks()
                days = predlog.dates_of(table.column("timestamp").combine_chunks())
                if len(days) and days.min() == days.max():  # one UTC date (all but around midnight): no sort
                    parts.append(table)
                else:
                    parts += [table.filter(pa.array(days == d)) for d in np.unique(days)]
        except Exception as e:  # rows that cannot become the log's table: no retry will fix them
            self.ack({"rows": n, "frames": ids, "ok": False, "error": _err(e)}, out)
            return None
        return Batch(ids, n, parts)

    def publish(self, part) -> None:
        """One date's rows as one file; a name already taken gets a fresh writer id (never a lost row)."""
        from kfloop import predlog

        for attempt in range(NAME_TRIES):
            try:
                predlog.write_table(
                    self.args.root, self.args.model_name, predlog.PREDICTIONS, part, writer_id=self.writer_id
                )
                return
            except FileExistsError:
                self.writer_id = fresh_writer_id(self.args.writer_id)
                if attempt == NAME_TRIES - 1:
                    raise

    def attempt(self, batch: Batch | None, out, final: bool = False) -> None:
        """Publishes what is left of ``batch``; on a storage failure keeps it for a retry (or, ``final``:
        at the end of the input, reports its rows dropped)."""
        if batch is None:
            return
        try:
            while batch.parts:
                self.publish(batch.parts[0])
                batch.parts.pop(0)
                batch.files += 1
        except Exception as e:
            if final or not transient(e):
                self.failed = None
                self.ack({"rows": batch.rows, "frames": batch.frame_ids, "ok": False, "error": _err(e)}, out)
            else:
                self.failed = batch
                self.retry_at = time.monotonic() + self.args.retry_seconds
                self.ack(
                    {
                        "rows": 0,
                        "frames": [],
                        "ok": False,
                        "retry": True,
                        "pending": batch.rows,
                        "error": _err(e),
                    },
                    out,
                )
            return
        self.failed = None
        self.ack({"rows": batch.rows, "frames": batch.frame_ids, "files": batch.files, "ok": True}, out)

    def ack(self, ack: dict, out) -> None:
        """One JSON line to the server (which counts written / dropped rows and watches for progress)."""
        self.beat_at = time.monotonic() + self.args.heartbeat_seconds
        ack.setdefault("error", None)
        ack["cpu_s"] = round(time.process_time(), 4)
        if self.acks:
            try:
                out.write(json.dumps(ack) + "\n")
                out.flush()
            except (BrokenPipeError, OSError):  # the server is gone: keep writing what was received
                self.acks = False


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


if __name__ == "__main__":
    sys.exit(main())
