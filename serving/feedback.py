"""Ground truth over HTTP: ``POST /v1/models/<name>:feedback`` on the predictor.

Request (JSON)::

    {"feedback": [{"request_id": "r-0001", "row": 0, "label": 1},
                  {"request_id": "r-0001", "row": 1, "label": 0}]}

``request_id`` is the id of an earlier prediction request (its ``X-Request-Id`` header, the V2 body ``id``
or the id the server answered with in ``X-Request-Id``); ``row`` is the row's index in that request; ``label``
is the ground truth, the integer ``0`` or ``1``. One request carries at most
:attr:`kfloop.config.FeedbackConfig.max_items` labels.

Answers: ``200 {"accepted": n, "requests": k, "max_delay_s": ...}`` once the labels are in the feedback log
(:func:`kfloop.predlog.write_table`, kind ``feedback``: request id, row, label, arrival time, prediction time
and ``delay_s``, the label's arrival delay), which the monitor joins to the prediction log. A request with
any bad item is refused whole and nothing is written: ``400`` for a malformed item (``field`` names it,
e.g. ``feedback[3].label``), ``404`` for a request id or row this server has not predicted (``field``
``feedback[i].request_id`` / ``feedback[i].row``), ``503`` when the log cannot be written (retry).

Which ids are known: the prediction path feeds a bounded index of the most recent
:attr:`~kfloop.config.FeedbackConfig.index_requests` request ids (with their row count and prediction
time), in this server process. Feedback for an id older than that (evicted), for a request served by
another replica or before a restart, or for a batch prediction job gets 404 naming ``request_id``; such
labels are written to the feedback log directly (``kfloop.predlog.feedback_table`` + ``write_table``),
which the monitor joins the same way.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time

from serving import schema

log = logging.getLogger("kfloop.serving.feedback")


class RecentRequests:
    """Bounded index ``request_id -> (rows, prediction epoch)`` of the most recent requests.

    Fed by the prediction path (:meth:`seen`, O(1)); the oldest id is evicted beyond ``capacity``.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._ids: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def seen(self, request_id: str, rows: int, epoch: float) -> None:
        """Records one predicted request (a repeated id points at its latest prediction)."""
        with self._lock:
            self._ids[request_id] = (rows, epoch)
            self._ids.move_to_end(request_id)
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
                self.evicted += 1

    def get(self, request_id: str) -> tuple[int, float] | None:
        """``(rows, prediction epoch)`` of a known id, else None."""
        with self._lock:
            return self._ids.get(request_id)

    def __len__(self) -> int:
        return len(self._ids)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Feedback:
    """The feedback endpoint of one model: validation against the recent-id index, then the feedback log.

    Args:
        log_uri: Log root (the store root, as the prediction log); files go under ``feedback/<model>/``.
        model_name: Model name.
        cfg: :class:`kfloop.config.FeedbackConfig`.
    """

    def __init__(self, log_uri: str, model_name: str, cfg):
        self.log_uri = log_uri
        self.model_name = model_name
        self.cfg = cfg
        self.recent = RecentRequests(cfg.index_requests)
        self.accepted = 0
        self.rejected = 0

    def seen(self, request_id: str, rows: int, epoch: float) -> None:
        """Called by the prediction path for every predicted request."""
        self.recent.seen(request_id, rows, epoch)

    def parse(self, payload) -> tuple[list[str], list[int], list[int], list[float]]:
        """Validates a feedback body; returns ``(request_ids, rows, labels, prediction epochs)``.

        Raises:
            serving.schema.RequestError: 400 / 404 with the offending field.
        """
        if not isinstance(payload, dict):
            raise schema.RequestError("body: expected a JSON object with 'feedback'", field="body")
        unknown = sorted(set(payload) - {"feedback"})
        if unknown:
            raise schema.RequestError(
                f"{unknown[0]}: unknown key (expected only 'feedback')", field=unknown[0]
            )
        items = payload.get("feedback")
        if not isinstance(items, list) or not items:
            raise schema.RequestError(
                "feedback: expected a non-empty list of {request_id, row, label}", field="feedback"
            )
        if len(items) > self.cfg.max_items:
            raise schema.RequestError(
                f"feedback: {len(items)} items is over the limit of {self.cfg.max_items} per request",
                field="feedback",
            )
        ids, rows, labels, when = [], [], [], []
        for i, item in enumerate(items):
            where = f"feedback[{i}]"
            if not isinstance(item, dict):
                raise schema.RequestError(f"{where}: expected an object", field=where)
            extra = sorted(set(item) - {"request_id", "row", "label"})
            if extra:
                raise schema.RequestError(f"{where}.{extra[0]}: unknown key", field=f"{where}.{extra[0]}")
            rid, row, label = item.get("request_id"), item.get("row"), item.get("label")
            if not isinstance(rid, str) or not rid:
                raise schema.RequestError(
                    f"{where}.request_id: expected a non-empty string, got {schema._describe(rid)}",
                    field=f"{where}.request_id",
                )
            if not _is_int(row) or row < 0:
                raise schema.RequestError(
                    f"{where}.row: expected an integer >= 0, got {schema._describe(row)}",
                    field=f"{where}.row",
                )
            if not _is_int(label) or label not in (0, 1):
                raise schema.RequestError(
                    f"{where}.label: expected the integer 0 or 1, got {schema._describe(label)}",
                    field=f"{where}.label",
                )
            known = self.recent.get(rid)
            if known is None:
                raise schema.RequestError(
                    f"{where}.request_id: {rid!r} is not among the last {self.recent.capacity} requests this "
                    "server predicted (older, another replica's or a batch job's labels go to the feedback "
                    "log directly)",
                    status=404,
                    field=f"{where}.request_id",
                )
            n, epoch = known
            if row >= n:
                raise schema.RequestError(
                    f"{where}.row: request {rid!r} had {n} row(s), there is no row {row}",
                    status=404,
                    field=f"{where}.row",
                )
            ids.append(rid)
            rows.append(row)
            labels.append(label)
            when.append(epoch)
        return ids, rows, labels, when

    def write(self, ids, rows, labels, when, arrival: float) -> list[str]:
        """Writes validated labels to the feedback log; returns the URIs."""
        from kfloop import predlog

        table = predlog.feedback_table(ids, rows, labels, arrival, when)
        return predlog.write_table(self.log_uri, self.model_name, predlog.FEEDBACK, table)

    async def handle(self, app, scope, receive, send) -> None:
        """Serves one ``POST .../<name>:feedback`` (``app``: the :class:`serving.http.PredictorApp`)."""
        from serving import http

        try:
            app._check_length(scope)
            payload = http.parse_json(await http.read_body(receive, app.max_body_bytes))
            ids, rows, labels, when = self.parse(payload)
        except schema.RequestError as e:
            self.rejected += 1
            return await http._send(send, e.status, e.body(), close=e.status == 413)
        except http._ClientGone:
            return None
        arrival = time.time()
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self.write, ids, rows, labels, when, arrival
            )
        except Exception:
            log.exception("feedback: writing %d labels failed", len(ids))
            self.rejected += 1
            return await http._send(
                send, 503, {"error": "feedback log: write failed, nothing was written; retry"}
            )
        self.accepted += len(ids)
        out = {
            "accepted": len(ids),
            "requests": len(set(ids)),
            "max_delay_s": round(arrival - min(when), 3),
        }
        return await http._send(send, 200, out)
