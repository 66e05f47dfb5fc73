"""The predictor's gRPC front: Open Inference Protocol v2 ``GRPCInferenceService`` (grpc.aio, kserve's generated
``grpc_predict_v2_pb2``), with the guarantees of the HTTP front (:mod:`serving.http`).

``ServerLive`` / ``ServerReady`` / ``ModelReady`` answer what liveness and readiness answer over HTTP (ready is
false from SIGTERM on); ``ServerMetadata`` / ``ModelMetadata`` give the served version's inputs and outputs;
``ModelInfer`` predicts:

* inputs as typed ``contents`` (``fp32_contents`` for FP32, ``int64_contents`` for INT64, ``bool_contents``
  for BOOL, ``bytes_contents`` (UTF-8) for BYTES), or ``raw_input_contents`` (one entry per input, in order:
  the binary tensor extension's bytes, little-endian, BYTES elements 4-byte length-prefixed). Both go through
  :func:`serving.binary.decode_v2` (the same checks as HTTP JSON / binary bodies: names, datatypes, shapes,
  rows, sizes vs shape, values) straight into the model's column arrays;
* outputs as ``raw_output_contents`` when the inputs came raw (what ``tritonclient.grpc`` sends and reads)
  or the request's ``binary_data_output`` parameter is true, else typed ``contents``; ``outputs`` selects;
* the request id: ``x-request-id`` metadata, else the request's ``id``, else a new one (echoed in the
  response's ``id`` and ``x-request-id`` initial metadata); rows are logged exactly as over HTTP.

Errors, as status codes with the HTTP error text as details and the field in trailing metadata
(``field``): a client mistake is ``INVALID_ARGUMENT`` (never reaches the model); a request past the
admission bound (:func:`serving.admission.shared_admission`: one budget with HTTP) is ``RESOURCE_EXHAUSTED``
and one shed because the prediction log is behind (``--log-when-full shed``) ``UNAVAILABLE``, both with
trailing metadata ``retry-after-ms``; another model's name ``NOT_FOUND``; a message over ``--max-body-bytes``
is refused by gRPC itself (``RESOURCE_EXHAUSTED``).

Shutdown (:class:`GRPCFront`): on SIGTERM readiness turns false at once and requests are still answered
until the HTTP listener closes (``--shutdown-delay``); then the gRPC server stops accepting and in-flight RPCs
get ``--shutdown-timeout`` seconds; the prediction log is flushed after both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid

import numpy as np

from serving import binary
from serving import outputs as task_outputs
from serving import request as schema
from serving.admission import Overloaded, request_counters, shared_admission

log = logging.getLogger("kfloop.serving.grpc")

_CONTENTS = {
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


def _pb():
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    return pb


def _data(t) -> list:
    """The typed ``contents`` of input tensor ``t`` as JSON-like ``data`` (bytes decoded as UTF-8)."""
    name = schema.key_name(t.name) if t.name else "inputs"
    want = _CONTENTS.get(t.datatype)
    for field, _ in t.contents.ListFields():
        if field.name != want:
            raise schema.RequestError(
                f"{name}: contents.{field.name} given for datatype {schema.short(t.datatype)!r}"
                + (f" (it reads contents.{want})" if want else ""),
                field=name,
            )
    if want is None:
        return []  # decode_v2 names the datatype
    values = getattr(t.contents, want)
    if want != "bytes_contents":
        return list(values)
    out = []
    for i, b in enumerate(values):
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise schema.RequestError(
                f"{name}.data[{i}]: not valid UTF-8 (byte {e.start})", field=name
            ) from None
    return out


def _param(p):
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def to_payload(request) -> tuple[dict, memoryview, bool]:
    """``(V2 JSON-like payload, binary part, raw outputs?)`` of a ``ModelInferRequest``: raw inputs become
    binary-extension inputs (``parameters.binary_data_size``), typed contents become ``data``.

    Raises:
        RequestError: raw and typed contents mixed, a raw entry count that is not the input count.
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise schema.RequestError(
            f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs (one per input, in order)",
            field="raw_input_contents",
        )
    inputs = []
    for i, t in enumerate(request.inputs):
        inp = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if raw:
            if t.HasField("contents"):
                name = schema.key_name(t.name) if t.name else "inputs"
                raise schema.RequestError(
                    f"{name}: has both contents and raw_input_contents (one or the other)", field=name
                )
            inp["parameters"] = {"binary_data_size": len(raw[i])}
        else:
            inp["data"] = _data(t)
        inputs.append(inp)
    payload: dict = {"inputs": inputs}
    if request.id:
        payload["id"] = request.id
    raw_out = bool(raw)
    if "binary_data_output" in request.parameters:
        flag = _param(request.parameters["binary_data_output"])
        if type(flag) is not bool:
            raise schema.RequestError(
                "parameters.binary_data_output: expected bool_param true or false", field="parameters"
            )
        raw_out = flag
    if request.outputs:
        payload["outputs"] = [{"name": o.name} for o in request.outputs]
    return payload, memoryview(b"".join(raw)) if raw else memoryview(b""), raw_out


def _decode(model, request, loaded):
    """``(columns, id, raw values, Reply, raw outputs?)`` of a request, by the decoder of ``loaded``."""
    if loaded is None:
        raise schema.RequestError("no model loaded", status=503)
    payload, blob, raw_out = to_payload(request)
    columns, body_id, raw = binary.decode_v2(loaded.decoder, payload, blob, model.config.max_rows)
    names = [o["name"] for o in task_outputs.outputs_metadata(loaded.spec)]
    return columns, body_id, raw, binary.reply_of(payload, names), raw_out


def _tensor(pb, o: dict, raw: bool):
    """``(InferOutputTensor, raw bytes or None)`` of one V2 output."""
    t = pb.ModelInferResponse.InferOutputTensor(name=o["name"], datatype=o["datatype"], shape=o["shape"])
    if raw:
        return t, binary._output_bytes(o)
    dt = o["datatype"]
    if dt == "FP32":
        t.contents.fp32_contents.extend(np.asarray(o["data"], dtype=np.float32).tolist())
    elif dt == "INT64":
        t.contents.int64_contents.extend(np.asarray(o["data"], dtype=np.int64).tolist())
    else:
        t.contents.bytes_contents.extend(str(v).encode("utf-8") for v in o["data"])
    return t, None


def response(pb, name: str, version: str, request_id: str, outs: list[dict], reply, raw_out: bool):
    """The ``ModelInferResponse`` of V2 outputs ``outs`` for what the request asked."""
    if reply is not None and reply.names is not None:
        by_name = {o["name"]: o for o in outs}
        outs = [by_name[n] for n in reply.names]
    resp = pb.ModelInferResponse(model_name=name, model_version=version, id=request_id)
    for o in outs:
        t, blob = _tensor(pb, o, raw_out)
        resp.outputs.append(t)
        if blob is not None:
            resp.raw_output_contents.append(blob)
    return resp


def _status(e: schema.RequestError):
    import grpc

    if e.status == 503:
        return grpc.StatusCode.UNAVAILABLE
    if e.status == 413:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INVALID_ARGUMENT


def servicer_class():
    """The ``GRPCInferenceServiceServicer`` subclass (kserve's generated base class, imported lazily)."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    pb = _pb()

    class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
        """V2 gRPC for one :class:`serving.model.Predictor`, sharing its admission with the HTTP front."""

        def __init__(self, model):
            self.model = model
            self.admission = shared_admission(model)
            self.inline_bytes = model.config.decode_inline_bytes
            self._answered = request_counters()[1]
            self._decoder = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="grpc-decode")

        async def _model(self, name: str, context):
            if name != self.model.name:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"model_name: {schema.short(name)!r} is not served here"
                )

        async def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=self.model.health() is None)

        async def ServerReady(self, request, context):
            return pb.ServerReadyResponse(ready=self.model.readiness_problem() is None)

        async def ModelReady(self, request, context):
            await self._model(request.name, context)
            return pb.ModelReadyResponse(ready=self.model.readiness_problem() is None)

        async def ServerMetadata(self, request, context):
            return pb.ServerMetadataResponse(name="kfloop", extensions=["binary_tensor_data"])

        async def ModelMetadata(self, request, context):
            await self._model(request.name, context)
            meta = self.model.metadata()
            tm = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta.get("versions", []),
                platform=meta.get("platform", ""),
                inputs=[tm(name=i["name"], datatype=i["datatype"], shape=i["shape"]) for i in meta["inputs"]],
                outputs=[
                    tm(name=o["name"], datatype=o["datatype"], shape=o["shape"]) for o in meta["outputs"]
                ],
            )

        async def ModelInfer(self, request, context):
            model = self.model
            if model.loop is None:
                model.loop = asyncio.get_running_loop()
            await self._model(request.model_name, context)
            batcher = model.batcher
            ticket = slot = None
            failure = None
            batcher.receiving += 1
            receiving = True
            try:
                request_id = None
                for k, v in context.invocation_metadata() or ():
                    if k == "x-request-id":
                        request_id = v if isinstance(v, str) else v.decode("latin-1")
                        schema.check_request_id(request_id, "x-request-id")
                nbytes = request.ByteSize()
                ticket = self.admission.enter(nbytes)
                loaded = model.current
                if nbytes > self.inline_bytes:
                    loop = asyncio.get_running_loop()
                    columns, body_id, _, reply, raw_out = await loop.run_in_executor(
                        self._decoder, _decode, model, request, loaded
                    )
                else:
                    columns, body_id, _, reply, raw_out = _decode(model, request, loaded)
                # the log gets the decoded columns (as for HTTP binary inputs), never a copy of the contents
                rows = len(next(iter(columns.values())))
                ticket.settle(nbytes, rows)
                slot = self.admission.reserve_log(rows)
                request_id = request_id or body_id or uuid.uuid4().hex
                batcher.receiving -= 1
                receiving = False
                probs, version = await model.predict_columns(columns, request_id, columns, slot, loaded)
            except schema.RequestError as e:
                failure = (_status(e), e.message, (("field", e.field or ""),))
            except Overloaded as e:
                code = grpc.StatusCode.UNAVAILABLE if e.log_behind else grpc.StatusCode.RESOURCE_EXHAUSTED
                failure = (code, e.message, (("retry-after-ms", str(int(e.retry_after_s * 1000))),))
            except Exception:
                log.exception("prediction failed")
                failure = (grpc.StatusCode.INTERNAL, "internal error while predicting (see server log)", ())
            finally:
                if receiving:
                    batcher.receiving -= 1
                if ticket is not None:
                    ticket.release()
                if slot is not None:
                    slot.release()
            if failure is not None:
                await context.abort(failure[0], failure[1], trailing_metadata=failure[2])
            await context.send_initial_metadata((("x-request-id", request_id), ("x-model-version", version)))
            outs = task_outputs.v2_outputs(loaded.spec, probs)
            resp = response(pb, model.name, version, request_id, outs, reply, raw_out)
            self._answered.inc(len(probs))
            return resp

    return InferenceServicer


class GRPCFront:
    """The gRPC server of a predictor: :meth:`serve` until :meth:`stop` (stop accepting, finish in flight).

    Args:
        model: The :class:`serving.model.Predictor`.
        port: The port (all interfaces).
        max_message_bytes: Largest request message (``--max-body-bytes``); larger: ``RESOURCE_EXHAUSTED``.
        grace_s: Seconds in-flight RPCs get once :meth:`stop` is called.
    """

    def __init__(self, model, port: int, max_message_bytes: int, grace_s: float):
        self.model, self.port, self.max_message_bytes, self.grace_s = model, port, max_message_bytes, grace_s
        self._server = None
        self._stopping = None

    async def serve(self) -> None:
        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

        self._server = aio.server(
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer_class()(self.model), self._server)
        if self._server.add_insecure_port(f"[::]:{self.port}") == 0:
            raise RuntimeError(f"--grpc_port {self.port}: cannot listen (in use?)")
        await self._server.start()
        log.info("gRPC (V2 GRPCInferenceService) on port %d", self.port)
        if self._stopping is not None:  # stopped before it started
            await self._server.stop(self.grace_s)
        await self._server.wait_for_termination()

    async def stop(self) -> None:
        """Stops accepting and waits (at most the grace) for the RPCs in flight; idempotent."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        if self._server is not None:
            log.info("gRPC: no new RPCs; in-flight ones get %.1f s", self.grace_s)
            await self._server.stop(self.grace_s)
