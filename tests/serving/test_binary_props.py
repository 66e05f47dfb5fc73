"""Property-based tests (hypothesis) of V2 binary tensor data: random truncation, lying sizes, bad bytes.

Generated binary bodies (some inputs JSON ``data``, the others binary, in random order and row counts around
``--max-rows``), then mutated: cut short or extended, a lying ``Inference-Header-Content-Length`` or
``binary_data_size``, another datatype or shape, ``data`` next to ``binary_data_size``, overwritten bytes,
NaN / infinity written into a tensor. The oracle (:func:`reference`) is a small, independent reading of the
extension (``struct`` element by element): a body it accepts must decode to its columns (in process) and get
a 200 equal to the in-process model (HTTP); one it refuses must get a 4xx naming a field; never a 5xx.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from tests.serving.conftest import MODEL
from tests.serving.test_fuzz import (
    CI,
    FEATURES,
    FUZZ,
    MAX_ROWS,
    TAXI,
    Invalid,
    _strings_ok,
    _value,
    assert_decoded_as,
)

pytestmark = pytest.mark.serving

hypothesis = pytest.importorskip("hypothesis")
httpx = pytest.importorskip("httpx")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from serving.request import RequestDecoder  # noqa: E402

DECODER = RequestDecoder(TAXI)
_ITEM = {"FP32": ("<f", 4), "INT64": ("<q", 8)}
_DTYPES = {"float32": np.float32, "int64": np.int64, "string": object}

# ----------------------------------------------------------------------------------------------- oracle


def _binary_values(f, datatype: str, raw: bytes, rows: int) -> list:
    if datatype == "BYTES":
        out, pos = [], 0
        for _ in range(rows):
            if pos + 4 > len(raw):
                raise Invalid(f.name)
            (n,) = struct.unpack("<I", raw[pos : pos + 4])
            pos += 4
            if pos + n > len(raw):
                raise Invalid(f.name)
            try:
                out.append(raw[pos : pos + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise Invalid(f.name) from None
            pos += n
        if pos != len(raw):
            raise Invalid(f.name)
        return out
    fmt, size = _ITEM[datatype]
    if len(raw) != rows * size:
        raise Invalid(f.name)
    values = [struct.unpack(fmt, raw[i : i + size])[0] for i in range(0, len(raw), size)]
    for v in values:
        if isinstance(v, float) and (math.isinf(v) or (math.isnan(v) and not f.nullable)):
            raise Invalid(f.name)
    return values


def reference(body: bytes, header: str | None) -> dict[str, np.ndarray]:
    """The columns a valid binary body decodes to; :class:`Invalid` for any body the extension refuses."""
    n = len(body)
    if header is not None:
        text = header.strip()
        if not (text.isascii() and text.isdigit()) or int(text) > len(body):
            raise Invalid("header")
        n = int(text)
    try:
        obj = json.loads(body[:n].decode("utf-8"))
        _strings_ok(obj)
    except (ValueError, RecursionError, UnicodeError):
        raise Invalid("body") from None
    blob = body[n:]
    inputs = obj["inputs"]  # the generator keeps the structure: one input per feature
    parts, pos = {}, 0
    for inp in inputs:
        params = inp.get("parameters")
        if not isinstance(params, dict) or "binary_data_size" not in params:
            continue
        size = params["binary_data_size"]
        if type(size) is not int or size < 0 or "data" in inp or pos + size > len(blob):
            raise Invalid(inp["name"])
        parts[inp["name"]] = blob[pos : pos + size]
        pos += size
    if pos != len(blob):
        raise Invalid("body")
    columns, n_rows = {}, None
    for inp in inputs:
        f = FEATURES[inp["name"]]
        shape = inp["shape"]
        if inp["datatype"] != f.v2_datatype or not 1 <= len(shape) <= 2 or shape[1:] not in ([], [1]):
            raise Invalid(f.name)
        n_rows = shape[0] if n_rows is None else n_rows
        if shape[0] != n_rows or not 1 <= n_rows <= MAX_ROWS:
            raise Invalid(f.name)
        if f.name in parts:
            values = _binary_values(f, inp["datatype"], parts[f.name], n_rows)
        else:
            values = inp.get("data")
            if type(values) is not list or len(values) != n_rows:
                raise Invalid(f.name)
        columns[f.name] = np.array([_value(f, v) for v in values], dtype=_DTYPES[f.dtype])
    return columns


# ------------------------------------------------------------------------------------------- generators


def _value_strategy(f):
    if f.v2_datatype == "FP32":
        s = st.floats(width=32, allow_nan=False, allow_infinity=False)
        return (s | st.just(math.nan)) if f.nullable else s
    if f.v2_datatype == "INT64":
        return st.integers(-(2**63), 2**63 - 1) | st.integers(-1, 30)
    return st.text(max_size=8) | st.sampled_from(["Cash", "", "日本語"])


def _encode(datatype: str, values: list) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode("utf-8") for v in values))
    fmt, _ = _ITEM[datatype]
    return b"".join(struct.pack(fmt, v) for v in values)


@st.composite
def binary_bodies(draw) -> tuple[bytes, str | None]:
    """``(body, Inference-Header-Content-Length value or None)``."""
    n = draw(st.sampled_from([1, 1, 2, 3, MAX_ROWS, MAX_ROWS + 1]))
    json_names = draw(st.sets(st.sampled_from(sorted(FEATURES)), max_size=4))
    inputs, blobs = [], {}
    for f in draw(st.permutations(TAXI.model_features)):
        values = [draw(_value_strategy(f)) for _ in range(min(n, 3))] * n
        values = values[:n]
        inp = {"name": f.name, "datatype": f.v2_datatype, "shape": [n, 1] if draw(st.booleans()) else [n]}
        if f.name in json_names:
            inp["data"] = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
        else:
            blobs[f.name] = _encode(f.v2_datatype, values)
            inp["parameters"] = {"binary_data_size": len(blobs[f.name])}
        inputs.append(inp)
    binary = [i for i in inputs if "parameters" in i]
    header_edit = None
    tail_edit = None
    for _ in range(draw(st.integers(0, 2))):
        m = draw(st.integers(0, 9))
        if m <= 1:
            tail_edit = (
                ("cut", draw(st.integers(0, 10_000)))
                if m == 0
                else ("add", draw(st.binary(min_size=1, max_size=9)))
            )
        elif m == 2:
            header_edit = draw(
                st.integers(-3, 3).map(str) | st.sampled_from(["", "abc", "-12", " +5", "1e3", "9" * 25])
            )
        elif binary and m == 3:
            inp = draw(st.sampled_from(binary))
            inp["parameters"]["binary_data_size"] = draw(
                st.integers(-9, 9).map(lambda d, s=inp["parameters"]["binary_data_size"]: s + d)
                | st.sampled_from(["8", -1, True, 1.5, None])
            )
        elif m == 4:
            inp = draw(st.sampled_from(inputs))
            inp["datatype"] = draw(st.sampled_from(["FP32", "INT64", "BYTES", "FP64", "INT32", "BOOL"]))
        elif m == 5:
            draw(st.sampled_from(inputs))["shape"] = draw(st.sampled_from([[n + 1], [n, 2], [0], [n - 1]]))
        elif binary and m == 6:
            draw(st.sampled_from(binary))["data"] = [0.0] * n
        elif blobs and m <= 8:  # overwrite bytes of one tensor: random ones, or NaN / infinity
            name = draw(st.sampled_from(sorted(blobs)))
            raw = bytearray(blobs[name])
            if raw:
                i = draw(st.integers(0, len(raw) - 1))
                new = (
                    draw(st.binary(min_size=1, max_size=4))
                    if m == 7
                    else struct.pack("<f", draw(st.sampled_from([math.inf, -math.inf, math.nan])))
                )
                raw[i : i + len(new)] = new[: len(raw) - i]
                blobs[name] = bytes(raw)
        elif blobs:  # a BYTES element's length prefix or bytes: a lie or invalid UTF-8
            name = draw(st.sampled_from(["payment_type", "company"]))
            if name in blobs and len(blobs[name]) >= 4:
                raw = bytearray(blobs[name])
                if draw(st.booleans()):
                    raw[0:4] = struct.pack("<I", draw(st.sampled_from([1, 5, 1000, 2**32 - 1])))
                else:
                    raw += b"\xff"
                blobs[name] = bytes(raw)
    head = json.dumps({"inputs": inputs}).encode()
    body = head + b"".join(blobs.get(i["name"], b"") for i in inputs)
    if tail_edit is not None:
        body = body[: tail_edit[1] % len(body)] if tail_edit[0] == "cut" else body + tail_edit[1]
    if header_edit is None and draw(st.integers(0, 9)) == 0:
        return body, None
    header = str(len(head)) if header_edit is None else header_edit
    if header_edit is not None and header_edit.lstrip("-").isdigit() and len(header_edit) < 3:
        header = str(len(head) + int(header_edit))  # off by a few bytes
    return body, header


# ----------------------------------------------------------------------------------------- in process


def check_decoding(body: bytes, header: str | None) -> None:
    from serving import binary, http
    from serving import request as schema

    try:
        want = reference(body, header)
    except Invalid:
        want = None
    try:
        json_part, blob = binary.split_body(body, None if header is None else header.encode())
        got = binary.decode_v2(DECODER, http.parse_json(json_part), blob, MAX_ROWS)[0]
    except schema.RequestError as e:
        assert 400 <= e.status < 500 and e.field and e.field in e.message, (e.status, e.message, e.field)
        assert want is None, f"valid body refused: {e.message}"
        return
    assert want is not None, "invalid body accepted"
    assert_decoded_as(got, want)


@settings(max_examples=1500, **CI)
@given(case=binary_bodies())
def test_binary_decoding_agrees_with_the_extension(case):
    check_decoding(*case)


@pytest.mark.fuzz
@settings(max_examples=20_000, **FUZZ)
@given(case=binary_bodies())
def test_binary_decoding_agrees_with_the_extension_fuzz(case):
    check_decoding(*case)


# ----------------------------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def client(small_server):
    with httpx.Client(base_url=small_server.url, timeout=60) as c:
        yield c


def check_http(client, in_process, body: bytes, header: str | None) -> None:
    headers = {"content-type": "application/octet-stream" if header is not None else "application/json"}
    if header is not None:
        headers["inference-header-content-length"] = header
    r = client.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    try:
        want = reference(body, header)
    except Invalid:
        want = None
    if want is None:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
        err = r.json()
        assert isinstance(err.get("field"), str) and err["field"] and err["field"] in err["error"], err
        return
    assert r.status_code == 200, r.text[:300]
    got = np.array([np.nan if p is None else p for p in r.json()["outputs"][0]["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, in_process[0](want), rtol=1e-6, atol=1e-7)


@settings(max_examples=300, **CI)
@given(case=binary_bodies())
def test_http_binary_is_200_equal_to_the_model_or_4xx_naming_a_field(client, in_process, case):
    check_http(client, in_process, *case)


@pytest.mark.fuzz
@settings(max_examples=5000, **FUZZ)
@given(case=binary_bodies())
def test_http_binary_fuzz(client, in_process, case):
    check_http(client, in_process, *case)
