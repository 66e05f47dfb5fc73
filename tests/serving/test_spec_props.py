"""Property tests: generated dataset specs round-trip through the request decoders and the prediction log.

For a generated spec (:func:`tests.serving.specs.specs`) and generated rows of it: the V1 and V2 decoders
give the same encoded columns, the ones the spec's contract says (dtypes per feature, NaN / -1 / ``""``
for missing); a row that misses a feature, holds null for a non-nullable one or carries an unknown one is
refused naming the field; and the encoded columns, logged with the spec's prediction schema, written and read
back with :mod:`kfloop.predlog`, are the same rows and typed columns, in a file whose schema names the
spec's digest.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfloop import predlog
from serving.request import RequestDecoder, RequestError
from tests.serving.specs import encoded_columns, specs, v1_rows

pytestmark = pytest.mark.serving

PROPS = settings(
    max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
MAX_ROWS = 64


def spec_and_rows(min_size: int = 1):
    return specs().flatmap(lambda s: st.tuples(st.just(s), v1_rows(s, min_size=min_size)))


def v2_body(spec, rows: list[dict], nested: bool, bool_type: bool) -> dict:
    """The V2 body equivalent to ``{"instances": rows}`` (one input per feature, in reverse order)."""
    n = len(rows)
    inputs = []
    for f in reversed(spec.model_features):
        data = [r[f.name] for r in rows]
        datatype = "BOOL" if bool_type and f.kind.value == "boolean" else f.v2_datatype
        inputs.append(
            {
                "name": f.name,
                "datatype": datatype,
                "shape": [n, 1] if nested else [n],
                "data": [[v] for v in data] if nested else data,
            }
        )
    return {"id": "req-1", "inputs": inputs}


def assert_same_columns(spec, got: dict, want: dict) -> None:
    assert list(got) == [f.name for f in spec.model_features]
    for f in spec.model_features:
        g, w = got[f.name], want[f.name]
        assert g.dtype == w.dtype, (f.name, g.dtype, w.dtype)
        if f.dtype == "float32":
            np.testing.assert_array_equal(g, w, err_msg=f.name)  # NaN == NaN here
        else:
            assert g.tolist() == w.tolist(), f.name


@PROPS
@given(spec_and_rows(), st.booleans(), st.booleans())
def test_v1_and_v2_decode_to_the_specs_columns(case, nested, bool_type):
    spec, rows = case
    dec = RequestDecoder(spec)
    want = encoded_columns(spec, rows)
    v1 = dec.decode_v1({"instances": rows}, MAX_ROWS)
    assert_same_columns(spec, v1, want)
    v2, req_id, raw = dec.decode_v2(v2_body(spec, rows, nested, bool_type), MAX_ROWS)
    assert req_id == "req-1"
    assert_same_columns(spec, {f.name: v2[f.name] for f in spec.model_features}, want)
    assert raw == {f.name: [r[f.name] for r in rows] for f in reversed(spec.model_features)}
    assert dec.inputs_metadata() == [
        {"name": f.name, "datatype": f.v2_datatype, "shape": [-1]} for f in spec.model_features
    ]


def refuses(decode, body, field: str, where: str) -> None:
    with pytest.raises(RequestError) as e:
        decode(body, MAX_ROWS)
    assert e.value.field == field and e.value.status == 400, e.value.body()
    assert e.value.message.startswith(where), e.value.message


@PROPS
@given(spec_and_rows(), st.data())
def test_a_missing_feature_is_refused_naming_it(case, data):
    spec, rows = case
    dec = RequestDecoder(spec)
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    f = data.draw(st.sampled_from(spec.model_features), label="feature")
    absent = [dict(r) for r in rows]
    del absent[i][f.name]
    refuses(dec.decode_v1, {"instances": absent}, f.name, f"instances[{i}].{f.name}: missing feature")
    body = v2_body(spec, rows, nested=False, bool_type=False)
    body["inputs"] = [inp for inp in body["inputs"] if inp["name"] != f.name]
    if body["inputs"]:
        refuses(dec.decode_v2, body, f.name, f"{f.name}: missing input")
    if not f.nullable:  # null for a non-nullable feature: refused in both protocols, naming it
        nulled = [dict(r) for r in rows]
        nulled[i][f.name] = None
        refuses(dec.decode_v1, {"instances": nulled}, f.name, f"instances[{i}].{f.name}: missing value")
        refuses(dec.decode_v2, v2_body(spec, nulled, False, False), f.name, f"{f.name}.data[{i}]: missing")


@PROPS
@given(spec_and_rows(), st.data())
def test_an_unknown_feature_is_refused_naming_it(case, data):
    spec, rows = case
    dec = RequestDecoder(spec)
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    name = data.draw(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True).filter(lambda n: n not in dec.names),
        label="unknown",
    )
    extra = [dict(r) for r in rows]
    extra[i][name] = 1
    refuses(dec.decode_v1, {"instances": extra}, name, f"instances[{i}].{name}: unknown feature")
    body = v2_body(spec, rows, nested=False, bool_type=False)
    body["inputs"].append({"name": name, "datatype": "INT64", "shape": [len(rows)], "data": [1] * len(rows)})
    refuses(dec.decode_v2, body, name, f"{name}: unknown input")


@PROPS
@given(spec_and_rows(), st.integers(0, 4_000_000_000), st.sampled_from(["online", "batch"]))
def test_decoded_columns_round_trip_through_the_prediction_log(tmp_path_factory, case, epoch, source):
    spec, rows = case
    n = len(rows)
    columns = RequestDecoder(spec).decode_v1({"instances": rows}, MAX_ROWS)
    schema = predlog.prediction_schema(spec)
    assert predlog.spec_digest(schema) == spec.digest()
    assert predlog.feature_names(schema) == spec.input_names
    probs = np.linspace(0.0, 1.0, n, dtype=np.float32)
    table = predlog.prediction_table("req-1", epoch, "v7", columns, probs, source=source, schema=schema)
    root = str(tmp_path_factory.mktemp("log"))
    uris = predlog.write_table(root, spec.name, predlog.PREDICTIONS, table, writer_id="w")
    assert len(uris) == 1
    back = predlog.read_file(uris[0])
    assert back.schema.equals(schema, check_metadata=False), (back.schema, schema)
    assert predlog.spec_digest(back.schema) == spec.digest()
    assert (back.schema.metadata or {}).get(predlog.SPEC_NAME_KEY) == spec.name.encode()
    for f in spec.model_features:  # the kind travels with each feature column
        assert back.schema.field(f.name).metadata[predlog.KIND_KEY] == f.kind.value.encode()
    assert back.to_pylist() == table.to_pylist()
    # Each feature column: null exactly where the value is missing, else the value in the spec's dtype.
    want = encoded_columns(spec, rows)
    for f in spec.model_features:
        got = back.column(f.name).to_pylist()
        expect = [None if r[f.name] is None else w for r, w in zip(rows, want[f.name].tolist(), strict=True)]
        assert got == expect, f.name
    stamp = dt.datetime.fromtimestamp(epoch, dt.UTC)
    assert back.column("timestamp").to_pylist() == [stamp] * n
    assert back.column("row").to_pylist() == list(range(n))
    assert back.column("source").to_pylist() == [source] * n
    # The scanner reads the same rows, conformed to the spec's schema.
    batches = list(
        predlog.scan(
            root, spec.name, predlog.PREDICTIONS, epoch, epoch + 1, schema=spec, filter_timestamp=True
        )
    )
    scanned = [row for b in batches for row in b.to_pylist()]
    assert scanned == table.to_pylist()
