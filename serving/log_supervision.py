"""The prediction log's writer processes (:mod:`serving.log_writer`): start one, send it frames, read its
acknowledgements, and put what a dead writer did not acknowledge back at the head of the queue.

:class:`WriterSupervision` is the part of :class:`serving.log_queue.PredictionLog` that supervises the
writer; it works on the log's queue and row accounting, under the log's lock (``_cond``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("kfloop.serving.log_queue")


#: Least time between two starts of a writer process (one that dies at once is not restarted in a loop).
RESTART_BACKOFF_S = 0.5


class WriterProcess:
    """One writer process (:mod:`serving.log_writer`) and the frames sent to it and not yet acknowledged."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.inflight = 0
        self.pending: dict[int, tuple[list, int]] = {}  # frame id -> (items, rows), until acknowledged
        self.progress_at = time.monotonic()  # last line from the writer (or first frame after a quiet spell)
        self.dead = False  # its acknowledgements ended: its pending frames went back to the queue
        self.cpu_s = 0.0
        self.acks: threading.Thread | None = None


class WriterSupervision:
    """The writer-process half of :class:`serving.log_queue.PredictionLog` (a base class of it)."""

    def _start_writer(self) -> WriterProcess | None:
        from serving import log_writer  # noqa: F401 - fail here, not in the child, if it is missing

        package_parent = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable,
            "-m",
            "serving.log_writer",
            "--root",
            self.root_uri,
            "--model-name",
            self.model_name,
            "--writer-id",
            self.server_id,
            "--source",
            self.source,
            "--flush-rows",
            str(self.flush_rows),
            "--flush-seconds",
            repr(self.flush_seconds),
        ]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        except OSError:
            log.exception("prediction log: the writer process could not start")
            return None
        self.writers_started += 1
        self._last_start = time.monotonic()
        w = WriterProcess(proc)
        w.acks = threading.Thread(target=self._read_acks, args=(w,), name="prediction-log-acks", daemon=True)
        w.acks.start()
        return w

    def _send(self, items: list, n: int) -> None:
        """Sends what was queued to the writer process, as frames of at most ``flush_rows`` rows (or one
        item): each pickle holds the GIL for a bounded time, and the writer starts on the first frame while
        the next is encoded."""
        w = self._writer
        if w is None or w.dead or w.proc.poll() is not None:
            if w is not None:
                log.error("prediction log: the writer process exited (%s); starting a new one", w.proc.poll())
            wait = self._last_start + RESTART_BACKOFF_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            w = self._writer = self._start_writer()
        if w is None:
            with self._cond:
                self._inflight -= n
            self._count_dropped(n)
            return
        chunks, chunk, rows = [], [], 0
        for it in items:
            k = len(it[5])
            if chunk and rows + k > self.flush_rows:
                chunks.append((chunk, rows))
                chunk, rows = [], 0
            chunk.append(it)
            rows += k
        chunks.append((chunk, rows))
        for i, (chunk, rows) in enumerate(chunks):
            if not self._send_frame(w, chunk, rows):  # a dead pipe: the rest goes back to the queue too
                rest = chunks[i + 1 :]
                if rest:
                    with self._cond:
                        self._requeue(rest)
                return

    def _send_frame(self, w: WriterProcess, items: list, n: int) -> bool:
        """One frame to ``w``; False when its pipe is dead (the frame is back in the queue)."""
        from serving.log_tables import wire_items
        from serving.log_writer import frame_parts

        fid = next(self._frame_ids)
        try:
            parts = frame_parts(wire_items(items), fid)
        except Exception:  # an item that does not pickle: no writer will take it
            log.exception("prediction log: %d records could not be encoded; dropped", n)
            with self._cond:
                self._inflight -= n
            self._count_dropped(n)
            return True
        with self._cond:
            if not w.pending:
                w.progress_at = time.monotonic()  # the stall clock starts with the first held frame
            w.pending[fid] = (items, n)
            w.inflight += n
        try:
            for part in parts:  # the header, then the pickle (no copy of the two joined)
                view = memoryview(part)
                while view:  # an unbuffered pipe write may be partial (a signal mid-write): send the rest
                    view = view[w.proc.stdin.write(view) :]
        except Exception:  # a dead pipe: the frame goes back to the queue, for the next writer
            log.warning("prediction log: the writer process is gone; %d records go to the next one", n)
            with self._cond:
                back = w.pending.pop(fid, None)  # None: the acknowledgement reader already took it back
                if back is not None:
                    w.inflight -= n
                    self._requeue([back])
            return False
        return True

    def _requeue(self, frames: list) -> None:
        """Puts unacknowledged frames back at the head of the queue (the caller holds the lock)."""
        n = sum(rows for _, rows in frames)
        self._inflight -= n
        if self._closing:  # no writer will come after this one
            self.dropped += n
            self._dropped_counter.inc(n)
            log.error("prediction log: the writer process ended with %d records not written", n)
            return
        for items, _ in reversed(frames):
            self._items.extendleft(reversed(items))
        self._queued_rows += n
        self._cond.notify()

    def _read_acks(self, w: WriterProcess) -> None:
        """Counts the writer's acknowledgements; at its end, the frames it did not acknowledge go back to
        the queue (the next writer writes them), or are dropped once the log is closing."""
        try:
            for line in w.proc.stdout:
                try:
                    ack = json.loads(line)
                    frames = [int(f) for f in ack.get("frames") or ()]
                except (ValueError, KeyError, TypeError, AttributeError):
                    log.error("prediction log: unreadable line from the writer: %r", line[:200])
                    continue
                w.progress_at = time.monotonic()
                w.cpu_s = float(ack.get("cpu_s") or w.cpu_s)
                if ack.get("retry"):
                    self._set_write_error(str(ack.get("error")))
                    continue
                with self._cond:
                    n = 0
                    for f in frames:
                        got = w.pending.pop(f, None)
                        n += got[1] if got is not None else 0
                    w.inflight -= n
                    self._inflight -= n
                if ack.get("heartbeat"):
                    continue
                if ack.get("ok"):
                    self._set_write_error(None)
                    self._count_written(n, int(ack.get("files") or 0))
                else:
                    self._count_dropped(n)
                    log.error("prediction log: writing %d records failed; dropped (%s)", n, ack.get("error"))
        finally:
            with self._cond:
                w.dead = True
                frames = list(w.pending.values())
                w.pending.clear()
                w.inflight = 0
                if frames:
                    self._requeue(frames)
                self._writers_cpu += w.cpu_s
                w.cpu_s = 0.0
