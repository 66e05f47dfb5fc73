"""Backpressure of the predictor's HTTP front (:mod:`serving.http`): bounded admission of rows, requests
and body bytes (:class:`Admission`, one :class:`Ticket` per admitted request), :class:`Overloaded` (503)
when a bound is reached, and the request counters served at ``/metrics``.
"""

from __future__ import annotations

_METRICS = None


def request_counters():
    """``kfloop_requests_shed_total`` (503 from admission control) and ``kfloop_rows_answered_total`` (rows
    answered 200), registered once per process in kserve's default registry, served at /metrics."""
    global _METRICS
    if _METRICS is None:
        from prometheus_client import Counter

        _METRICS = (
            Counter("kfloop_requests_shed", "Requests answered 503 by admission control (overload)"),
            Counter("kfloop_rows_answered", "Rows answered with predictions (HTTP 200)"),
        )
    return _METRICS


class Overloaded(Exception):
    """The request is shed: the server already holds as much work as its admission bounds allow."""

    def __init__(self, message: str, retry_after_s: int, log_behind: bool = False):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.log_behind = log_behind  # shed because of the prediction log (gRPC: UNAVAILABLE), not capacity


def shared_admission(model) -> Admission:
    """The one :class:`Admission` of a predictor, shared by its HTTP and gRPC fronts (one budget), built
    from ``model.config`` on first use (bounded by the prediction log under ``--log-when-full shed``)."""
    admission = getattr(model, "admission", None)
    if admission is None:
        cfg = model.config
        admission = Admission(
            cfg.max_queue_rows,
            cfg.max_queue_requests,
            cfg.max_inflight_bytes,
            cfg.retry_after_s,
            cfg.max_rows,
        )
        if cfg.log_when_full == "shed":
            admission.log = model.prediction_log
        model.admission = admission
    return admission


class Admission:
    """Bounded admission: how much work (rows, requests, body bytes) the server holds at once.

    A request holds a :class:`Ticket` from its headers until its response is sent. Rows are estimated from
    ``Content-Length`` with the bytes per row seen so far, and settled once the body is decoded. A request on
    an otherwise empty server is always admitted, so every request that fits ``--max-rows`` and
    ``--max-body-bytes`` can be served.

    Args:
        max_rows: Most rows held (being decoded, queued for the model, or in the model call).
        max_requests: Most requests held.
        max_bytes: Most request-body bytes held.
        retry_after_s: ``Retry-After`` of a shed request.
        request_rows: Most rows one request may have (``--max-rows``; more get 400): caps the estimate.
    """

    def __init__(
        self,
        max_rows: int,
        max_requests: int,
        max_bytes: int,
        retry_after_s: int = 1,
        request_rows: int | None = None,
    ):
        self.max_rows = max_rows
        self.request_rows = request_rows
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self.rows = 0
        self.requests = 0
        self.bytes = 0
        self.shed = 0
        self._bytes_per_row: float | None = None
        self.log = None  # the PredictionLog whose room bounds admission (--log-when-full shed), or None

    def _estimate(self, nbytes: int) -> int:
        bpr = self._bytes_per_row
        est = 1 if not bpr or nbytes <= 0 else max(1, int(nbytes / bpr))
        return est if self.request_rows is None else min(est, self.request_rows)

    def _shed(self, why: str, log_behind: bool = False) -> Overloaded:
        self.shed += 1
        request_counters()[0].inc()
        return Overloaded(
            f"overloaded: {why}; retry after {self.retry_after_s} s", self.retry_after_s, log_behind
        )

    def _overloaded(self, why: str) -> Overloaded:
        return self._shed(
            f"{why}; the server holds {self.requests} requests / {self.rows} rows "
            f"(bounds --max-queue-requests {self.max_requests}, --max-queue-rows {self.max_rows}, "
            f"--max-inflight-bytes {self.max_bytes})"
        )

    def _log_behind(self) -> Overloaded:
        if self.log.write_error is not None:
            return self._shed(f"the prediction log cannot write ({self.log.write_error})", True)
        return self._shed(
            f"the prediction log is behind ({self.log.held_rows} rows not yet written, bound "
            f"--log-queue-size {self.log.queue_size})",
            True,
        )

    def reserve_log(self, rows: int):
        """The request's room in the prediction log (a ``LogSlot``; None: not bounded by the log), or raises
        :class:`Overloaded` when the log has no room for ``rows`` more."""
        if self.log is None:
            return None
        slot = self.log.reserve(rows)
        if slot is None:
            raise self._log_behind()
        return slot

    def enter(self, nbytes: int) -> Ticket:
        """Admits a request of ``nbytes`` declared body bytes (0 if unknown) or raises :class:`Overloaded`."""
        est = self._estimate(nbytes)
        if self.log is not None and not self.log.accepting(est):
            raise self._log_behind()  # even on an idle server: the log must catch up first
        if self.requests:
            if self.requests >= self.max_requests:
                raise self._overloaded("too many requests in progress")
            if self.bytes + nbytes > self.max_bytes:
                raise self._overloaded("too many request bytes in progress")
            if self.rows + est > self.max_rows:
                raise self._overloaded("too many rows waiting for the model")
        ticket = Ticket(self, nbytes, est)
        self.requests += 1
        self.bytes += nbytes
        self.rows += ticket.rows
        return ticket


class Ticket:
    """One admitted request's share of :class:`Admission` (released exactly once)."""

    __slots__ = ("admission", "nbytes", "open", "rows")

    def __init__(self, admission: Admission, nbytes: int, rows: int):
        self.admission = admission
        self.nbytes = nbytes
        self.rows = rows
        self.open = True

    def settle(self, nbytes: int, rows: int) -> None:
        """The body is decoded: replaces the estimates; sheds the request if it overshoots the row bound."""
        a = self.admission
        a.bytes += nbytes - self.nbytes
        a.rows += rows - self.rows
        self.nbytes, self.rows = nbytes, rows
        sample = nbytes / rows
        a._bytes_per_row = sample if a._bytes_per_row is None else 0.8 * a._bytes_per_row + 0.2 * sample
        if a.requests > 1 and a.rows > a.max_rows:
            raise a._overloaded("too many rows waiting for the model")

    def release(self) -> None:
        if self.open:
            self.open = False
            a = self.admission
            a.requests -= 1
            a.bytes -= self.nbytes
            a.rows -= self.rows
