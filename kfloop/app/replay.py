"""Replaying rows of a dataset as live traffic, and the two log formats the loop keeps (contract 4).

Every function takes the dataset spec (:class:`kfloop.spec.DatasetSpec`) explicitly: the model features,
their kinds, the label and the event-time column come from it.

* :func:`replay` sends rows to a running KServe server over HTTP (V1 ``:predict``, one ``X-Request-Id``
  per request); the server scores them and writes the prediction log itself.
* After the predictions, the ground truth that "arrives later" (the spec's label, once it is known) goes
  back to the same server, as the task's label type (binary 0/1, multiclass the class value as the data
  writes it, regression the number), through its feedback endpoint, ``POST /v1/models/<name>:feedback``
  (:mod:`serving.feedback`), keyed by request id and row; the server writes the feedback log.
* :func:`write_feedback` writes feedback directly in the feedback log format of :mod:`kfloop.predlog`
  (``feedback/<model>/date=.../*.parquet``), for tests that build logs without a server.
* :func:`write_prediction_log` writes prediction records directly, in the log format of
  :mod:`kfloop.predlog`. The monitor tests use it to
  build logs without a server; the format is the contract the server's own tests check.

Only the standard library is imported at module level (this module is also used from the serving env);
the log writers import :mod:`kfloop.predlog` (pyarrow) when called.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import json
import math
import time
import urllib.parse
import uuid

from kfloop import clock, contract


class ReplayError(RuntimeError):
    """The server refused or failed a replayed request; the message names the request and the status."""


def _json_value(feature, value):
    """A feature value as JSON: float / int / str, or ``None`` when missing."""
    if value is None:
        return None
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
    except TypeError:
        pass
    if getattr(value, "__class__", None).__name__ in ("NAType", "NaTType"):
        return None
    if feature.kind == "numeric":
        return float(value)
    if feature.kind == "categorical_string":
        return str(value)
    return int(value)


def instances(frame, spec) -> list[dict]:
    """Rows of a Dataset frame as JSON-ready ``{feature: value or None}`` dicts (the spec's model features)."""
    feats = spec.model_features
    cols = {f.name: frame[f.name].tolist() for f in feats}
    return [{f.name: _json_value(f, cols[f.name][i]) for f in feats} for i in range(len(frame))]


def write_prediction_log(
    store_uri: str,
    model_name: str,
    records: list[dict],
    *,
    spec,
    server_id: str = "replay",
) -> list[str]:
    """Writes prediction records as the prediction log (:mod:`kfloop.predlog`), one file per UTC date.

    Args:
        store_uri: Root of the model store (local dir or ``gs://``).
        model_name: Model name (the log's directory).
        spec: The model's dataset spec (the log's feature columns).
        records: Dicts with ``request_id``, ``row``, ``timestamp`` (ISO), ``model_name``, ``model_version``,
            ``features`` and the task's output (``probability``, ``prediction`` or ``probabilities``: see
            :func:`prediction_records`).
        server_id: The writer's id (first part of the file name).

    Returns:
        The URIs written.
    """
    import numpy as np

    from kfloop import predlog

    if not records:
        return []
    ids = np.array([str(r["request_id"]) for r in records], dtype=object)
    table = predlog.prediction_table(
        ids,
        np.array([clock.parse(r["timestamp"]).timestamp() for r in records]),
        np.array([str(r["model_version"]) for r in records], dtype=object),
        predlog.columns_from_instances([r["features"] for r in records], spec),
        [r[contract.output_key(spec)] for r in records],
        source=records[0].get("source", "online"),
        rows=[int(r["row"]) for r in records],
        schema=predlog.prediction_schema(spec),
    )
    return predlog.write_table(store_uri, model_name, predlog.PREDICTIONS, table, writer_id=server_id)


#: The record key (and log column) of the model output per task (contract 4).


def _output_value(spec, p):
    """One row's output as a record holds it: a float, or K floats (multiclass)."""
    if spec.task.value == "multiclass":
        return [float(v) for v in p]
    return float(p)


def prediction_records(
    frame,
    probabilities,
    *,
    spec,
    model_name: str,
    model_version: str,
    start: dt.datetime | None = None,
    step_ms: int = 1,
    request_id: str | None = None,
) -> list[dict]:
    """Contract-4 records for the rows of ``frame`` (one request; timestamps ``start + i*step_ms``).

    ``probabilities`` are the model's outputs per row: binary probabilities, regression predictions,
    multiclass K probabilities in ``spec.classes`` order (the record key is the task's output column).
    """
    start = start or clock.utc_now()
    rid = request_id or str(uuid.uuid4())
    return [
        {
            "request_id": rid,
            "row": i,
            "timestamp": clock.iso(start + dt.timedelta(milliseconds=i * step_ms)),
            "model_name": model_name,
            "model_version": str(model_version),
            "features": inst,
            contract.output_key(spec): _output_value(spec, p),
        }
        for i, (inst, p) in enumerate(zip(instances(frame, spec), probabilities, strict=True))
    ]


def write_feedback(
    store_uri: str,
    model_name: str,
    labels: list[tuple[str, int, int]],
    *,
    when: dt.datetime | None = None,
    source: str = "replay",
    spec=None,
) -> str | None:
    """Writes arrived ground truth: one feedback log file (:data:`kfloop.predlog.FEEDBACK_SCHEMA`).

    Args:
        store_uri: Root of the model store.
        model_name: Model name.
        labels: ``(request_id, row, label)`` triples in the log's form: binary 0 or 1, multiclass the
            class index, regression a finite number. Rows without a known label are skipped by the caller
            (they never "arrive").
        when: Arrival time (default now).
        source: First part of the file name.
        spec: The model's dataset spec (its task; None: binary).

    Returns:
        The URI written, or ``None`` when ``labels`` is empty.

    Raises:
        ValueError: a label is not of the task's type (names the request and row).
    """
    if not labels:
        return None
    from kfloop import predlog

    when = when or clock.utc_now()
    task = spec.task.value if spec is not None else "binary"
    allowed = {"binary": (0, 1), "multiclass": tuple(range(spec.n_classes)) if spec is not None else ()}
    for rid, row, label in labels:
        if task == "regression":
            ok = not isinstance(label, bool) and isinstance(label, int | float) and math.isfinite(label)
            want = "a finite number"
        else:
            ok = not isinstance(label, bool) and isinstance(label, int) and label in allowed[task]
            want = "0 or 1" if task == "binary" else f"a class index in 0..{spec.n_classes - 1}"
        if not ok:
            raise ValueError(f"feedback label for request {rid!r} row {row} must be {want}, got {label!r}")
    cast = float if task == "regression" else int
    kwargs = {"spec": spec} if task != "binary" else {}  # the label's log type per task (kfloop.predlog)
    table = predlog.feedback_table(
        [rid for rid, _, _ in labels],
        [row for _, row, _ in labels],
        [cast(lab) for _, _, lab in labels],
        when.timestamp(),
        **kwargs,
    )
    (uri,) = predlog.write_table(store_uri, model_name, predlog.FEEDBACK, table, writer_id=source)
    return uri


@dataclasses.dataclass
class ReplayResult:
    """What one replay sent and got back."""

    requests: int = 0
    rows: int = 0
    feedback_rows: int = 0
    seconds: float = 0.0
    started_at: str = ""
    ended_at: str = ""
    feedback_requests: int = 0
    model_versions: dict = dataclasses.field(default_factory=dict)
    request_ids: list = dataclasses.field(default_factory=list)
    probabilities: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("request_ids")
        d.pop("probabilities")
        return d


def _post(
    conn: http.client.HTTPConnection, path: str, body: bytes, request_id: str
) -> tuple[int, dict, dict]:
    headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    try:
        data = json.loads(payload) if payload else {}
    except ValueError:
        data = {"raw": payload[:200].decode("utf-8", "replace")}
    return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}


#: Labels per feedback request of the replay (the server's limit is kfloop.config.FeedbackConfig.max_items).
FEEDBACK_BATCH = 1000


def send_feedback(
    conn: http.client.HTTPConnection, model_name: str, labels: list[tuple[str, int, int]], url: str = ""
) -> int:
    """Posts ``(request_id, row, label)`` triples to ``POST /v1/models/<name>:feedback``; returns requests.

    Each label is sent as it is: binary 0/1, a multiclass class value, a regression number.

    Raises:
        ReplayError: the server refused a feedback request (status and its message).
    """
    path = f"/v1/models/{model_name}:feedback"
    sent = 0
    for lo in range(0, len(labels), FEEDBACK_BATCH):
        part = labels[lo : lo + FEEDBACK_BATCH]
        body = json.dumps(
            {"feedback": [{"request_id": r, "row": int(i), "label": y} for r, i, y in part]}
        ).encode()
        rid = f"feedback-{uuid.uuid4().hex[:8]}"
        try:
            status, data, _ = _post(conn, path, body, rid)
        except (OSError, http.client.HTTPException):
            conn.close()
            status, data, _ = _post(conn, path, body, rid)
        if status != 200 or data.get("accepted") != len(part):
            raise ReplayError(f"feedback ({len(part)} labels) to {url}{path}: HTTP {status}: {data}")
        sent += 1
    return sent


def replay(
    frame,
    url: str,
    model_name: str,
    *,
    spec,
    batch_size: int = 64,
    feedback: bool = True,
    request_prefix: str = "replay",
    timeout: float = 30.0,
) -> ReplayResult:
    """Sends the rows of a Dataset frame to a KServe server as V1 ``:predict`` requests.

    Each request carries ``X-Request-Id: <request_prefix>-<n>-<uuid8>``; the server logs every row under
    that id (contract 4). When ``feedback`` is set, the labels of the replayed rows (the spec's label
    column, where known) are then sent to the server's ``:feedback`` endpoint for the same ids and rows, as arrived
    ground truth; the server writes them to the feedback log.

    Args:
        frame: Rows with the spec's ``dataset_columns`` (label optional).
        url: Base URL of the server, e.g. ``http://127.0.0.1:8080``.
        model_name: Model name in the server.
        spec: The dataset spec of the served model.
        batch_size: Rows per request.
        feedback: Send the labels afterwards.
        request_prefix: Prefix of the request ids.
        timeout: Seconds per HTTP request.

    Raises:
        ReplayError: a request failed (status and the server's message).
        ValueError: bad arguments.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise ValueError(f"replay url must be http://host:port, got {url!r}")
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout)
    path = f"/v1/models/{model_name}:predict"
    rows = instances(frame, spec)
    label = spec.label.name
    labels = frame[label].tolist() if label in frame.columns else [None] * len(rows)
    result = ReplayResult(started_at=clock.iso(clock.utc_now()))
    arrived: list[tuple[str, int, int]] = []
    t0 = time.perf_counter()
    try:
        for n, lo in enumerate(range(0, len(rows), batch_size)):
            batch = rows[lo : lo + batch_size]
            rid = f"{request_prefix}-{n:05d}-{uuid.uuid4().hex[:8]}"
            body = json.dumps({"instances": batch}).encode()
            try:
                status, data, headers = _post(conn, path, body, rid)
            except (OSError, http.client.HTTPException):
                conn.close()  # a dropped keep-alive connection: one retry on a fresh one
                status, data, headers = _post(conn, path, body, rid)
            if status != 200:
                raise ReplayError(f"request {rid} ({len(batch)} rows) to {url}{path}: HTTP {status}: {data}")
            preds = data.get("predictions")
            if not isinstance(preds, list) or len(preds) != len(batch):
                raise ReplayError(f"request {rid}: expected {len(batch)} predictions, got {str(data)[:200]}")
            version = headers.get("x-model-version") or str(data.get("model_version", "?"))
            result.model_versions[version] = result.model_versions.get(version, 0) + len(batch)
            result.requests += 1
            result.rows += len(batch)
            result.request_ids.append(rid)
            result.probabilities.extend(_output(p, spec) for p in preds)
            for i in range(len(batch)):
                label = labels[lo + i]
                if label is not None and not _isna(label):
                    arrived.append((rid, i, feedback_label(spec, label)))
        if feedback and arrived:
            result.feedback_requests = send_feedback(conn, model_name, arrived, url)
            result.feedback_rows = len(arrived)
    finally:
        conn.close()
    result.seconds = time.perf_counter() - t0
    result.ended_at = clock.iso(clock.utc_now())
    return result


def _isna(value) -> bool:
    return value is None or value != value or getattr(value, "__class__", None).__name__ == "NAType"


def feedback_label(spec, label):
    """A Dataset-form label as the feedback endpoint takes it: binary 0/1 (int), multiclass the class value
    as the data writes it (``spec.class_name`` of the index), regression the number (float)."""
    task = spec.task.value
    if task == "regression":
        return float(label)
    if task == "multiclass":
        return spec.class_name(int(label))
    return int(label)


def _output(pred, spec=None):
    """The output of one V1 prediction: binary a probability (a number, or a dict with ``probability``),
    regression the number, multiclass the K probabilities in class order (from ``{"class", "probabilities":
    {class: p}}``)."""
    if spec is not None and spec.task.value == "multiclass" and isinstance(pred, dict):
        probs = pred.get("probabilities") or {}
        return [float(probs[str(c)]) for c in spec.classes]
    if isinstance(pred, dict):
        pred = pred.get("probability", pred.get("prediction"))
    if isinstance(pred, list):
        pred = pred[0]
    return float(pred)


def select(
    frame,
    start: str | None = None,
    end: str | None = None,
    *,
    spec,
    sample: int | None = None,
    seed: int = 0,
):
    """Rows of a Dataset frame with event time in ``[start, end)`` (ISO dates / instants, UTC), optionally
    sampled.

    Rows keep their time order (a replay plays the data forward). Without a time column in the spec,
    ``start`` / ``end`` are row positions (``"0"``, ``"1200"``) in the frame's order.
    """
    if spec.event_time is None:
        lo = int(start) if start else 0
        hi = int(end) if end else len(frame)
        out = frame.iloc[lo:hi]
        if sample is not None and sample < len(out):
            out = out.sample(n=sample, random_state=seed).sort_index(kind="stable")
        return out.reset_index(drop=True)
    name = spec.event_time.name
    t = frame[name].astype("int64")
    mask = t == t
    if start:
        mask &= t >= int(clock.parse(start).timestamp())
    if end:
        mask &= t < int(clock.parse(end).timestamp())
    out = frame[mask]
    if sample is not None and sample < len(out):
        out = out.sample(n=sample, random_state=seed).sort_values(name, kind="stable")
    return out.reset_index(drop=True)
