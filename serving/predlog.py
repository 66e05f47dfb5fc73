"""The prediction log (contract 4): bounded queue on the request path, batched JSONL writes in the background.

Layout under the store root::

    predictions/<model_name>/date=YYYY-MM-DD/<server_id>-<first_epoch_ms>-<seq>.jsonl

one JSON object per predicted row: ``request_id``, ``row``, ``timestamp`` (UTC, when predicted),
``model_name``, ``model_version``, ``features`` (raw values, ``null`` = missing) and ``probability``.

:meth:`PredictionLog.submit` never blocks and never raises: when the queue holds ``queue_size`` rows, the
request's records are dropped and counted (``kfloop_prediction_log_dropped_total``).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid

from kfloop import features as F
from kfloop import fs

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


def utc_timestamp(epoch: float) -> str:
    """``2026-11-23T12:00:00.123Z`` for an epoch in seconds."""
    t = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class PredictionLog:
    """Bounded, non-blocking prediction logger with a background flusher thread.

    Args:
        root_uri: Store root (local dir or ``gs://bucket/prefix``); files go under ``predictions/<model>/``.
        model_name: Model name in the log path and records.
        queue_size: Most rows held in memory; beyond it records are dropped and counted.
        flush_rows: Flush when this many rows are queued ...
        flush_seconds: ... or this long after the last flush, whichever comes first.
        server_id: File-name prefix (default: host name + a short random id).
    """

    def __init__(
        self,
        root_uri: str,
        model_name: str,
        queue_size: int,
        flush_rows: int,
        flush_seconds: float,
        server_id: str | None = None,
    ):
        self.root_uri = root_uri
        self.model_name = model_name
        self.queue_size = queue_size
        self.flush_rows = max(1, flush_rows)
        self.flush_seconds = flush_seconds
        self.server_id = server_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}".replace("/", "_")
        self._items: collections.deque = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._stop = False
        self._seq = 0
        self.dropped = 0
        self.written = 0
        self._dropped_reported = 0
        self._dropped_counter, self._written_counter = _metrics()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, request_id: str, epoch: float, version: str, raw, probabilities) -> bool:
        """Queues one request's predictions; returns False (and counts them) when dropped.

        Args:
            request_id: The request id.
            epoch: When predicted (seconds since the epoch).
            version: Model version that predicted.
            raw: V1 rows (list of feature dicts) or V2 columns (``{feature: list}``).
            probabilities: One float per row (a float32 array: logged exactly as the response shows it).
        """
        n = len(probabilities)
        with self._cond:
            if self._stop or self._queued_rows + n > self.queue_size:
                self.dropped += n
                self._dropped_counter.inc(n)
                return False
            self._items.append((request_id, epoch, version, raw, probabilities))
            self._queued_rows += n
            if self._queued_rows >= self.flush_rows:
                self._cond.notify()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stops accepting records and flushes everything queued (clean shutdown)."""
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
                log.warning("prediction log: %d records dropped so far (queue full)", self.dropped)
                self._dropped_reported = self.dropped
            if stopping:
                return

    def _write(self, items: list) -> None:
        import orjson

        by_date: dict[str, list[bytes]] = {}
        first_ms = None
        names = [f.name for f in F.MODEL_FEATURES]
        for request_id, epoch, version, raw, probs in items:
            ts = utc_timestamp(epoch)
            if first_ms is None:
                first_ms = int(epoch * 1000)
            lines = by_date.setdefault(ts[:10], [])
            dumps = orjson.dumps
            # The fields shared by a request's rows are serialised once; per row only features + output.
            head = orjson.dumps(
                {
                    "request_id": request_id,
                    "timestamp": ts,
                    "model_name": self.model_name,
                    "model_version": version,
                }
            )[:-1]
            if isinstance(raw, dict):  # V2 columns
                feats = [
                    dumps(dict(zip(names, t, strict=True)))
                    for t in zip(*(raw[n] for n in names), strict=True)
                ]
            else:
                feats = [dumps(r) for r in raw]
            # One call for all outputs: the same float32 shortest form the response carries.
            outs = dumps(probs, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
            lines.extend(
                [
                    b'%s,"row":%d,"features":%s,"probability":%s}' % (head, i, fb, pb)
                    for i, (fb, pb) in enumerate(zip(feats, outs, strict=True))
                ]
            )
        for date, lines in by_date.items():
            self._seq += 1
            uri = fs.join(
                self.root_uri,
                "predictions",
                self.model_name,
                f"date={date}",
                f"{self.server_id}-{first_ms}-{self._seq:06d}.jsonl",
            )
            try:
                fs.write_bytes(uri, b"\n".join(lines) + b"\n")
                self.written += len(lines)
                self._written_counter.inc(len(lines))
            except Exception:  # logging must never take the server down
                self.dropped += len(lines)
                self._dropped_counter.inc(len(lines))
                log.exception("prediction log: writing %s failed; %d records dropped", uri, len(lines))


def default_server_id() -> str:
    """A stable-enough id for file names: the pod / host name and the process id."""
    return f"{socket.gethostname()}-{os.getpid()}"
