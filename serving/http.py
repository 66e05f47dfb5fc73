"""The HTTP front of the predictor: an ASGI layer in front of kserve's FastAPI app.

It answers, for our model, ``POST /v1/models/<name>:predict``, ``POST /v2/models/<name>[/versions/<v>]/infer``
and ``GET /v2/models/<name>`` (with the version being served) itself (and ``POST /v1/models/<name>:feedback``,
ground truth, in :mod:`serving.feedback`): raw body → size limit → admission →
JSON (V2: or a JSON header and binary tensors, :mod:`serving.binary`) → :mod:`serving.request` checks →
micro-batched model call → orjson response (V2: binary outputs when the request asks). Every POST body is
size-limited: a ``Content-Length`` over the limit gets 413 before anything is read, and a streamed (chunked)
body is cut off with 413 as soon as it passes the limit.

It also answers, without going through kserve's stack (so they stay fast under load):

* liveness ``GET /`` and ``GET /v2/health/live``: 200 while the model can serve, 503 (with the reason) once
  it cannot (no model, unloaded, batcher dead, a model call stuck): the kubelet then restarts the pod;
  A prediction-log writer process that holds rows and says nothing for ``--log-stall-seconds`` (stopped, a
  hung storage call) fails liveness too;
* readiness ``GET /v2/health/ready``, ``GET /v2/models/<name>[/versions/<v>]/ready``, ``GET /v1/models/<name>``:
  200 while live, not shutting down and the prediction log can write; 503 (with the reason) from the moment
  SIGTERM arrives, and while the log's writes fail (full or read-only storage), under either
  ``--log-when-full`` policy.

The control surface is closed on this (public) port: kserve's model repository API (``/v2/repository/...``:
load / unload) answers 403, and ``/openapi.json`` / ``/docs`` / ``/redoc`` answer 404. ``/metrics`` stays
(Prometheus counters and latency histograms only, no request data).

Overload (bounded admission): requests that would push the work held by the server past ``max_queue_rows``
rows, ``max_queue_requests`` requests or ``max_inflight_bytes`` body bytes get ``503 Service Unavailable`` with
``Retry-After`` instead of queueing without bound. 503, not 429: the bound is the server's capacity, not a
per-client quota, and 503 + Retry-After is what load balancers and KServe/Knative clients treat as "try another
replica / later". The check runs on the headers (``Content-Length``): the 503 goes out before the body is read,
and the server (uvicorn) drops the rest of that body as it arrives, so the connection stays usable.

The prediction log is part of that bound (``--log-when-full shed``, the default): a request is admitted only
while the log has room for its rows, and once decoded it reserves that room before the model call
(:meth:`serving.log_queue.PredictionLog.reserve`). When the log's writer falls behind (slow storage, a starved
CPU), clients get 503 + Retry-After instead of answers that are never logged. Once a write fails on storage
(full, read-only, unreachable), new requests are shed the same way until a retried write succeeds; the rows
already answered are kept and retried, not dropped. What can still be lost: rows held when the log's storage
never recovers before exit, or when the whole pod is killed (counted in ``kfloop_prediction_log_dropped_total``).
``--log-when-full drop`` keeps answering and drops (and counts) what does not fit.

Client mistakes are 4xx ``{"error": "...", "field": "..."}``, never 5xx.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import uuid

import orjson

from serving import binary
from serving import outputs as task_outputs
from serving import request as schema
from serving.admission import Admission, Overloaded, request_counters, shared_admission

log = logging.getLogger("kfloop.serving.http")

_JSON_HEADERS = [(b"content-type", b"application/json")]


class _BodyTooLarge(schema.RequestError):
    def __init__(self, limit: int, seen: int | None = None):
        what = f"{seen} bytes" if seen is not None else "the streamed body"
        super().__init__(
            f"body: {what} is over the limit of {limit} bytes (--max-body-bytes)", status=413, field="body"
        )


class _ClientGone(Exception):
    pass


async def read_body(receive, limit: int) -> bytes:
    """Reads the request body, failing with 413 as soon as it passes ``limit`` bytes."""
    chunks = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge(limit)
            chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_strings(obj) -> None:
    """Rejects strings (values or keys) that cannot be UTF-8 encoded: JSON ``\\ud800``-style lone surrogates."""
    stack = [(obj, "body", "body")]
    while stack:
        v, where, field = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise schema.RequestError(
                    f"{where}: string with a lone UTF-16 surrogate escape (not valid Unicode)", field=field
                ) from None
        elif isinstance(v, list):
            stack.extend((x, f"{where}[{i}]", field) for i, x in enumerate(v))
        elif isinstance(v, dict):
            for k, x in v.items():
                name = schema.key_name(k)
                stack.append((k, f"{where} (a key)", field))
                stack.append((x, name if where == "body" else f"{where}.{name}", name))


def parse_json(body: bytes):
    """Parses a JSON body; ``NaN``/``Infinity`` literals are accepted here and judged by the schema.

    orjson parses ordinary bodies; what it refuses (``NaN`` literals, integers past 64 bits, lone surrogate
    escapes, nesting deeper than 1,024) goes through the standard library, whose own limits (recursion,
    4,300-digit integers) are client errors too.
    """
    if not body:
        raise schema.RequestError("body: empty (expected a JSON object)", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise schema.RequestError(f"body: not valid UTF-8 (byte {e.start})", field="body") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise schema.RequestError(
            f"body: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})", field="body"
        ) from None
    except RecursionError:
        raise schema.RequestError("body: JSON nested too deeply", field="body") from None
    except ValueError as e:  # e.g. an integer literal over the interpreter's digit limit
        raise schema.RequestError(
            f"body: unreadable JSON number ({schema.short(str(e))})", field="body"
        ) from None
    _check_strings(obj)
    return obj


def _dumps(payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    try:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    except (TypeError, orjson.JSONEncodeError):  # never fail an answer: ASCII-escaped standard JSON
        return json.dumps(payload, default=str, ensure_ascii=True).encode()


async def _send(send, status: int, payload, headers=(), close: bool = False, ctype=None) -> None:
    body = _dumps(payload)
    hdrs = [*_JSON_HEADERS] if ctype is None else [(b"content-type", ctype)]
    hdrs += [(b"content-length", str(len(body)).encode()), *headers]
    if close:
        hdrs.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


_CLOSED_PREFIXES = ("/v2/repository", "/v1/repository")
_HIDDEN = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class PredictorApp:
    """ASGI app: our fast path for the model's predict / infer / metadata / health routes, kserve for the rest.

    Args:
        app: The kserve ASGI app (with its middleware stack).
        model: The :class:`serving.model.Predictor`.
        max_body_bytes: Body size limit (413 above it).
        admission: Admission bounds (None: a default :class:`Admission` from ``model.config``).
    """

    def __init__(self, app, model, max_body_bytes: int, admission: Admission | None = None):
        self.app = app
        self.model = model
        self.max_body_bytes = max_body_bytes
        cfg = model.config
        self.admission = admission or shared_admission(model)  # one budget with the gRPC front
        self.inline_bytes = cfg.decode_inline_bytes
        # registered up front: /metrics shows 0 before the first request
        self._answered = request_counters()[1]
        self._decoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="decode")
        name = re.escape(model.name)
        self._v1 = f"/v1/models/{model.name}:predict"
        self._feedback = f"/v1/models/{model.name}:feedback"  # serving.feedback (ground truth)
        self._v2 = re.compile(rf"^/v2/models/{name}(?:/versions/[^/]+)?/infer$")
        self._meta = re.compile(rf"^/v2/models/{name}(?:/versions/[^/]+)?/?$")
        self._ready = re.compile(rf"^/v2/models/{name}(?:/versions/[^/]+)?/ready$")
        self._v1_ready = f"/v1/models/{model.name}"

    async def __call__(self, scope, receive, send):
        if self.model.loop is None:
            self.model.loop = asyncio.get_running_loop()
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method = scope["method"]
        path = scope["path"]
        if method == "POST":
            if path == self._feedback and getattr(self.model, "feedback", None) is not None:
                return await self.model.feedback.handle(self, scope, receive, send)
            if path == self._v1:
                return await self._predict(scope, receive, send, v2=False)
            if self._v2.match(path):
                return await self._predict(scope, receive, send, v2=True)
        if path.startswith(_CLOSED_PREFIXES):
            return await _send(
                send,
                403,
                {
                    "error": f"{path}: the model repository API is disabled on this port; versions change "
                    "through the model store's aliases (kfloop deploy / promote / rollback)",
                    "field": "path",
                },
                close=method != "GET",
            )
        if path in _HIDDEN:
            return await _send(send, 404, {"error": f"{path}: not served", "field": "path"})
        if method == "GET":
            if path in ("/", "/v2/health/live"):
                return await self._health(send, live_only=True, v2=path != "/")
            if path == "/v2/health/ready" or path == self._v1_ready or self._ready.match(path):
                return await self._health(send, live_only=False, v2=path == "/v2/health/ready")
            if self._meta.match(path) and self.model.current is not None:
                return await _send(send, 200, self.model.metadata())
        if method == "POST":
            return await self._limited_passthrough(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _health(self, send, live_only: bool, v2: bool):
        if live_only:
            problem = self.model.health()
            if problem is None:
                return await _send(send, 200, {"live": True} if v2 else {"status": "alive"})
            return await _send(send, 503, {"live": False, "error": f"not live: {problem}"})
        problem = self.model.readiness_problem()
        if v2:
            ok = {"ready": True}
        else:
            ok = {"name": self.model.name, "ready": True}
        if problem is None:
            return await _send(send, 200, ok)
        return await _send(send, 503, {**ok, "ready": False, "error": f"not ready: {problem}"})

    def _check_length(self, scope) -> int:
        cl = _header(scope, b"content-length")
        if cl is None:
            return 0
        try:
            n = int(cl)
        except ValueError:
            raise schema.RequestError("content-length: not a number", field="content-length") from None
        if n < 0:
            raise schema.RequestError("content-length: negative", field="content-length")
        if n > self.max_body_bytes:
            raise _BodyTooLarge(self.max_body_bytes, n)
        return n

    async def _limited_passthrough(self, scope, receive, send):
        """Other POSTs (other models, explain): same body limit, then kserve."""
        try:
            self._check_length(scope)
            body = await read_body(receive, self.max_body_bytes)
        except schema.RequestError as e:
            return await _send(send, e.status, e.body(), close=True)
        except _ClientGone:
            return None
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _decode(self, body: bytes, v2: bool, loaded, header: bytes | None = None):
        """Decodes a body with the decoder of ``loaded`` (the version current when the request came):
        ``(columns, id, raw values, the V2 outputs asked for)``. ``header``: a V2 request's
        ``Inference-Header-Content-Length`` (binary tensor data, :mod:`serving.binary`)."""
        json_part, blob = binary.split_body(body, header) if v2 else (body, None)
        try:
            payload = parse_json(json_part)
        except schema.RequestError as e:
            if v2 and header is None and b'"binary_data_size"' in body:  # binary data sent without the header
                raise binary.missing_header(e) from None
            raise
        max_rows = self.model.config.max_rows
        if loaded is None:
            raise schema.RequestError("no model loaded", status=503)
        if v2:
            columns, body_id, raw = binary.decode_v2(loaded.decoder, payload, blob, max_rows)
            names = [o["name"] for o in task_outputs.outputs_metadata(loaded.spec)]
            return columns, body_id, raw, binary.reply_of(payload, names)
        columns = loaded.decoder.decode_v1(payload, max_rows)
        return columns, None, payload["instances"], None

    async def _predict(self, scope, receive, send, v2: bool):
        model = self.model
        batcher = model.batcher
        request_id = None
        ticket = slot = None
        batcher.receiving += 1
        receiving = True
        try:
            rid = _header(scope, b"x-request-id")
            if rid:
                request_id = rid.decode("latin-1")
                schema.check_request_id(request_id, "x-request-id")
            ctype = _header(scope, b"content-type")
            inference_header = _header(scope, binary.HEADER) if v2 else None
            if ctype is not None and not binary.content_type_ok(ctype, inference_header is not None):
                raise schema.RequestError(
                    f"content-type: {schema.short(ctype.decode('latin-1'))} is not supported; send "
                    f"application/json{' or application/octet-stream' if inference_header else ''}",
                    status=415,
                    field="content-type",
                )
            declared = self._check_length(scope)
            ticket = self.admission.enter(declared)  # Overloaded: answered before the body is read
            body = await read_body(receive, self.max_body_bytes)
            loaded = model.current  # decoder and model of one version (a hot reload swaps both at once)
            if len(body) > self.inline_bytes:  # keep the event loop free for health checks and small requests
                loop = asyncio.get_running_loop()
                columns, body_id, raw, reply = await loop.run_in_executor(
                    self._decoder, self._decode, body, v2, loaded, inference_header
                )
            else:
                columns, body_id, raw, reply = self._decode(body, v2, loaded, inference_header)
            rows = len(next(iter(columns.values())))
            ticket.settle(len(body), rows)
            slot = self.admission.reserve_log(rows)
            request_id = request_id or body_id or uuid.uuid4().hex
            batcher.receiving -= 1
            receiving = False
            probs, version = await model.predict_columns(columns, request_id, raw, slot, loaded)
        except schema.RequestError as e:
            return await _send(send, e.status, e.body(), close=e.status == 413)
        except Overloaded as e:
            retry = str(e.retry_after_s).encode()
            return await _send(send, 503, {"error": e.message}, [(b"retry-after", retry)])
        except _ClientGone:
            return None
        except Exception:
            log.exception("prediction failed")
            return await _send(send, 500, {"error": "internal error while predicting (see server log)"})
        finally:
            if receiving:
                batcher.receiving -= 1
            if ticket is not None:
                ticket.release()
            if slot is not None:
                slot.release()  # no-op once the batcher has logged the rows
        headers = [(b"x-request-id", request_id.encode("latin-1")), (b"x-model-version", version.encode())]
        # The outputs per the task of the spec that decoded the request (the version answering has it).
        ctype = None
        if v2:
            out = {
                "model_name": model.name,
                "model_version": version,
                "id": request_id,
                "outputs": task_outputs.v2_outputs(loaded.spec, probs),
            }
            out, ctype, extra = binary.response(out, reply)  # binary outputs when the request asks
            headers += extra
        else:
            out = {"predictions": task_outputs.v1_predictions(loaded.spec, probs), "model_version": version}
        await _send(send, 200, out, headers, ctype=ctype)
        self._answered.inc(len(probs))


def install(fastapi_app, model, max_body_bytes: int) -> None:
    """Puts :class:`PredictorApp` outermost in front of kserve's FastAPI app (and its middleware).

    kserve adds its middleware and routes when the server starts; Starlette builds the middleware stack on
    the first ASGI call. Wrapping the stack builder keeps our layer outermost whatever kserve adds.
    """
    build = fastapi_app.build_middleware_stack

    def build_with_predictor():
        return PredictorApp(build(), model, max_body_bytes)

    fastapi_app.build_middleware_stack = build_with_predictor
