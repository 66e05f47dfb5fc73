"""Property-based tests (hypothesis) of request decoding and of the HTTP layer.

Generated V1 and V2 bodies: valid requests mutated with wrong types, missing / extra fields, huge and tiny
numbers, NaN / Infinity, long and odd strings, lone surrogates, invalid UTF-8, deep nesting, 5,000-digit
integers, shape / data mismatches, row counts around ``--max-rows`` and wrong content types. The oracle is a
small, independent reading of the request contract (:func:`reference`): a request it accepts must get a 200
equal to the in-process model on the columns it builds; one it refuses must get a 4xx whose JSON names a field;
nothing may get a 5xx.

``make test`` runs 2,800 cases (derandomized, so CI is stable); ``pytest -m fuzz tests/serving`` runs
ten times more with fresh random seeds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kfloop.spec import Feature, Kind
from kfloop.spec import load as load_spec
from tests.conftest import TAXI_SPEC_PATH
from tests.serving.conftest import MODEL, SMALL_MAX_ROWS

pytestmark = pytest.mark.serving

hypothesis = pytest.importorskip("hypothesis")
httpx = pytest.importorskip("httpx")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from serving.request import RequestDecoder  # noqa: E402

#: The taxi example's spec (module level: parametrize and hypothesis strategies are built at import).
TAXI = load_spec(TAXI_SPEC_PATH)
DECODER = RequestDecoder(TAXI)  # the request decoder of a taxi-spec model


MAX_ROWS = SMALL_MAX_ROWS
FP32_MAX = float(np.finfo(np.float32).max)
FEATURES = {f.name: f for f in TAXI.model_features}

COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)
CI = dict(COMMON, derandomize=True)
FUZZ = dict(COMMON, derandomize=False)

# ----------------------------------------------------------------------------------------------- oracle


class Invalid(Exception):
    pass


def assert_decoded_as(got: dict, want: dict) -> None:
    """The decoded column arrays are the expected ones: the same names, dtypes, shapes and values."""
    assert set(got) == set(want)
    for name, arr in want.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
        if arr.dtype == object:
            assert list(got[name]) == list(arr), name
        else:
            np.testing.assert_array_equal(got[name], arr, err_msg=name)


def _value(f: Feature, v):
    """The model input for one JSON value, or :class:`Invalid` (the contract, written out plainly)."""
    if v is None or (type(v) is float and math.isnan(v)):
        if not f.nullable:
            raise Invalid(f.name)
        return f.missing
    if f.kind == Kind.CATEGORICAL_STR:
        if type(v) is not str:
            raise Invalid(f.name)
        return v
    if type(v) not in (int, float):
        raise Invalid(f.name)
    if f.kind == Kind.NUMERIC:
        try:
            x = float(v)
        except OverflowError:
            raise Invalid(f.name) from None
        if not math.isfinite(x) or abs(x) > FP32_MAX:
            raise Invalid(f.name)
        return x
    if type(v) is float and (not math.isfinite(v) or not v.is_integer() or abs(v) >= 2.0**63):
        raise Invalid(f.name)
    i = int(v)
    if not -(2**63) <= i <= 2**63 - 1:
        raise Invalid(f.name)
    return i


def _columns(values: dict[str, list]) -> dict[str, np.ndarray]:
    dtypes = {"float32": np.float32, "int64": np.int64, "string": object}
    return {
        name: np.array([_value(f, v) for v in values[name]], dtype=dtypes[f.dtype])
        for name, f in FEATURES.items()
    }


def _strings_ok(obj) -> None:
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            v.encode("utf-8")
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())


def reference(body: bytes, v2: bool) -> dict[str, np.ndarray]:
    """The columns a valid body decodes to; raises :class:`Invalid` for any body the contract refuses."""
    try:
        obj = json.loads(body.decode("utf-8"))
        _strings_ok(obj)
    except (ValueError, RecursionError, UnicodeError):
        raise Invalid("body") from None
    if type(obj) is not dict:
        raise Invalid("body")
    if not v2:
        if "instances" not in obj or set(obj) - {"instances", "parameters"}:
            raise Invalid("body")
        rows = obj["instances"]
        if type(rows) is not list or not 1 <= len(rows) <= MAX_ROWS:
            raise Invalid("instances")
        if any(type(r) is not dict or set(r) != set(FEATURES) for r in rows):
            raise Invalid("instances")
        return _columns({name: [r[name] for r in rows] for name in FEATURES})
    inputs = obj.get("inputs")
    rid = obj.get("id")
    if rid is not None and (
        type(rid) is not str or len(rid) > 256 or not (rid.isascii() and rid.isprintable())
    ):
        raise Invalid("id")
    if type(inputs) is not list or not inputs or any(type(i) is not dict for i in inputs):
        raise Invalid("inputs")
    names = [i.get("name") for i in inputs]
    if sorted(map(str, names)) != sorted(FEATURES) or any(type(n) is not str for n in names):
        raise Invalid("inputs")
    values, n_rows = {}, None
    for inp in inputs:
        f = FEATURES[inp["name"]]
        shape, data = inp.get("shape"), inp.get("data")
        if inp.get("datatype") != f.v2_datatype:
            raise Invalid(f.name)
        if (
            type(shape) is not list
            or not 1 <= len(shape) <= 2
            or any(type(d) is not int or d < 0 for d in shape)
        ):
            raise Invalid(f.name)
        if len(shape) == 2 and shape[1] != 1:
            raise Invalid(f.name)
        if n_rows is None:
            n_rows = shape[0]
        if shape[0] != n_rows or not 1 <= n_rows <= MAX_ROWS or type(data) is not list:
            raise Invalid(f.name)
        if data and type(data[0]) is list:
            if any(type(d) is not list or len(d) != 1 for d in data):
                raise Invalid(f.name)
            data = [d[0] for d in data]
        if len(data) != n_rows:
            raise Invalid(f.name)
        values[f.name] = data
    return _columns(values)


# ------------------------------------------------------------------------------------------- generators

RAW = "@@RAW{}@@"  # placeholders replaced by raw JSON text after serialisation

ODD_TEXT = st.sampled_from(
    ["", " ", "\x00", "\n\t\r", "é", "日本語", "😀", "\u202e", "a" * 5000, "Cash\x00", "null", "NaN", "1"]
)
RAW_TEXT = st.sampled_from(
    [
        "NaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "1e999",
        "-1e999",
        "1e-999",
        "5e-324",
        "1" * 5000,
        "-" + "9" * 400,
        "18446744073709551616",
        "9223372036854775808",
        "-9223372036854775809",
        "9223372036854775807",
        "3.4028234663852886e38",
        "3.4028235677973366e38",
        '"\\ud800"',
        '"\\udfff x"',
        '"\\ud83d\\ude00"',
        "[" * 3000 + "]" * 3000,
        "[" * 600 + "1" + "]" * 600,
        '{"a":' * 1500 + "1" + "}" * 1500,
        "01",
        "1.",
        "+1",
        "tru",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    ODD_TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)


def valid_value(f: Feature):
    if f.kind == Kind.NUMERIC:
        s = st.floats(width=32, allow_nan=False, allow_infinity=False) | st.integers(-(2**31), 2**31)
    elif f.kind == Kind.CATEGORICAL_INT:
        s = (
            st.integers(-(2**63), 2**63 - 1)
            | st.integers(-1000, 1000)
            | st.integers(-(2**53), 2**53).map(float)
        )
    else:
        s = st.text(max_size=12) | st.sampled_from(["Cash", "Credit Card", "Unknown"])
    return (s | st.none()) if f.nullable else s


@st.composite
def bad_value(draw, f: Feature):
    """Something in place of one feature value: valid elsewhere, wrong type, extreme, odd or raw text."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(JSON)
    if kind == 1:
        return draw(valid_value(draw(st.sampled_from(TAXI.model_features))))
    if kind == 2:
        return draw(
            st.sampled_from([1e39, -1e39, 1e308, 5e-324, 2**63, 2**64, -(2**63), 10**30, 0.5, -0.0, True])
        )
    return ("raw", draw(RAW_TEXT))


class Body:
    """A generated body under construction: a JSON structure plus raw-text splices and byte edits."""

    def __init__(self, obj):
        self.obj = obj
        self.raw: list[str] = []

    def put(self, v):
        if isinstance(v, tuple) and v and v[0] == "raw":
            self.raw.append(v[1])
            return RAW.format(len(self.raw) - 1)
        return v

    def dumps(self, ascii_only: bool) -> bytes:
        text = json.dumps(self.obj, allow_nan=True, ensure_ascii=ascii_only)
        for i, raw in enumerate(self.raw):
            text = text.replace(json.dumps(RAW.format(i)), raw)
        return text.encode("utf-8", "surrogatepass")


@st.composite
def v1_bodies(draw) -> bytes:
    n = draw(st.sampled_from([1, 1, 2, 3, MAX_ROWS - 1, MAX_ROWS, MAX_ROWS, MAX_ROWS + 1, 0]))
    row = {f.name: draw(valid_value(f)) for f in TAXI.model_features}
    rows = [dict(row) for _ in range(n)]
    for r in rows[1:3]:
        r.update(
            {
                k: draw(valid_value(FEATURES[k]))
                for k in draw(st.sets(st.sampled_from(sorted(FEATURES)), max_size=4))
            }
        )
    body = Body({"instances": rows})
    for _ in range(draw(st.integers(0, 3))):
        m = draw(st.integers(0, 9))
        dicts = [r for r in rows if isinstance(r, dict)]
        if m <= 5 and not dicts:
            continue
        if m <= 3:
            r = draw(st.sampled_from(dicts))
            name = draw(st.sampled_from(sorted(FEATURES)))
            r[name] = body.put(draw(bad_value(FEATURES[name])))
        elif m == 4:
            draw(st.sampled_from(dicts)).pop(draw(st.sampled_from(sorted(FEATURES))), None)
        elif m == 5:
            draw(st.sampled_from(dicts))[
                draw(st.text(max_size=8) | st.sampled_from(["tips", "Fare", "fare "]))
            ] = 1
        elif m == 6:
            body.obj[draw(st.sampled_from(["parameters", "inputs", "id", "extra"]))] = draw(JSON)
        elif m == 7 and rows:
            rows[draw(st.integers(0, len(rows) - 1))] = body.put(draw(bad_value(FEATURES["fare"])))
        elif m == 8:
            body.obj["instances"] = body.put(draw(bad_value(FEATURES["fare"])))
            break
        else:
            body.obj = draw(st.sampled_from([rows, {"rows": rows}, None, 3, "instances"]))
            break
    return finish(draw, body)


@st.composite
def v2_bodies(draw) -> bytes:
    n = draw(st.sampled_from([1, 1, 2, 3, MAX_ROWS - 1, MAX_ROWS, MAX_ROWS, MAX_ROWS + 1, 0]))
    nested = draw(st.booleans())
    inputs = []
    for f in TAXI.model_features:
        data = [draw(valid_value(f)) for _ in range(min(n, 3))] * (n // 3 + 1)
        data = data[:n]
        inp = {"name": f.name, "datatype": f.v2_datatype, "shape": [n, 1] if nested else [n]}
        inp["data"] = [[d] for d in data] if nested and draw(st.booleans()) else data
        inputs.append(inp)
    inputs = draw(st.permutations(inputs))
    body = Body({"inputs": inputs})
    if draw(st.booleans()):
        body.obj["id"] = draw(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10)
            | st.sampled_from(["req-1", "x" * 300, "é", "a\nb", 7, ""])
        )
    for _ in range(draw(st.integers(0, 3))):
        m = draw(st.integers(0, 11))
        if not inputs:
            break
        inp = draw(st.sampled_from(inputs))
        if m <= 2 and isinstance(inp["data"], list) and inp["data"]:
            i = draw(st.integers(0, len(inp["data"]) - 1))
            inp["data"][i] = body.put(draw(bad_value(FEATURES.get(inp["name"], FEATURES["fare"]))))
        elif m == 3:
            inp["datatype"] = draw(
                st.sampled_from(["FP32", "INT64", "BYTES", "fp32", "FP64", "INT32", None, 1])
            )
        elif m == 4:
            inp["shape"] = draw(
                st.sampled_from(
                    [[n + 1], [n, 2], [n, 1, 1], [], [-1], [str(n)], [float(n)], [True], n, None, [n, 0]]
                )
            )
        elif m == 5:
            inp["data"] = draw(st.sampled_from([None, "data", {"a": 1}, [[1, 2]] * n, [[[1]]] * n, []]))
        elif m == 6:
            inputs.remove(inp)
        elif m == 7:
            inputs.append(dict(inp))
        elif m == 8:
            inp["name"] = draw(st.text(max_size=8) | st.sampled_from([None, 3, "Fare", "tips"]))
        elif m == 9:
            inp[draw(st.sampled_from(["parameters", "extra"]))] = draw(JSON)
        elif m == 10:
            body.obj["inputs"] = draw(st.sampled_from([None, {}, [], "inputs", [1, 2]]))
            break
        else:
            body.obj = draw(st.sampled_from([inputs, None, {"instances": []}]))
            break
    return finish(draw, body)


def finish(draw, body: Body) -> bytes:
    data = body.dumps(draw(st.booleans()))
    edit = draw(st.integers(0, 19))
    if edit == 0 and data:  # an invalid UTF-8 byte somewhere
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + data[i:]
    elif edit == 1 and data:  # cut short
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif edit == 2:
        data = b" \n" + data + b"\t"
    elif edit == 3:
        data = draw(st.sampled_from([b"", b"[" * 100_000, b"{" * 50_000, b"null", b"\xef\xbb\xbf" + data]))
    return data


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "",
    ]
)

# ----------------------------------------------------------------------------------------- in process


def check_decoding(body: bytes, v2: bool) -> None:
    from serving import http
    from serving import request as schema

    try:
        want = reference(body, v2)
    except Invalid:
        want = None
    try:
        payload = http.parse_json(body)
        got = DECODER.decode_v2(payload, MAX_ROWS)[0] if v2 else DECODER.decode_v1(payload, MAX_ROWS)
    except schema.RequestError as e:
        assert 400 <= e.status < 500 and e.field, (e.status, e.message, e.field)
        assert want is None, f"valid body refused: {e.message}"
        return
    assert want is not None, "invalid body accepted"
    assert_decoded_as(got, want)


def test_integer_literal_past_64_bits_is_not_read_as_a_neighbouring_int64():
    """Found by the fuzz run: orjson reads -9223372036854775809 as the float -2**63, which fit INT64."""
    row = {
        f.name: (0.0 if f.kind == Kind.NUMERIC else 0 if f.kind == Kind.CATEGORICAL_INT else "")
        for f in TAXI.model_features
    }
    text = json.dumps({"instances": [row]}).replace(
        '"trip_start_hour": 0', '"trip_start_hour": -9223372036854775809'
    )
    check_decoding(text.encode(), False)
    with pytest.raises(Invalid):
        reference(text.encode(), False)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@settings(max_examples=1000, **CI)
@given(data=st.data())
def test_decoding_agrees_with_the_contract(v2, data):
    check_decoding(data.draw(v2_bodies() if v2 else v1_bodies()), v2)


@pytest.mark.fuzz
@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@settings(max_examples=20_000, **FUZZ)
@given(data=st.data())
def test_decoding_agrees_with_the_contract_fuzz(v2, data):
    check_decoding(data.draw(v2_bodies() if v2 else v1_bodies()), v2)


# ----------------------------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def fuzz_server(small_server):
    with httpx.Client(base_url=small_server.url, timeout=60) as client:
        yield small_server, client


def check_http(fuzz_server, in_process, body: bytes, v2: bool, ctype: str | None) -> None:
    _, client = fuzz_server
    path = f"/v2/models/{MODEL}/infer" if v2 else f"/v1/models/{MODEL}:predict"
    headers = {} if ctype is None else {"content-type": ctype}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    json_ct = ctype is None or ctype.split(";")[0].strip().lower() == "application/json"
    try:
        want = reference(body, v2) if json_ct else None
    except Invalid:
        want = None
    if want is None:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
        err = r.json()
        assert isinstance(err.get("field"), str) and err["field"] and err["field"] in err["error"], err
        if not json_ct:
            assert r.status_code == 415 and err["field"] == "content-type"
        return
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    got = out["outputs"][0]["data"] if v2 else out["predictions"]
    got = np.array([np.nan if p is None else p for p in got], dtype=np.float32)
    np.testing.assert_allclose(got, in_process[0](want), rtol=1e-6, atol=1e-7)


@settings(max_examples=400, **CI)
@given(body=v1_bodies(), ctype=CONTENT_TYPES)
def test_http_v1_is_200_equal_to_the_model_or_4xx_naming_a_field(fuzz_server, in_process, body, ctype):
    check_http(fuzz_server, in_process, body, False, ctype)


@settings(max_examples=400, **CI)
@given(body=v2_bodies(), ctype=CONTENT_TYPES)
def test_http_v2_is_200_equal_to_the_model_or_4xx_naming_a_field(fuzz_server, in_process, body, ctype):
    check_http(fuzz_server, in_process, body, True, ctype)


@pytest.mark.fuzz
@settings(max_examples=6000, **FUZZ)
@given(data=st.data())
def test_http_fuzz(fuzz_server, in_process, data):
    v2 = data.draw(st.booleans())
    body = data.draw(v2_bodies() if v2 else v1_bodies())
    check_http(fuzz_server, in_process, body, v2, data.draw(CONTENT_TYPES))
