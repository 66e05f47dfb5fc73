"""The prediction log of the server: bounded queue on the request path, Parquet writes in another process.

The format is :mod:`kfloop.predlog` (one row per predicted row, typed columns, missing = null), under the
log root::

    predictions/<model_name>/date=YYYY-MM-DD/<server_id>-<seq>.parquet

The columns are those of the dataset spec of the model version that predicted (its Arrow schema,
:func:`kfloop.predlog.prediction_schema`, travels with each queued item): a hot reload to a version with
another spec starts new files, and no file ever mixes two schemas.

The request path only appends a reference to the already-decoded column arrays (the same numpy arrays the
model was fed, so V1 and V2 requests log identical rows) and the probabilities to a queue: one item per model
call (:meth:`PredictionLog.submit_batch`, the micro-batch's concatenated columns and its requests' ids and row
counts), or per request (:meth:`PredictionLog.submit`); neither blocks, copies or raises. The queue holds at
most ``queue_size`` rows (queued here, handed to the writer and not yet written, or reserved). The HTTP layer
reserves a request's rows (:meth:`PredictionLog.reserve`) before the model call and answers 503 when the log
has no room (:mod:`serving.http`), so an answered prediction is never dropped because the log is behind; a
submit without a reservation (the gRPC path, ``--log-when-full drop``) that does not fit is dropped and
counted (``kfloop_prediction_log_dropped_total``), as are rows whose write fails.

A background thread takes everything queued at each flush (``flush_rows`` rows or ``flush_seconds``) and
sends it, pickled (frames of at most ``flush_rows`` rows; string columns the binary decode already had
as Arrow arrays go as those, :func:`serving.log_tables.wire_items`), to the **writer process** (:mod:`serving.log_writer`, started with the log), which turns it
into one Arrow table (:mod:`serving.log_tables`), writes it as one snappy-compressed Parquet file per date
and publishes it atomically (:func:`kfloop.predlog.write_table`), then acknowledges it; written / dropped
counts come from these acknowledgements. Building and encoding the table costs ~2 us of CPU per row, much of it holding the GIL:
in the server's own interpreter it took the event loop's time (1,000-row requests ran at ~0.4-0.6x the
log-off rate); in the writer process it runs beside it. If the writer process dies, its unacknowledged frames
go back to the front of the queue and a new writer (with a fresh writer id) writes them. ``close()`` (SIGTERM) flushes what is queued,
closes the pipe and waits for the writer to finish.

Loss bound on ``kill -9`` of the server: the rows answered since the last flush was handed to the writer,
i.e. at most ``max(flush_rows, rate * flush_seconds)`` rows (the queue caps all of it at ``queue_size``):
the writer process sees the end of its pipe and still writes every flush it had received whole (a flush
cut off in the middle of sending is discarded). Nothing half-written is ever visible: a file appears whole
(rename / GCS ``if_generation_match=0``) or not at all; a killed writer leaves at most a dot-prefixed
``.tmp`` file, which no reader lists. With the defaults (5,000 rows / 2 s) that is at most 2 s of traffic
+ 5,000 rows. A ``kill -9`` of the whole pod (both processes) also loses the flush being written.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import threading
import time
import uuid

from serving.log_supervision import WriterProcess, WriterSupervision
from serving.log_tables import items_tables

log = logging.getLogger("kfloop.serving.log_queue")

_METRICS = None


def _metrics():
    """Prometheus counters (registered once per process in kserve's default registry, served at /metrics)."""
    global _METRICS
    if _METRICS is None:
        from prometheus_client import Counter

        _METRICS = (
            Counter(
                "kfloop_prediction_log_dropped", "Prediction log records dropped (queue full or write failed)"
            ),
            Counter("kfloop_prediction_log_written", "Prediction log records written"),
        )
    return _METRICS


#: How often the sender thread hands what is queued to the writer process (one frame per interval).
SEND_INTERVAL_S = 0.02


class LogSlot:
    """Room for one request's rows in the log (:meth:`PredictionLog.reserve`), taken by its submit or released."""

    __slots__ = ("log", "n", "open")

    def __init__(self, log: PredictionLog, n: int):
        self.log = log
        self.n = n
        self.open = True

    def release(self) -> None:
        """Gives the room back (the request was not answered, or its rows were not submitted)."""
        with self.log._cond:
            self._take()

    def _take(self) -> None:
        """Ends the reservation (once: later calls do nothing); the caller holds the log's lock."""
        if self.open:
            self.open = False
            self.log._reserved -= self.n


class PredictionLog(WriterSupervision):
    """Bounded, non-blocking prediction logger: a sender thread here, the Parquet writes in another process.

    Args:
        root_uri: Log root (local dir or ``gs://bucket/prefix``); files go under ``predictions/<model>/``.
        model_name: Model name in the log path.
        queue_size: Most rows held in memory (queued, sent to the writer and not yet written, or reserved);
            a submit beyond it (without a reservation) is dropped and counted.
        flush_rows: Flush when this many rows are queued ...
        flush_seconds: ... or this long after the last flush, whichever comes first.
        server_id: File-name prefix (default: host name + process id + a short random id).
        source: ``"online"`` (the server) or ``"batch"``.
        writer_process: Write in a :mod:`serving.log_writer` process (default); False: in the sender thread.
        stall_seconds: A writer process that holds rows and says nothing for this long is stalled
            (:meth:`stalled`: liveness fails, so the pod is restarted).
        schema: The prediction log schema of items submitted without one (a :class:`kfloop.spec.DatasetSpec`
            or its :func:`kfloop.predlog.prediction_schema`); the server passes each model call's own.
    """

    def __init__(
        self,
        root_uri: str,
        model_name: str,
        queue_size: int,
        flush_rows: int,
        flush_seconds: float,
        server_id: str | None = None,
        source: str = "online",
        writer_process: bool = True,
        stall_seconds: float = 60.0,
        schema=None,
    ):
        from kfloop import predlog

        self.schema = predlog.as_prediction_schema(schema) if schema is not None else None
        if not (flush_seconds > 0 and flush_seconds < float("inf")):
            raise ValueError(f"flush_seconds must be a positive finite number, got {flush_seconds!r}")
        if not (stall_seconds > 0 and stall_seconds < float("inf")):
            raise ValueError(f"stall_seconds must be a positive finite number, got {stall_seconds!r}")
        self.stall_seconds = stall_seconds
        self.write_error: str | None = None  # the last failed write's error, until a write succeeds
        self.write_error_since: float | None = None
        self._frame_ids = itertools.count(1)
        self._closing = False  # close() has handed over the last frame: a dead writer's frames are dropped
        self._last_start = 0.0
        if not model_name or "/" in model_name or model_name in (".", ".."):
            raise predlog.LogError(f"model name {model_name!r} is not a single path segment")
        self._predlog = predlog
        self.root_uri = root_uri
        self.model_name = model_name
        self.queue_size = queue_size
        self.flush_rows = max(1, flush_rows)
        self.flush_seconds = flush_seconds
        self.source = source
        host = socket.gethostname().replace("/", "_")
        self.server_id = server_id or f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._items: collections.deque = collections.deque()
        self._queued_rows = 0
        self._inflight = 0  # rows sent to writer processes and not yet acknowledged
        self._reserved = 0  # rows of LogSlots not yet submitted
        self._cond = threading.Condition()
        self._stop = False
        self.dropped = 0
        self.written = 0
        self.files = 0
        self.writers_started = 0
        self._sender_cpu = 0.0
        self._writers_cpu = 0.0  # CPU of writer processes that have exited
        self._dropped_reported = 0
        self._dropped_counter, self._written_counter = _metrics()
        self.writer_process = writer_process
        self._writer: WriterProcess | None = None
        if writer_process:
            self._writer = self._start_writer()
        # The sender wakes for the first queued row (then hands over every SEND_INTERVAL_S); the in-thread
        # writer only when a flush is due.
        self._wake_rows = 1 if writer_process else self.flush_rows
        run = self._run_sender if writer_process else self._run
        self._thread = threading.Thread(target=run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def cpu_seconds(self) -> float:
        """CPU spent on the log: the sender thread's, plus the writer processes' (as last acknowledged)."""
        current = self._writer.cpu_s if self._writer is not None else 0.0
        return self._sender_cpu + self._writers_cpu + current

    @property
    def held_rows(self) -> int:
        """Rows held: queued, sent to the writer and not yet written, or reserved."""
        return self._queued_rows + self._inflight + self._reserved

    def has_room(self, n: int) -> bool:
        """Whether ``n`` more rows fit now (nothing is reserved: the admission check on the headers; under
        the log's lock, the check of :meth:`reserve` and of a submit)."""
        return not self._stop and self.held_rows + n <= self.queue_size

    def accepting(self, n: int) -> bool:
        """Whether a new request of ``n`` rows may be answered: room for them, and the log can write (no
        write has failed since the last one that succeeded)."""
        return self.write_error is None and self.has_room(n)

    def problem(self) -> str | None:
        """Why the log cannot take new rows now (readiness fails with it), or None."""
        if self.write_error is not None:
            since = time.monotonic() - (self.write_error_since or time.monotonic())
            return f"the prediction log cannot write for {since:.0f} s ({self.write_error})"
        return self.stalled()

    def stalled(self) -> str | None:
        """Why the writer process counts as stuck (liveness fails with it), or None.

        Stuck: it holds rows and has said nothing (no acknowledgement, failed try or heartbeat, which it
        sends every second while it holds rows) for :attr:`stall_seconds` (a SIGSTOP, a hung storage call).
        """
        w = self._writer
        if w is None or not w.pending or w.dead:
            return None
        quiet = time.monotonic() - w.progress_at
        if quiet <= self.stall_seconds:
            return None
        return (
            f"the prediction log's writer process (pid {w.proc.pid}) holds {w.inflight} rows and has made no "
            f"progress for {quiet:.0f} s (bound --log-stall-seconds {self.stall_seconds:g})"
        )

    def reserve(self, n: int) -> LogSlot | None:
        """Room for ``n`` rows, held until a submit takes it (``slots=``) or it is released; None when full.

        With a reservation, the submit of those rows always fits: the request is answered only if its
        predictions will be logged (unless the write itself fails).
        """
        with self._cond:
            if not self.accepting(n):
                return None
            self._reserved += n
        return LogSlot(self, n)

    def submit(
        self, request_id: str, epoch: float, version: str, columns, probabilities, *, schema=None
    ) -> bool:
        """Queues one request's predictions; returns False (and counts them) when dropped.

        Args:
            request_id: The request id.
            epoch: When predicted (seconds since the epoch).
            version: Model version that predicted.
            columns: The decoded ``{feature: numpy array}`` the model was fed (missing = the spec's
                sentinels). A list of V1 instance dicts is accepted too (decoded by the writer).
            probabilities: The model's outputs, one float per row (float32, exactly as the response shows
                it), or multiclass ``[n, K]`` (per the schema's task).
            schema: The prediction log schema of the model's spec (default: the log's ``schema``).
        """
        schema = self._schema(schema)
        return self._enqueue(
            ((request_id,), (len(probabilities),), (epoch,), version, columns, probabilities, schema)
        )

    def _schema(self, schema):
        if schema is None:
            schema = self.schema
        elif hasattr(schema, "model_features"):  # a DatasetSpec (the server passes the model's Arrow schema)
            schema = self._predlog.prediction_schema(schema)
        if schema is None:
            raise self._predlog.LogError("no prediction log schema: pass the model's (schema=) or the log's")
        return schema

    def submit_batch(
        self, requests, version: str, columns: dict, probabilities, slots=(), *, schema=None
    ) -> bool:
        """Queues one micro-batch (one model call) of several requests as ONE item; False when dropped.

        Row numbers stay per request (``0 .. n-1`` within each).

        Args:
            requests: ``(request_id, n rows, epoch)`` of each request, in the order of the batch's rows.
            version: Model version that predicted the batch.
            columns: The batch's concatenated ``{feature: numpy array}`` (as the model was fed).
            probabilities: The outputs of the batch's rows (``[n]``, or multiclass ``[n, K]``).
            slots: The :class:`LogSlot` of those requests that reserved their rows (taken here).
            schema: The prediction log schema of the model's spec (default: the log's ``schema``).
        """
        schema = self._schema(schema)
        ids = tuple(r[0] for r in requests)
        counts = tuple(r[1] for r in requests)
        epochs = tuple(r[2] for r in requests)
        return self._enqueue((ids, counts, epochs, version, columns, probabilities, schema), slots)

    def _enqueue(self, item, slots=()) -> bool:
        n = len(item[5])
        with self._cond:
            for slot in slots:  # reserved rows fit by construction: the check below counts them once
                slot._take()
            if not self.has_room(n):
                self.dropped += n
                self._dropped_counter.inc(n)
                return False
            self._items.append(item)
            self._queued_rows += n
            if self._queued_rows >= self._wake_rows:
                self._cond.notify()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stops accepting records, flushes everything queued and waits for it to be written (SIGTERM)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
        with self._cond:
            self._closing = True
        w = self._writer
        if w is None:
            return
        with contextlib.suppress(OSError):
            w.proc.stdin.close()  # end of the pipe: the writer writes what it has, then exits
        try:
            w.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("prediction log: the writer process did not finish within %.0f s; killed", timeout)
            w.proc.kill()
            w.proc.wait()
        if w.acks is not None:
            w.acks.join(max(0.1, deadline - time.monotonic()))
        with self._cond:  # frames a writer dying at the end handed back after the last hand-over
            left, self._queued_rows = self._queued_rows, 0
            self._items.clear()
        if left:
            self._count_dropped(left)
            log.error("prediction log: %d records were not written before exit", left)

    # -- background side -------------------------------------------------------------------------------

    def _run_sender(self) -> None:
        """Hands what is queued to the writer process, at most one frame per :data:`SEND_INTERVAL_S`."""
        while True:
            with self._cond:
                while not self._stop and not self._items:
                    self._cond.wait()
                stopping = self._stop
            if not stopping:
                time.sleep(SEND_INTERVAL_S)  # gather what arrives meanwhile: one frame, not one per request
            if self._hand_over():
                return

    def _run(self) -> None:
        """Writes in this thread, one file per ``flush_rows`` / ``flush_seconds`` (``writer_process=False``)."""
        last = time.monotonic()
        while True:
            with self._cond:
                while not self._stop and self._queued_rows < self.flush_rows:
                    remaining = self.flush_seconds - (time.monotonic() - last)
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            stopping = self._hand_over()
            last = time.monotonic()
            if stopping:
                return

    def _hand_over(self) -> bool:
        """Takes everything queued and sends it to the writer process (or writes it here); True once stopping."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            n, self._queued_rows = self._queued_rows, 0
            if self.writer_process:
                self._inflight += n  # held until acknowledged (or counted as dropped)
            stopping = self._stop
        if items:
            t0 = time.thread_time()
            try:
                (self._send if self.writer_process else self._write_items)(items, n)
            finally:
                self._sender_cpu += time.thread_time() - t0
        if self._dropped_reported != self.dropped:
            log.warning(
                "prediction log: %d records dropped so far (queue full or write failed)", self.dropped
            )
            self._dropped_reported = self.dropped
        return stopping

    def tables(self, items: list) -> list:
        """The queued items as one Arrow table per prediction schema (see :func:`items_tables`)."""
        return items_tables(items, self.source, self.schema)

    def _write_items(self, items: list, n: int) -> None:
        """Writes in this thread (``writer_process=False``)."""
        try:
            uris = []
            for table in self.tables(items):
                uris += self._predlog.write_table(
                    self.root_uri, self.model_name, self._predlog.PREDICTIONS, table, writer_id=self.server_id
                )
        except Exception as e:  # logging must never take the server down
            self._count_dropped(n)
            self._set_write_error(f"{type(e).__name__}: {e}"[:500])
            log.exception("prediction log: writing %d records failed; dropped", n)
            return
        self._set_write_error(None)
        self._count_written(n, len(uris))

    def _set_write_error(self, error: str | None) -> None:
        """Records that writes fail (``error``) or work again (None), logging each change once."""
        with self._cond:
            was, self.write_error = self.write_error, error
            if error is None:
                self.write_error_since = None
            elif was is None:
                self.write_error_since = time.monotonic()
        if error is not None and was is None:
            log.error("prediction log: writes fail (%s); new requests are refused until one succeeds", error)
        elif error is None and was is not None:
            log.warning("prediction log: writes work again (after: %s)", was)

    def _count_written(self, n: int, files: int) -> None:
        with self._cond:
            self.written += n
            self.files += files
        self._written_counter.inc(n)

    def _count_dropped(self, n: int) -> None:
        with self._cond:
            self.dropped += n
        self._dropped_counter.inc(n)


def default_server_id() -> str:
    """A stable-enough id for file names: the pod / host name and the process id."""
    return f"{socket.gethostname()}-{os.getpid()}"
