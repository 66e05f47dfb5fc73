"""Writing accepted labels in batches (:class:`LabelBatcher`): one feedback log file per ``flush_labels``
labels or ``flush_seconds``, with an admission bound on the labels pending. The endpoint that accepts them
is :mod:`serving.feedback`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time

log = logging.getLogger("kfloop.serving.feedback")


class WriteFailed(Exception):
    """The batch holding a request's labels could not be written."""


class LabelBatch:
    """Labels waiting for one feedback log file, and the future their requests wait on."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None):
        self.columns: dict[str, list] = {
            k: [] for k in ("ids", "rows", "labels", "when", "arrival", "labeler")
        }
        self.keys: list[tuple[str, int]] = []
        self.n = 0
        self.future = loop.create_future() if loop is not None else None
        if self.future is not None:  # read here, so a batch nobody waits for any more logs no warning
            self.future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def add(self, ids, rows, labels, when, arrival: float, labeler: str | None) -> None:
        c = self.columns
        c["ids"] += ids
        c["rows"] += rows
        c["labels"] += labels
        c["when"] += when
        c["arrival"] += [arrival] * len(ids)
        c["labeler"] += [labeler] * len(ids)
        self.keys += list(zip(ids, rows, strict=True))
        self.n += len(ids)


class LabelBatcher:
    """Batches accepted labels into feedback log files, with an admission bound on the labels pending.

    Runs on the server's event loop: :meth:`add` puts a request's labels into the open batch, which is sealed
    after ``cfg.flush_seconds`` or at ``cfg.flush_labels`` labels, or at once when nothing was written for
    ``cfg.flush_seconds`` and the writer is idle (a lone label waits for no timer), and written by one writer
    task (in a worker thread), one batch at a time. :meth:`close` writes what is left, synchronously, at shutdown.

    Args:
        write: ``write(batch columns) -> uris``, the file writer.
        cfg: :class:`kfloop.config.FeedbackConfig`.
    """

    def __init__(self, write, cfg):
        self._write = write
        self.cfg = cfg
        self.pending = 0  # labels accepted and not yet written (open, sealed and being written)
        self.written = 0
        self.files = 0
        self.failed = 0
        self._open: LabelBatch | None = None
        self._sealed: collections.deque[LabelBatch] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task | None = None
        self.on_failure = None  # callable(batch): forget the batch's labels
        self._last_seal = -math.inf

    def room(self, n: int) -> bool:
        return self.pending + n <= self.cfg.max_pending_labels

    def add(
        self, ids, rows, labels, when, arrival: float, labeler: str | None, seal_now: bool = False
    ) -> LabelBatch:
        """Adds labels to the open batch; returns it (await ``batch.future``)."""
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is None:
            batch = self._open = LabelBatch(loop)
            self._timer = loop.call_later(self.cfg.flush_seconds, self._seal)
        batch.add(ids, rows, labels, when, arrival, labeler)
        self.pending += len(ids)
        idle = (self._writer is None or self._writer.done()) and not self._sealed
        # Sparse labels are written at once; under load at most one file per flush_seconds.
        quiet = time.monotonic() - self._last_seal >= self.cfg.flush_seconds
        if batch.n >= self.cfg.flush_labels or seal_now or (idle and quiet):
            self._seal()
        return batch

    def seal_open(self) -> None:
        """Writes the open batch now instead of at its flush time (shutdown)."""
        if self._open is not None:
            self._seal()

    def _seal(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._open = self._open, None
        if batch is None:
            return
        self._last_seal = time.monotonic()
        self._sealed.append(batch)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._sealed:
            batch = self._sealed.popleft()
            try:
                uris = await loop.run_in_executor(None, self._write, batch.columns)
            except Exception as e:
                log.exception("feedback: writing %d labels failed", batch.n)
                self.failed += batch.n
                if self.on_failure is not None:
                    self.on_failure(batch)
                batch.future.set_exception(WriteFailed(str(e)))
            else:
                self.written += batch.n
                self.files += len(uris)
                batch.future.set_result(uris)
            finally:
                self.pending -= batch.n

    def close(self) -> int:
        """Writes every batch not written yet (the loop has stopped); returns the labels written."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        left = list(self._sealed) + ([self._open] if self._open is not None else [])
        self._sealed.clear()
        self._open = None
        done = 0
        for batch in left:
            try:
                self.files += len(self._write(batch.columns))
            except Exception:
                log.exception("feedback: at shutdown, writing %d labels failed", batch.n)
                self.failed += batch.n
                continue
            done += batch.n
            self.written += batch.n
            self.pending -= batch.n
        return done
