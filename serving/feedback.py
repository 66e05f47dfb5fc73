"""Ground truth over HTTP: ``POST /v1/models/<name>:feedback`` on the predictor.

Request (JSON, ``Content-Type: application/json``; with tokens configured also
``Authorization: Bearer <labeler token>``, :mod:`serving.feedback_auth`)::

    {"feedback": [{"request_id": "r-0001", "row": 0, "label": 1},
                  {"request_id": "r-0001", "row": 1, "label": 0}]}

``request_id`` is the id of an earlier prediction request (its ``X-Request-Id`` header, the V2 body ``id``
or the id the server answered with in ``X-Request-Id``); ``row`` is the row's index in that request; ``label``
is the ground truth per the served model's task, mapped with :meth:`kfloop.spec.DatasetSpec.label_of`
(:class:`LabelDecoder`): binary the integer ``0`` or ``1``, or a raw value of the label as the dataset spec
declares it (e.g. ``"yes"`` / ``"no"`` for a string label with positive class ``"yes"``); regression a
finite number (label units; written as float64); multiclass one of the spec's classes as the data writes it
(written as its class index, int32). A value of the wrong type, a missing-value token, a value that is the
positive class up to case or spaces (a typo that would silently become 0), (for a derived label) anything
but a class, a regression label that is a string or not finite, or a multiclass label that is no class is
refused with 400 naming ``feedback[i].label``. One request carries at most
:attr:`kfloop.config.FeedbackConfig.max_items` labels.

Answers: ``200 {"accepted": n, "new": k, "repeated": n - k, "requests": r, "max_delay_s": ...}`` once the
labels are in a written file of the feedback log (:func:`kfloop.predlog.write_table`, kind ``feedback``:
request id, row, label, arrival time, prediction time, ``delay_s`` and ``labeler``, the name of the token's
labeler), which the monitor joins to the prediction log. Labels are written in batches
(:class:`LabelBatcher`: one file per ``flush_labels`` labels or ``flush_seconds``); a request waits for the
batch that holds its labels, so a 200 is never given for a label that is then lost. A request with any bad
item is refused whole and nothing of it is written:

* ``401`` without ``Authorization: Bearer ...``, ``403`` for a token that is no labeler's (``field``
  ``authorization``), when tokens are configured;
* ``403`` (``field`` ``path``) on a shadow server: its request ids are copies of the primary's, labels go to
  the primary predictor;
* ``415`` for a body that is not declared ``application/json`` (``field`` ``content-type``);
* ``400`` for a malformed item (``field`` names it, e.g. ``feedback[3].label``), ``404`` for a request id or
  row this server has not predicted (``feedback[i].request_id`` / ``feedback[i].row``);
* ``409`` for a label that contradicts one already accepted for the same request id and row (or another
  item of the same request): the first label stands. An identical repeat is accepted and not written again;
* ``503`` + ``Retry-After`` when more than ``max_pending_labels`` labels would wait to be written, or when
  the log cannot be written (retry).

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
from collections.abc import Sequence

from serving import request as schema
from serving.feedback_auth import Authenticator, Unauthorized
from serving.feedback_labels import LabelDecoder, is_int
from serving.label_batcher import LabelBatch, LabelBatcher, WriteFailed

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


class LabelMemory:
    """The labels this server accepted, ``request_id -> {row: (label, batch)}``, most recent requests kept.

    Bounded by ``capacity`` labels: beyond it the oldest request ids' labels are forgotten whole.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._ids: collections.OrderedDict[str, dict[int, tuple[int, LabelBatch]]] = collections.OrderedDict()
        self.labels = 0
        self.forgotten = 0

    def get(self, request_id: str, row: int) -> tuple[int, LabelBatch] | None:
        rows = self._ids.get(request_id)
        return None if rows is None else rows.get(row)

    def put(self, request_id: str, row: int, label: int, batch: LabelBatch) -> None:
        rows = self._ids.setdefault(request_id, {})
        self._ids.move_to_end(request_id)
        if row not in rows:
            self.labels += 1
        rows[row] = (label, batch)
        while self.labels > self.capacity and len(self._ids) > 1:
            _, old = self._ids.popitem(last=False)
            self.labels -= len(old)
            self.forgotten += len(old)

    def forget(self, keys: Sequence[tuple[str, int]], batch: LabelBatch) -> None:
        """Drops the entries of a batch that was not written (a retry is then a new label again)."""
        for rid, row in keys:
            rows = self._ids.get(rid)
            if rows is not None and row in rows and rows[row][1] is batch:
                del rows[row]
                self.labels -= 1
                if not rows:
                    del self._ids[rid]


def _label_shown(spec):
    """How a log label is named in a message: a multiclass class index as its class, else the value."""
    if spec is None or spec.task.value != "multiclass":
        return str
    return lambda label: repr(spec.class_name(label))


def _json_content_type(scope) -> None:
    from serving import http

    ctype = http._header(scope, b"content-type")
    if ctype is None or ctype.split(b";", 1)[0].strip().lower() != b"application/json":
        got = "none" if ctype is None else schema.short(ctype.decode("latin-1"))
        raise schema.RequestError(
            f"content-type: feedback must be sent as application/json, got {got}",
            status=415,
            field="content-type",
        )


class Feedback:
    """The feedback endpoint of one model: credentials, validation against the recent-id index and the
    accepted labels, then batched writes to the feedback log.

    Args:
        log_uri: Log root (the store root, as the prediction log); files go under ``feedback/<model>/``.
        model_name: Model name.
        cfg: :class:`kfloop.config.FeedbackConfig`.
        auth: The labelers' tokens (None: no credential needed, the local loop's default).
        refuse: Set on a shadow server: every feedback request gets 403 with this message.
    """

    def __init__(
        self, log_uri: str, model_name: str, cfg, auth: Authenticator | None = None, refuse: str | None = None
    ):
        self.log_uri = log_uri
        self.model_name = model_name
        self.cfg = cfg
        self.auth = auth
        self.refuse = refuse
        self.recent = RecentRequests(cfg.index_requests)
        self.memory = LabelMemory(cfg.label_memory)
        self.batcher = LabelBatcher(self._write_columns, cfg)
        self.batcher.on_failure = lambda b: self.memory.forget(b.keys, b)
        self.accepted = 0
        self.rejected = 0
        self.conflicts = 0
        self.repeated = 0
        #: The dataset spec labels are read by (the served model's: the server sets a callable returning the
        #: current version's spec); None: labels are 0 / 1 only.
        self.spec_of = None

    @property
    def max_items(self) -> int:
        return min(self.cfg.max_items, self.cfg.max_pending_labels)

    def seen(self, request_id: str, rows: int, epoch: float) -> None:
        """Called by the prediction path for every predicted request."""
        self.recent.seen(request_id, rows, epoch)

    def parse(self, payload) -> tuple[list[str], list[int], list[int], list[float]]:
        """Validates a feedback body; returns ``(request_ids, rows, labels, prediction epochs)``.

        Raises:
            serving.request.RequestError: 400 / 404 with the offending field.
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
        if len(items) > self.max_items:
            raise schema.RequestError(
                f"feedback: {len(items)} items is over the limit of {self.max_items} per request",
                field="feedback",
            )
        ids, rows, labels, when = [], [], [], []
        label_of = LabelDecoder(self.spec_of() if self.spec_of is not None else None)
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
            if not is_int(row) or row < 0:
                raise schema.RequestError(
                    f"{where}.row: expected an integer >= 0, got {schema._describe(row)}",
                    field=f"{where}.row",
                )
            label = label_of(label, where)
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

    def reconcile(self, ids, rows, labels) -> tuple[list[int], list[LabelBatch]]:
        """Splits validated items into new labels and repeats of accepted ones.

        Returns:
            ``(indices of the new items, batches still being written that hold repeated labels)``.

        Raises:
            serving.request.RequestError: 409 for a label that contradicts an accepted one or another item
                of the same request (``field`` names the item's label).
        """
        new: list[int] = []
        waits: dict[int, LabelBatch] = {}
        first: dict[tuple[str, int], int] = {}
        shown = _label_shown(self.spec_of() if self.spec_of is not None else None)
        for i, (rid, row, label) in enumerate(zip(ids, rows, labels, strict=True)):
            where = f"feedback[{i}].label"
            j = first.get((rid, row))
            if j is not None:
                if labels[j] != label:
                    raise schema.RequestError(
                        f"{where}: request {rid!r} row {row} is labelled {shown(labels[j])} by feedback[{j}] "
                        f"and {shown(label)} here; send one label per row",
                        status=409,
                        field=where,
                    )
                continue
            first[(rid, row)] = i
            known = self.memory.get(rid, row)
            if known is None:
                new.append(i)
                continue
            old, batch = known
            if old != label:
                raise schema.RequestError(
                    f"{where}: request {rid!r} row {row} already has the label {shown(old)}; a contradicting "
                    "label is refused (the first label stands)",
                    status=409,
                    field=where,
                )
            if batch.future is not None and not batch.future.done():
                waits[id(batch)] = batch
        return new, list(waits.values())

    def write(self, ids, rows, labels, when, arrival: float, labeler: str | None = None) -> list[str]:
        """Writes validated labels to the feedback log at once; returns the URIs."""
        n = len(ids)
        return self._write_columns(
            {
                "ids": list(ids),
                "rows": list(rows),
                "labels": list(labels),
                "when": list(when),
                "arrival": [arrival] * n,
                "labeler": [labeler] * n,
            }
        )

    def _write_columns(self, c: dict[str, list]) -> list[str]:
        from kfloop import predlog

        spec = self.spec_of() if self.spec_of is not None else None
        kwargs = {"spec": spec} if spec is not None and spec.task.value != "binary" else {}
        table = predlog.feedback_table(
            c["ids"], c["rows"], c["labels"], c["arrival"], c["when"], labeler=c["labeler"], **kwargs
        )
        return predlog.write_table(self.log_uri, self.model_name, predlog.FEEDBACK, table)

    def close(self) -> int:
        """Writes the labels still pending (at shutdown, after the event loop stopped)."""
        return self.batcher.close()

    async def handle(self, app, scope, receive, send) -> None:
        """Serves one ``POST .../<name>:feedback`` (``app``: the :class:`serving.http.PredictorApp`)."""
        from serving import http

        try:
            if self.refuse:
                raise schema.RequestError(self.refuse, status=403, field="path")
            labeler = self.auth.labeler(http._header(scope, b"authorization")) if self.auth else None
            _json_content_type(scope)
            app._check_length(scope)
            payload = http.parse_json(await http.read_body(receive, app.max_body_bytes))
            ids, rows, labels, when = self.parse(payload)
            new, waits = self.reconcile(ids, rows, labels)
        except Unauthorized as e:
            self.rejected += 1
            extra = [(b"www-authenticate", b'Bearer realm="kfloop-feedback"')] if e.status == 401 else []
            return await http._send(send, e.status, e.body(), extra, close=True)
        except schema.RequestError as e:
            self.rejected += 1
            self.conflicts += e.status == 409
            return await http._send(send, e.status, e.body(), close=e.status == 413)
        except http._ClientGone:
            return None
        if not self.batcher.room(len(new)):
            self.rejected += 1
            bound = self.cfg.max_pending_labels
            return await http._send(
                send,
                503,
                {
                    "error": f"feedback: {self.batcher.pending} labels are waiting to be written and {len(new)} "
                    f"more would pass the bound of {bound} (max_pending_labels); nothing was kept, retry",
                    "field": "feedback",
                },
                [(b"retry-after", str(self.cfg.retry_after_s).encode())],
            )
        arrival = time.time()
        if new:
            batch = self.batcher.add(
                [ids[i] for i in new],
                [rows[i] for i in new],
                [labels[i] for i in new],
                [when[i] for i in new],
                arrival,
                labeler,
                seal_now=bool(getattr(app.model, "draining", False)),
            )
            for i in new:
                self.memory.put(ids[i], rows[i], labels[i], batch)
            waits.append(batch)
        try:
            for b in waits:
                while not b.future.done():  # at shutdown (SIGTERM) the open batch is written at once
                    await asyncio.wait([b.future], timeout=0.1)
                    if getattr(app.model, "draining", False):
                        self.batcher.seal_open()
                b.future.result()
        except WriteFailed:
            self.rejected += 1
            return await http._send(
                send,
                503,
                {"error": "feedback log: write failed; retry (labels already written are not written twice)"},
                [(b"retry-after", str(self.cfg.retry_after_s).encode())],
            )
        self.accepted += len(new)
        self.repeated += len(ids) - len(new)
        out = {
            "accepted": len(ids),
            "new": len(new),
            "repeated": len(ids) - len(new),
            "requests": len(set(ids)),
            "max_delay_s": round(arrival - min(when), 3),
        }
        if labeler is not None:
            out["labeler"] = labeler
        return await http._send(send, 200, out)
