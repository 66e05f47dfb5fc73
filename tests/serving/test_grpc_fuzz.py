"""Lying and truncated ``ModelInfer`` requests (hypothesis) against a live predictor, over a real gRPC channel.

Each generated request is a valid one (typed ``contents`` or ``raw_input_contents``, inputs in random order,
1..``--max-rows`` rows) with at least one mutation that makes it wrong: a raw entry whose size is not shape x
element size, a BYTES length prefix past the entry's end, another datatype or shape than the spec's, typed
contents next to raw ones, a contents field of another datatype, a value too few, an input missing,
duplicated or unknown, too many raw entries or too few, rows over ``--max-rows``, NaN / infinity in a
non-nullable feature, a bad request id (message or ``x-request-id``), entries big enough to be decoded in a
thread, and now and then a message over ``--max-body-bytes``. Every answer must be
``INVALID_ARGUMENT`` naming one of the inputs it broke (trailing metadata ``field``, also in the details),
or ``RESOURCE_EXHAUSTED`` for the oversize message; never ``INTERNAL`` / ``UNKNOWN``; the model is never
reached (``kfloop_rows_answered_total`` unchanged) and a valid request afterwards is answered.

One server for the module; kserve's generated stubs in this process (``tritonclient.grpc`` would clash with
their protobuf names, see :mod:`tests.serving.test_grpc`). ``make test`` runs 400 derandomized cases (~12 s);
``pytest -m fuzz tests/serving/test_grpc_fuzz.py`` 10,000 with fresh seeds.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from kfloop.spec import Kind
from tests.serving.conftest import MODEL, make_store
from tests.serving.test_binary_props import _encode, _value_strategy
from tests.serving.test_fuzz import CI, FUZZ, TAXI

pytestmark = pytest.mark.serving

hypothesis = pytest.importorskip("hypothesis")
httpx = pytest.importorskip("httpx")
grpc = pytest.importorskip("grpc")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.serving.test_binary import _rows_answered  # noqa: E402
from tests.serving.test_grpc import grpc_server  # noqa: E402

MAX_ROWS = 8
MAX_BODY = 400_000
#: Names the server knows nothing of (case, spaces, a neighbour's name).
UNKNOWN = ["nope", "x", "Inputs", *(f"{f.name} " for f in TAXI.model_features[:1])]
UNKNOWN += [f.name.upper() for f in TAXI.model_features[:1]]
#: Datatypes a wrong input may claim.
DATATYPES = ["FP32", "INT64", "BYTES", "BOOL", "FP64", "INT32", "UINT8", "", "fp32", "STRING"]
_CONTENTS = {"FP32": "fp32_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}
STRICT_FLOATS = [f.name for f in TAXI.model_features if f.v2_datatype == "FP32" and not f.nullable]


def _pb():
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    return pb, pb_grpc


class Case:
    """A request under construction: ``inputs`` ``[name, datatype, shape, values, feature datatype]``, raw or
    typed, and the fields an error may name (every mutation adds the ones it broke)."""

    def __init__(self, inputs: list[list], raw: bool):
        self.inputs, self.raw = inputs, raw
        self.raws = [_encode(x[4], x[3]) for x in inputs] if raw else []
        self.typed_extra: list[tuple[list, str, object]] = []  # (input, contents field, value) appended
        self.fields: set[str] = set()
        self.oversize = False
        self.what: list[str] = []
        self.request_id = ""  # the message's id
        self.metadata: list[tuple[str, str]] = []

    def aligned(self) -> bool:
        """Raw entries still one per input (the raw-entry mutations need to know which is whose)."""
        return not self.raw or len(self.raws) == len(self.inputs)

    def message(self):
        pb, _ = _pb()
        req = pb.ModelInferRequest(model_name=MODEL, id=self.request_id)
        for i, (name, dt, shape, values, feature_dt) in enumerate(self.inputs):
            t = req.inputs.add(name=name, datatype=dt, shape=shape)
            if not self.raw:
                box = getattr(t.contents, _CONTENTS[feature_dt])
                if feature_dt == "BYTES":
                    box.extend(str(v).encode("utf-8") for v in values)
                else:
                    box.extend(values)
            for inp, field, value in self.typed_extra:
                if inp is self.inputs[i]:
                    getattr(t.contents, field).append(value)
        req.raw_input_contents.extend(self.raws)
        return req


def _inputs(draw, n: int) -> list[list]:
    out = []
    for f in draw(st.permutations(TAXI.model_features)):
        values = ([draw(_value_strategy(f)) for _ in range(min(n, 2))] * n)[:n]
        out.append([f.name, f.v2_datatype, [n, 1] if draw(st.booleans()) else [n], values, f.v2_datatype])
    return out


LIES = ["datatype", "shape", "unknown", "missing", "duplicate", "rows", "nonfinite", "raw size",
        "raw prefix", "raw count", "mixed", "oversize", "big", "wrong contents", "too few", "id"]  # fmt: skip
#: The lies that need raw entries one per input, and those that need typed contents.
RAW_LIES = {"raw size", "raw prefix", "raw count", "mixed", "oversize", "big"}
TYPED_LIES = {"wrong contents", "too few"}


@st.composite
def bad_requests(draw) -> Case:
    n = draw(st.integers(1, MAX_ROWS))
    case = Case(_inputs(draw, n), raw=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        lie = draw(st.sampled_from(LIES))
        if (lie in RAW_LIES and not case.raw) or (lie in TYPED_LIES and case.raw) or not case.aligned():
            continue
        if _mutate(draw, case, lie, n):
            case.what.append(lie)
        if case.oversize:
            break  # a later lie could drop the big entry
    if not case.fields and not case.oversize:  # no lie applied: a wrong datatype, always one
        _mutate(draw, case, "datatype", n)
        case.what.append("datatype")
    return case


def _mutate(draw, case: Case, lie: str, n: int) -> bool:
    """Applies ``lie`` to ``case``; False where it does not apply to this request."""
    inputs = case.inputs
    if not inputs:
        return False
    i = draw(st.integers(0, len(inputs) - 1))
    name, dt, values = inputs[i][0], inputs[i][4], inputs[i][3]
    if lie == "datatype":
        inputs[i][1] = draw(st.sampled_from([d for d in DATATYPES if d != dt]))
        case.fields.add(name)
    elif lie == "shape":
        inputs[i][2] = draw(st.sampled_from([[n + 1], [n, 2], [n, 1, 1], [0], [-1], [max(n - 1, 0)]]))
        case.fields.update(x[0] for x in inputs)  # it, or one whose row count now disagrees with it
        case.fields.add("inputs")
    elif lie == "unknown":
        inputs[i][0] = draw(st.sampled_from(UNKNOWN))
        case.fields.update({inputs[i][0], name, "inputs"})
    elif lie == "missing":  # every input of that name (a duplicate of it would put it back)
        keep = [k for k, x in enumerate(inputs) if x[0] != name]
        if case.raw:
            case.raws[:] = [case.raws[k] for k in keep]
        inputs[:] = [inputs[k] for k in keep]
        case.fields.update({name, "inputs"})
    elif lie == "duplicate":
        inputs.append([name, inputs[i][1], list(inputs[i][2]), list(values), dt])
        if case.raw:
            case.raws.append(case.raws[i])
        case.fields.update({name, "inputs"})
    elif lie == "rows":  # every input claims MAX_ROWS + 1 rows, and carries them
        for x in inputs:
            x[2], x[3] = [MAX_ROWS + 1], (x[3] * (MAX_ROWS + 1))[: MAX_ROWS + 1]
        if case.raw:
            case.raws = [_encode(x[4], x[3]) for x in inputs]
        case.fields.update(x[0] for x in inputs)
        case.fields.add("inputs")
    elif lie == "nonfinite":
        k = next((k for k, x in enumerate(inputs) if x[0] in STRICT_FLOATS and x[1] == "FP32"), None)
        if k is None or not inputs[k][3]:
            return False
        value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        row = draw(st.integers(0, len(inputs[k][3]) - 1))
        inputs[k][3][row] = value
        if case.raw and len(case.raws[k]) == 4 * len(inputs[k][3]):
            raw = bytearray(case.raws[k])
            raw[4 * row : 4 * row + 4] = struct.pack("<f", value)
            case.raws[k] = bytes(raw)
        case.fields.add(inputs[k][0])
    elif lie == "raw size":
        raw = case.raws[i]
        if raw and draw(st.booleans()):
            case.raws[i] = raw[: draw(st.integers(0, len(raw) - 1))]
        else:
            case.raws[i] = raw + draw(st.binary(min_size=1, max_size=9))
        case.fields.add(name)
    elif lie == "raw prefix":
        strings = [k for k, x in enumerate(inputs) if x[4] == "BYTES" and len(case.raws[k]) >= 4]
        if not strings:
            return False
        k = draw(st.sampled_from(strings))
        rest = len(case.raws[k]) - 4
        lie_size = draw(st.sampled_from([rest + 1, rest + 1000, 2**31, 2**32 - 1]))
        case.raws[k] = struct.pack("<I", lie_size) + case.raws[k][4:]
        case.fields.add(inputs[k][0])
    elif lie == "raw count":
        if draw(st.booleans()):
            case.raws.pop()
        else:
            case.raws.append(draw(st.binary(max_size=8)))
        case.fields.add("raw_input_contents")
    elif lie == "mixed":
        case.typed_extra.append((inputs[i], _CONTENTS[dt], b"1" if dt == "BYTES" else 1))
        case.fields.add(name)
    elif lie == "oversize":  # refused by gRPC itself (--max-body-bytes), whatever else is wrong
        if draw(st.integers(0, 3)):
            return False  # rarely: 400 kB each
        case.raws[i] = case.raws[i] + b"\0" * (MAX_BODY + 1)
        case.oversize = True
    elif lie == "big":  # under --max-body-bytes, over --decode-inline-bytes: decoded in a thread
        case.raws[i] = case.raws[i] + b"\1" * draw(st.sampled_from([40_000, 150_000, 300_000]))
        case.fields.add(name)
    elif lie == "id":  # the request id, in the message or the x-request-id metadata
        bad = draw(st.sampled_from(["x" * 300, "é", "a\nb", "tab\there"]))
        if draw(st.booleans()) and bad.isascii() and bad.isprintable():
            case.metadata = [("x-request-id", bad)]
            case.fields.add("x-request-id")
        else:
            case.request_id = bad
            case.fields.add("id")
    elif lie == "wrong contents":
        others = ["int_contents", "uint_contents", "fp64_contents", "bool_contents"]
        others += [c for d, c in _CONTENTS.items() if d != dt]
        field = draw(st.sampled_from(others))
        value = {"bool_contents": True, "bytes_contents": b"1", "fp32_contents": 1.0, "fp64_contents": 1.0}
        case.typed_extra.append((inputs[i], field, value.get(field, 1)))
        case.fields.add(name)
    elif lie == "too few":
        inputs[i][3] = values[:-1]
        case.fields.add(name)
    return True


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_model_dirs):
    tmp = tmp_path_factory.mktemp("grpc-fuzz")
    root = make_store(tmp / "store", demo_model_dirs)
    srv = grpc_server(tmp, root, "--max-rows", str(MAX_ROWS), "--max-body-bytes", str(MAX_BODY))
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def stub(server):
    _, pb_grpc = _pb()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.grpc_port}", options=[("grpc.max_send_message_length", -1)]
    )
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def check(stub, case: Case) -> None:
    req = case.message()
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req, metadata=case.metadata, timeout=30)
    err = e.value
    code, details = err.code(), err.details() or ""
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (case.what, code, details)
    if case.oversize or req.ByteSize() > MAX_BODY:  # refused by gRPC itself, before the servicer (no field)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (case.what, code, details)
        return
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (case.what, code, details)
    field = dict(err.trailing_metadata() or ()).get("field")
    assert field in case.fields, (case.what, field, details)
    assert field in details, (case.what, field, details)


def lie_and_check(server, stub, examples: int, **kw) -> None:
    """``examples`` generated lies, each checked; then: no row answered, a valid request answered."""
    pb, _ = _pb()
    before = _rows_answered(httpx, server.url)
    seen: set[str] = set()

    @settings(max_examples=examples, **kw)
    @given(case=bad_requests())
    def run(case):
        check(stub, case)
        seen.update(case.what)

    run()
    assert _rows_answered(httpx, server.url) == before  # nothing reached the model
    assert len(seen) >= len(LIES) - 2, set(LIES) - seen  # the generator reached (nearly) every kind of lie
    # ... and the server still answers a valid request, raw and typed
    for raw in (True, False):
        inputs = [[f.name, f.v2_datatype, [2], _valid_pair(f), f.v2_datatype] for f in TAXI.model_features]
        resp = stub.ModelInfer(Case(inputs, raw).message(), timeout=30)
        probs = (
            np.frombuffer(resp.raw_output_contents[0], "<f4")
            if raw
            else np.asarray(resp.outputs[0].contents.fp32_contents, np.float32)
        )
        assert probs.shape == (2,) and np.all((probs >= 0) & (probs <= 1)), probs
    assert _rows_answered(httpx, server.url) == before + 4
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready


def test_lying_and_truncated_requests_are_invalid_argument_naming_the_input_and_never_reach_the_model(
    server, stub
):
    lie_and_check(server, stub, 400, **CI)


@pytest.mark.fuzz
def test_grpc_lies_fuzz(server, stub):
    lie_and_check(server, stub, 10_000, **FUZZ)


def _valid_pair(f) -> list:
    if f.v2_datatype == "FP32":
        return [1.5, 0.0]
    if f.v2_datatype == "INT64":
        return [3, 0] if f.kind == Kind.CATEGORICAL_INT else [1, 2]
    return ["Cash", ""]
