"""The HTTP front of the predictor: an ASGI layer in front of kserve's FastAPI app.

It answers, for our model, ``POST /v1/models/<name>:predict``, ``POST /v2/models/<name>[/versions/<v>]/infer``
and ``GET /v2/models/<name>`` (with the version being served) itself (and ``POST
/v1/models/<name>:feedback``, ground truth, in :mod:`serving.feedback`): raw body → size limit → JSON →
:mod:`serving.schema` checks → micro-batched model call → orjson response. Everything else (health,
readiness, ``/metrics``, other models) goes to kserve unchanged. Every POST body is size-limited: a
``Content-Length`` over the limit gets 413 before anything is read, and a streamed (chunked) body is cut off
with 413 as soon as it passes the limit.

Client mistakes are 4xx ``{"error": "...", "field": "..."}``, never 5xx.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

import orjson

from serving import schema

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


def parse_json(body: bytes):
    """Parses a JSON body; ``NaN``/``Infinity`` literals are accepted here and judged by the schema."""
    if not body:
        raise schema.RequestError("body: empty (expected a JSON object)", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise schema.RequestError("body: not valid UTF-8", field="body") from None
    except json.JSONDecodeError as e:
        raise schema.RequestError(
            f"body: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})", field="body"
        ) from None


async def _send(send, status: int, payload, headers=(), close: bool = False) -> None:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    hdrs = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *headers]
    if close:
        hdrs.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


class PredictorApp:
    """ASGI app: our fast path for the model's predict / infer / metadata routes, kserve for the rest.

    Args:
        app: The kserve ASGI app (with its middleware stack).
        model: The :class:`serving.model.TaxiModel`.
        max_body_bytes: Body size limit (413 above it).
    """

    def __init__(self, app, model, max_body_bytes: int):
        self.app = app
        self.model = model
        self.max_body_bytes = max_body_bytes
        name = re.escape(model.name)
        self._v1 = f"/v1/models/{model.name}:predict"
        self._feedback = f"/v1/models/{model.name}:feedback"  # serving.feedback (ground truth)
        self._v2 = re.compile(rf"^/v2/models/{name}(?:/versions/[^/]+)?/infer$")
        self._meta = re.compile(rf"^/v2/models/{name}(?:/versions/[^/]+)?/?$")

    async def __call__(self, scope, receive, send):
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
            return await self._limited_passthrough(scope, receive, send)
        if method == "GET" and self._meta.match(path) and self.model.current is not None:
            return await _send(send, 200, self.model.metadata())
        return await self.app(scope, receive, send)

    def _check_length(self, scope) -> None:
        cl = _header(scope, b"content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                raise schema.RequestError("content-length: not a number", field="content-length") from None
            if n > self.max_body_bytes:
                raise _BodyTooLarge(self.max_body_bytes, n)

    async def _limited_passthrough(self, scope, receive, send):
        """Other POSTs (other models, repository API): same body limit, then kserve."""
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

    async def _predict(self, scope, receive, send, v2: bool):
        model = self.model
        batcher = model.batcher
        rid = _header(scope, b"x-request-id")
        request_id = rid.decode("latin-1") if rid else None
        batcher.receiving += 1
        receiving = True
        try:
            ctype = _header(scope, b"content-type")
            if ctype is not None and ctype.split(b";", 1)[0].strip().lower() != b"application/json":
                raise schema.RequestError(
                    f"content-type: {ctype.decode('latin-1')!r} is not supported; send application/json",
                    status=415,
                    field="content-type",
                )
            self._check_length(scope)
            body = await read_body(receive, self.max_body_bytes)
            payload = parse_json(body)
            if v2:
                columns, body_id, raw = schema.decode_v2(payload, model.config.max_rows)
                request_id = request_id or body_id
            else:
                columns = schema.decode_v1(payload, model.config.max_rows)
                raw = payload["instances"]
            request_id = request_id or uuid.uuid4().hex
            batcher.receiving -= 1
            receiving = False
            probs, version = await model.predict_columns(columns, request_id, raw)
        except schema.RequestError as e:
            return await _send(send, e.status, e.body(), close=e.status == 413)
        except _ClientGone:
            return None
        except Exception:
            log.exception("prediction failed")
            return await _send(send, 500, {"error": "internal error while predicting (see server log)"})
        finally:
            if receiving:
                batcher.receiving -= 1
        headers = [(b"x-request-id", request_id.encode("latin-1")), (b"x-model-version", version.encode())]
        if v2:
            out = {
                "model_name": model.name,
                "model_version": version,
                "id": request_id,
                "outputs": [
                    {"name": "probability", "datatype": "FP32", "shape": [len(probs)], "data": probs}
                ],
            }
        else:
            out = {"predictions": probs, "model_version": version}
        return await _send(send, 200, out, headers)


def install(fastapi_app, model, max_body_bytes: int) -> None:
    """Puts :class:`PredictorApp` outermost in front of kserve's FastAPI app (and its middleware).

    kserve adds its middleware and routes when the server starts; Starlette builds the middleware stack on
    the first ASGI call. Wrapping the stack builder keeps our layer outermost whatever kserve adds.
    """
    build = fastapi_app.build_middleware_stack

    def build_with_predictor():
        return PredictorApp(build(), model, max_body_bytes)

    fastapi_app.build_middleware_stack = build_with_predictor
