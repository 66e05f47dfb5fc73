"""The prediction log of the server: bounded queue on the request path, Parquet writes in the background.

The format is :mod:`kfloop.predlog` (one row per predicted row, typed columns, missing = null), under the
log root::

    predictions/<model_name>/date=YYYY-MM-DD/<server_id>-<seq>.parquet

The request path only appends a reference to the already-decoded column arrays (the same numpy arrays the
model was fed, so V1 and V2 requests log identical rows) and the probabilities to a queue: one item per model
call (:meth:`PredictionLog.submit_batch`, the micro-batch's concatenated columns and its requests' ids and row
counts), or per request (:meth:`PredictionLog.submit`); neither blocks, copies or raises. When the queue holds
``queue_size`` rows, the request's rows are dropped and counted (``kfloop_prediction_log_dropped_total``).
A background thread turns everything queued into one Arrow table (one ``np.concatenate`` per column, not a
loop over rows), writes it as one zstd-compressed Parquet file per date and publishes it atomically
(:func:`kfloop.predlog.write_table`). ``close()`` (SIGTERM) flushes what is queued.

Loss bound on ``kill -9``: the rows answered since the last published file are lost, i.e. at most
``max(flush_rows, rate * flush_seconds)`` rows plus those of the one flush in progress (the queue caps all
of it at ``queue_size``). Nothing half-written is ever visible: a file appears whole (rename / GCS
``if_generation_match=0``) or not at all; a killed writer leaves at most a dot-prefixed ``.tmp`` file, which
no reader lists. With the defaults (5,000 rows / 2 s) that is at most 2 s of traffic + 5,000 rows.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import uuid

import numpy as np

from kfloop import features as F

log = logging.getLogger("kfloop.serving.predlog")

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


def _columns_of(raw) -> dict:
    """Decoded ``{feature: array}`` columns; V1 instance dicts (old callers, tests) are decoded here."""
    if isinstance(raw, dict):
        return raw
    from kfloop import predlog

    return predlog.columns_from_instances(raw)


class PredictionLog:
    """Bounded, non-blocking prediction logger with a background Parquet writer thread.

    Args:
        root_uri: Log root (local dir or ``gs://bucket/prefix``); files go under ``predictions/<model>/``.
        model_name: Model name in the log path.
        queue_size: Most rows held in memory; beyond it records are dropped and counted.
        flush_rows: Flush when this many rows are queued ...
        flush_seconds: ... or this long after the last flush, whichever comes first.
        server_id: File-name prefix (default: host name + process id + a short random id).
        source: ``"online"`` (the server) or ``"batch"``.
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
    ):
        from kfloop import predlog

        if not (flush_seconds > 0 and flush_seconds < float("inf")):
            raise ValueError(f"flush_seconds must be a positive finite number, got {flush_seconds!r}")
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
        self._cond = threading.Condition()
        self._stop = False
        self.dropped = 0
        self.written = 0
        self.files = 0
        self.cpu_seconds = 0.0  # the writer thread's CPU time (building tables, encoding, publishing)
        self._dropped_reported = 0
        self._dropped_counter, self._written_counter = _metrics()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, request_id: str, epoch: float, version: str, columns, probabilities) -> bool:
        """Queues one request's predictions; returns False (and counts them) when dropped.

        Args:
            request_id: The request id.
            epoch: When predicted (seconds since the epoch).
            version: Model version that predicted.
            columns: The decoded ``{feature: numpy array}`` the model was fed (missing = the sentinels of
                :mod:`kfloop.features`). A list of V1 instance dicts is accepted too (decoded in the
                background thread).
            probabilities: One float per row (float32, exactly as the response shows it).
        """
        return self._enqueue(
            ((request_id,), (len(probabilities),), (epoch,), version, columns, probabilities)
        )

    def submit_batch(self, requests, version: str, columns: dict, probabilities) -> bool:
        """Queues one micro-batch (one model call) of several requests as ONE item; False when dropped.

        The writer then concatenates one array per feature per model call, not per request (less GIL time
        taken from the event loop). Row numbers stay per request (``0 .. n-1`` within each).

        Args:
            requests: ``(request_id, n rows, epoch)`` of each request, in the order of the batch's rows.
            version: Model version that predicted the batch.
            columns: The batch's concatenated ``{feature: numpy array}`` (as the model was fed).
            probabilities: One float per row of the batch.
        """
        ids = tuple(r[0] for r in requests)
        counts = tuple(r[1] for r in requests)
        epochs = tuple(r[2] for r in requests)
        return self._enqueue((ids, counts, epochs, version, columns, probabilities))

    def _enqueue(self, item) -> bool:
        n = len(item[5])
        with self._cond:
            if self._stop or self._queued_rows + n > self.queue_size:
                self.dropped += n
                self._dropped_counter.inc(n)
                return False
            self._items.append(item)
            self._queued_rows += n
            if self._queued_rows >= self.flush_rows:
                self._cond.notify()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stops accepting records and flushes everything queued (clean shutdown, SIGTERM)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- background side -------------------------------------------------------------------------------

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            with self._cond:
                while not self._stop and self._queued_rows < self.flush_rows:
                    remaining = self.flush_seconds - (time.monotonic() - last)
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                items = list(self._items)
                self._items.clear()
                self._queued_rows = 0
                stopping = self._stop
            if items:
                self._write(items)
            last = time.monotonic()
            if self._dropped_reported != self.dropped:
                log.warning(
                    "prediction log: %d records dropped so far (queue full or write failed)", self.dropped
                )
                self._dropped_reported = self.dropped
            if stopping:
                return

    def table(self, items: list):
        """One Arrow table of :data:`kfloop.predlog.PREDICTION_SCHEMA` for the queued items.

        An item is ``(request ids, row counts, epochs, version, columns, probabilities)``: one request
        (:meth:`submit`) or one micro-batch of requests (:meth:`submit_batch`).
        """
        ids_l, counts_l, epochs_l = [], [], []
        for it in items:
            ids_l.extend(it[0])
            counts_l.extend(it[1])
            epochs_l.extend(it[2])
        counts = np.array(counts_l, dtype=np.int64)
        n = int(counts.sum())
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        rows = np.arange(n, dtype=np.int64) - starts
        cols = [_columns_of(it[4]) for it in items]
        merged = {
            f.name: (
                cols[0][f.name] if len(cols) == 1 else np.concatenate([np.asarray(c[f.name]) for c in cols])
            )
            for f in F.MODEL_FEATURES
        }
        probs = np.concatenate([np.asarray(it[5], dtype=np.float32).reshape(-1) for it in items])
        ids = np.repeat(np.array([str(i) for i in ids_l], dtype=object), counts)
        epochs = np.repeat(np.array(epochs_l, dtype=np.float64), counts)
        item_rows = np.fromiter((len(it[5]) for it in items), dtype=np.int64, count=len(items))
        versions = np.repeat(np.array([str(it[3]) for it in items], dtype=object), item_rows)
        return self._predlog.prediction_table(
            ids, epochs, versions, merged, probs, source=self.source, rows=rows
        )

    def _write(self, items: list) -> None:
        t0 = time.thread_time()
        try:
            self._write_items(items)
        finally:
            self.cpu_seconds += time.thread_time() - t0

    def _write_items(self, items: list) -> None:
        n = sum(len(it[5]) for it in items)
        try:
            uris = self._predlog.write_table(
                self.root_uri,
                self.model_name,
                self._predlog.PREDICTIONS,
                self.table(items),
                writer_id=self.server_id,
            )
            self.written += n
            self.files += len(uris)
            self._written_counter.inc(n)
        except Exception:  # logging must never take the server down
            self.dropped += n
            self._dropped_counter.inc(n)
            log.exception("prediction log: writing %d records failed; dropped", n)


def default_server_id() -> str:
    """A stable-enough id for file names: the pod / host name and the process id."""
    return f"{socket.gethostname()}-{os.getpid()}"
