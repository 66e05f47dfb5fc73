"""Property-based tests (hypothesis) of gRPC ``ModelInferRequest`` decoding (:mod:`serving.grpc_v2`).

Generated requests with ``raw_input_contents`` (inputs in random order, row counts around ``--max-rows``),
then mutated: an entry cut short, extended or dropped, overwritten bytes (NaN / infinity too), a lying BYTES
length prefix, another datatype or shape, typed ``contents`` next to the raw ones. The oracle is the binary
extension's independent ``struct`` reading of :mod:`tests.serving.test_binary_props`: a request it accepts
must decode to its columns; one it refuses must be a client error naming a field (gRPC
``INVALID_ARGUMENT``), never anything else. In process: kserve's generated messages, no server.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from tests.serving.test_binary_props import _DTYPES, DECODER, _binary_values, _encode, _value_strategy
from tests.serving.test_fuzz import CI, FEATURES, FUZZ, MAX_ROWS, TAXI, Invalid, _value, assert_decoded_as

pytestmark = pytest.mark.serving

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def reference(inputs: list[tuple[str, str, list]], raws: list[bytes]) -> dict[str, np.ndarray]:
    """The columns of a valid raw request; :class:`Invalid` for one the protocol refuses."""
    if len(raws) != len(inputs):
        raise Invalid("raw_input_contents")
    columns, n_rows = {}, None
    for (name, datatype, shape), raw in zip(inputs, raws, strict=True):
        f = FEATURES[name]
        if datatype != f.v2_datatype or not 1 <= len(shape) <= 2 or shape[1:] not in ([], [1]):
            raise Invalid(name)
        if shape[0] < 0:
            raise Invalid(name)
        n_rows = shape[0] if n_rows is None else n_rows
        if shape[0] != n_rows or not 1 <= n_rows <= MAX_ROWS:
            raise Invalid(name)
        values = _binary_values(f, datatype, raw, n_rows)
        columns[name] = np.array([_value(f, v) for v in values], dtype=_DTYPES[f.dtype])
    return columns


@st.composite
def raw_requests(draw):
    """``(inputs [(name, datatype, shape)], raw entries, typed contents added?)``."""
    n = draw(st.sampled_from([1, 1, 2, 3, MAX_ROWS, MAX_ROWS + 1]))
    inputs, raws = [], []
    for f in draw(st.permutations(TAXI.model_features)):
        values = ([draw(_value_strategy(f)) for _ in range(min(n, 3))] * n)[:n]
        inputs.append([f.name, f.v2_datatype, [n, 1] if draw(st.booleans()) else [n]])
        raws.append(_encode(f.v2_datatype, values))
    typed = False
    for _ in range(draw(st.integers(0, 2))):
        m = draw(st.integers(0, 8))
        i = draw(st.integers(0, len(raws) - 1))
        if m == 0:
            raws[i] = raws[i][: draw(st.integers(0, max(0, len(raws[i]) - 1)))]
        elif m == 1:
            raws[i] += draw(st.binary(min_size=1, max_size=9))
        elif m == 2:
            del raws[i]
        elif m == 3:
            inputs[i][1] = draw(st.sampled_from(["FP32", "INT64", "BYTES", "FP64", "INT32", "BOOL", ""]))
        elif m == 4:
            n0 = inputs[i][2][0]
            inputs[i][2] = draw(st.sampled_from([[n0 + 1], [n0, 2], [0], [n0 - 1], [-1], [n0, 1, 1]]))
        elif m <= 6 and i < len(raws) and raws[i]:
            raw = bytearray(raws[i])
            k = draw(st.integers(0, len(raw) - 1))
            new = (
                draw(st.binary(min_size=1, max_size=4))
                if m == 5
                else struct.pack("<f", draw(st.sampled_from([math.inf, -math.inf, math.nan])))
            )
            raw[k : k + len(new)] = new[: len(raw) - k]
            raws[i] = bytes(raw)
        elif m == 7:
            strings = [k for k, inp in enumerate(inputs) if FEATURES[inp[0]].v2_datatype == "BYTES"]
            k = strings[0] if strings else None
            if k is not None and k < len(raws) and len(raws[k]) >= 4:
                raws[k] = struct.pack("<I", draw(st.sampled_from([1, 5, 1000, 2**32 - 1]))) + raws[k][4:]
        else:
            typed = True
    return inputs, raws, typed


def check(case) -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    from serving import grpc_v2
    from serving import request as schema

    inputs, raws, typed = case
    req = pb.ModelInferRequest(model_name="m")
    for name, datatype, shape in inputs:
        req.inputs.add(name=name, datatype=datatype, shape=shape)
    req.raw_input_contents.extend(raws)
    if typed:
        req.inputs[0].contents.fp32_contents.append(1.0)
    try:
        want = None if typed else reference([tuple(i) for i in inputs], raws)
    except Invalid:
        want = None
    model = type("M", (), {"config": type("C", (), {"max_rows": MAX_ROWS})})()
    loaded = type("L", (), {"decoder": DECODER, "spec": TAXI})()
    try:
        got = grpc_v2._decode(model, req, loaded)[0]
    except schema.RequestError as e:
        assert e.status == 400 and e.field and e.field in e.message, (e.status, e.message, e.field)
        assert want is None, f"valid request refused: {e.message}"
        return
    assert want is not None, "invalid request accepted"
    assert_decoded_as(got, want)


@settings(max_examples=800, **CI)
@given(case=raw_requests())
def test_grpc_raw_decoding_agrees_with_the_extension(case):
    check(case)


@pytest.mark.fuzz
@settings(max_examples=20_000, **FUZZ)
@given(case=raw_requests())
def test_grpc_raw_decoding_fuzz(case):
    check(case)
