"""Request validation and decoding against a model's dataset spec (V1 and Open Inference Protocol v2).

A :class:`RequestDecoder` is built from the :class:`kfloop.spec.DatasetSpec` of the model being served (read
from its model directory at load time): it knows the model's features, their kinds and order. Every check
names the field and the problem. A decoded request is ``{feature name: np.ndarray}`` with the spec's
missing-value sentinels (NaN / -1 / ""), ready for the ``predict_raw`` signature. Booleans are ``true`` /
``false`` (or 0 / 1) and decode to int64 0 / 1.

Only numpy and the standard library are imported; the spec comes in as an argument.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from kfloop.spec import Feature, Kind

_NP_DTYPES = {"float32": np.float32, "int64": np.int64, "string": object}
_FP32_MAX = float(np.finfo(np.float32).max)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class RequestError(Exception):
    """A client mistake: becomes an HTTP 4xx JSON error ``{"error": message, "field": field}``."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field

    def body(self) -> dict:
        out = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class Columns(dict):
    """Decoded ``{feature: numpy array}`` columns that also carry some of them as Arrow arrays.

    The binary extension's decode (:mod:`serving.binary`) builds a BYTES input's Arrow string array on its
    way to the object array the model takes; the prediction log (:mod:`serving.log_queue`) sends that array
    to its writer instead of pickling one ``str`` per row and rebuilding it there. Same values, both forms.

    Attributes:
        arrow: ``{feature: pyarrow.StringArray}`` for those features (equal to the numpy column).
    """

    __slots__ = ("arrow",)

    def __init__(self, columns: dict, arrow: dict):
        super().__init__(columns)
        self.arrow = arrow


def short(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters (error messages quote client input, never all of it)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_name(key: str) -> str:
    """A client-given key as it appears in an error's message and ``field``: short, never blank."""
    return short(key) if key.strip() else repr(key)


def _describe(v) -> str:
    """A short, safe description of a client value (no deep repr, no giant integer conversion)."""
    if isinstance(v, list):
        if len(v) <= 8 and not any(isinstance(x, list | dict) for x in v):
            return short(repr(v))
        return f"an array of {len(v)}"
    if isinstance(v, dict):
        return f"an object of {len(v)} key(s)"
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 128:
        return f"an integer of about {int(v.bit_length() * 0.30103) + 1} digits"
    return short(repr(v))


def _type_name(v) -> str:
    if v is None:
        return "null"
    return {
        bool: "boolean",
        str: "string",
        int: "integer",
        float: "number",
        list: "array",
        dict: "object",
    }.get(type(v), type(v).__name__)


def _element_problem(f: Feature, v) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        if f.nullable:
            return None
        return f"missing value ({_describe(v)}) not allowed: feature {f.name!r} is not nullable"
    if f.kind == Kind.CATEGORICAL_STR:
        return (
            None if isinstance(v, str) else f"expected a string (BYTES), got {_type_name(v)} {_describe(v)}"
        )
    if f.kind == Kind.BOOLEAN:
        if isinstance(v, bool) or (type(v) is int and v in (0, 1)):
            return None
        return f"expected a boolean (true / false, or 0 / 1), got {_type_name(v)} {_describe(v)}"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"expected a number ({f.v2_datatype}), got {_type_name(v)} {_describe(v)}"
    if f.kind == Kind.NUMERIC:
        if isinstance(v, float) and math.isinf(v):
            return f"non-finite number {_describe(v)} not allowed"
        try:
            x = float(v)  # what the fast path compares: the float64 value
        except OverflowError:
            x = math.inf
        if abs(x) > _FP32_MAX:
            return f"number {_describe(v)} out of FP32 range"
        return None
    if isinstance(v, float) and not v.is_integer():
        return f"expected an integer (INT64), got {_describe(v)}"
    # A float must be strictly inside +-2**63: orjson reads integer literals past 64 bits as floats, so a float
    # -2**63 may stand for any literal just below INT64's minimum.
    if isinstance(v, float) and abs(v) >= 2.0**63:
        return f"integer {_describe(v)} out of INT64 range"
    if not _INT64_MIN <= v <= _INT64_MAX:
        return f"integer {_describe(v)} out of INT64 range"
    return None


def encode_column(f: Feature, values: list, where=None) -> np.ndarray:
    """Checks and encodes one feature's values (a list of JSON scalars) as the model's input array.

    Fast path: the set of element types decides (one C-speed pass), numpy converts in one call and range /
    finiteness are checked on the array. Anything unusual goes element by element so the error names the
    offending element.

    Raises:
        RequestError: an element has the wrong type, is missing where not allowed, or is out of range.
    """
    types = set(map(type, values))
    if f.kind == Kind.CATEGORICAL_STR:
        if types <= _STR:
            return np.array(values, dtype=object)
        if f.nullable and types <= _STR_OR_NONE:
            return np.array(["" if v is None else v for v in values], dtype=object)
        return _slow(f, values, where)
    if f.kind == Kind.BOOLEAN:
        if not types <= (_BOOL_OR_NONE if f.nullable else _BOOL):
            return _slow(f, values, where)
        if int in types and not all(v in (0, 1) for v in values if type(v) is int):
            return _slow(f, values, where)
        if _NONE in types:
            values = [-1 if v is None else v for v in values]
        return np.array(values, dtype=np.int64)
    if not types <= (_NUM_OR_NONE if f.nullable else _NUM):
        return _slow(f, values, where)
    if f.kind == Kind.NUMERIC:
        try:
            arr = np.array(values, dtype=np.float64)  # None -> NaN
        except (OverflowError, ValueError, TypeError):
            return _slow(f, values, where)
        finite = np.isfinite(arr)
        if not finite.all() and (not f.nullable or np.isinf(arr).any()):
            return _slow(f, values, where)
        if finite.any() and np.abs(arr[finite]).max() > _FP32_MAX:
            return _slow(f, values, where)
        return arr.astype(np.float32)
    # categorical int
    if _NONE in types:
        values = [-1 if v is None else v for v in values]
    if float in types:
        try:
            arr = np.array(values, dtype=np.float64)
        except OverflowError:
            return _slow(f, values, where)
        if not np.isfinite(arr).all() or (arr != np.floor(arr)).any() or np.abs(arr).max() >= 2.0**63:
            return _slow(f, values, where)
        return np.array(values, dtype=np.int64)  # element-wise: exact for integers past 2**53
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return _slow(f, values, where)


_NONE = type(None)
_STR = frozenset({str})
_STR_OR_NONE = frozenset({str, _NONE})
_NUM = frozenset({int, float})
_NUM_OR_NONE = frozenset({int, float, _NONE})
_BOOL = frozenset({bool, int})
_BOOL_OR_NONE = frozenset({bool, int, _NONE})


def _slow(f: Feature, values: list, where) -> np.ndarray:
    """Element-by-element check (names the first bad element), then conversion with sentinels."""
    if where is None:

        def where(i):
            return f"{f.name}[{i}]"

    for i, v in enumerate(values):
        problem = _element_problem(f, v)
        if problem:
            raise RequestError(f"{where(i)}: {problem}", field=f.name)
    missing = f.missing
    clean = [missing if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    if f.kind == Kind.BOOLEAN:
        clean = [int(v) for v in clean]
    return np.array(clean, dtype=_NP_DTYPES[f.dtype])


MAX_REQUEST_ID = 256


def check_request_id(value: str, field: str) -> None:
    """A request id is echoed in the ``x-request-id`` header: 1-256 printable ASCII characters."""
    if len(value) > MAX_REQUEST_ID or not value.isascii() or not value.isprintable():
        raise RequestError(
            f"{field}: {_describe(value)} is not 1-{MAX_REQUEST_ID} printable ASCII characters "
            "(it is echoed in the x-request-id header)",
            field=field,
        )


def _check_rows(n: int, max_rows: int, field: str) -> None:
    if n == 0:
        raise RequestError(f"{field}: empty batch (no rows to predict)", field=field)
    if n > max_rows:
        raise RequestError(
            f"{field}: {_describe(n)} rows is more than the limit of {max_rows} rows per request", field=field
        )


_DICT = frozenset({dict})


class RequestDecoder:
    """Decodes and validates V1 / V2 requests for the model inputs of one dataset spec.

    Built once per loaded model version (the spec stored with it); holds the per-feature item getters of
    the V1 fast path.

    Args:
        spec: The :class:`kfloop.spec.DatasetSpec` the served model was trained on.

    Attributes:
        spec: The spec.
        features: The model inputs, in model order.
        names: Their names (a frozenset).
        digest: The spec's digest (two decoders with the same digest decode alike).
    """

    def __init__(self, spec):
        self.spec = spec
        self.features: tuple[Feature, ...] = tuple(spec.model_features)
        self.names = frozenset(f.name for f in self.features)
        self.digest = spec.digest()
        self._getters = [operator.itemgetter(f.name) for f in self.features]
        self._n_features = frozenset({len(self.features)})

    def inputs_metadata(self) -> list[dict]:
        """V2 metadata of the inputs: name, datatype, shape [-1]."""
        return [{"name": f.name, "datatype": f.v2_datatype, "shape": [-1]} for f in self.features]

    def decode_v1(self, payload, max_rows: int) -> dict[str, np.ndarray]:
        """Decodes a V1 body ``{"instances": [{feature: value, ...}, ...]}``.

        Every instance must hold every model feature (``null`` allowed for nullable features) and nothing else.
        """
        if not isinstance(payload, dict):
            raise RequestError(
                f"body: expected a JSON object with 'instances', got {_type_name(payload)}", field="body"
            )
        if "instances" not in payload:
            raise RequestError(
                "instances: missing (V1 body is {'instances': [{feature: value, ...}, ...]})",
                field="instances",
            )
        extra = set(payload) - {"instances", "parameters"}
        if extra:
            name = key_name(sorted(extra)[0])
            raise RequestError(
                f"{name}: unknown key; a V1 body has 'instances' (and 'parameters')", field=name
            )
        rows = payload["instances"]
        if not isinstance(rows, list):
            raise RequestError(
                f"instances: expected an array of objects, got {_type_name(rows)}", field="instances"
            )
        _check_rows(len(rows), max_rows, "instances")
        try:  # fast path: every row a dict of exactly the model's features; one C-level pass per feature
            if not set(map(type, rows)) <= _DICT or set(map(len, rows)) != self._n_features:
                raise KeyError
            # (a map of one itemgetter per feature: half the time of transposing per-row tuples with zip)
            columns = [list(map(get, rows)) for get in self._getters]
        except KeyError:
            self._check_instances(rows)  # names the first bad instance
            raise AssertionError(
                "unreachable: _check_instances accepted rows the fast path refused"
            ) from None
        out = {}
        for f, values in zip(self.features, columns, strict=True):
            name = f.name
            out[name] = encode_column(f, values, lambda i, name=name: f"instances[{i}].{name}")
        return out

    def _check_instances(self, rows: list) -> None:
        """Raises the :class:`RequestError` of the first instance that is not an object of exactly the features."""
        names = self.names
        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise RequestError(
                    f"instances[{i}]: expected an object of features, got {_type_name(row)}",
                    field="instances",
                )
            if len(row) != len(names) or not names.issuperset(row):
                unknown = sorted(set(row) - names)
                if unknown:
                    name = key_name(unknown[0])
                    raise RequestError(f"instances[{i}].{name}: unknown feature", field=name)
                absent = [f.name for f in self.features if f.name not in row]
                raise RequestError(f"instances[{i}].{absent[0]}: missing feature", field=absent[0])

    def decode_v2(
        self, payload, max_rows: int, binary=None
    ) -> tuple[dict[str, np.ndarray], str | None, dict[str, list]]:
        """Decodes an Open Inference Protocol v2 body: one named input per feature.

        Each input: ``{"name", "datatype": FP32|INT64|BYTES, "shape": [n] or [n, 1], "data": [...]}``; all inputs
        must have the same number of rows. ``null`` in ``data`` marks a missing value of a nullable feature.
        ``binary``: the request's binary inputs (:class:`serving.binary.BinaryInputs`), called with
        ``(feature, input, shape, rows)`` once an input's datatype and shape are checked; it returns the column
        of an input sent as binary data, or None for one with ``data``.

        Returns:
            ``(columns, request id from the body or None, raw values per feature (flat lists, for the log))``.
        """
        if not isinstance(payload, dict):
            raise RequestError(
                f"body: expected a JSON object with 'inputs', got {_type_name(payload)}", field="body"
            )
        inputs = payload.get("inputs")
        if inputs is None:
            raise RequestError(
                "inputs: missing (V2 body is {'inputs': [{name, datatype, shape, data}, ...]})",
                field="inputs",
            )
        if not isinstance(inputs, list):
            raise RequestError(f"inputs: expected an array, got {_type_name(inputs)}", field="inputs")
        req_id = payload.get("id")
        if req_id is not None:
            if not isinstance(req_id, str):
                raise RequestError(f"id: expected a string, got {_type_name(req_id)}", field="id")
            check_request_id(req_id, "id")
        if not inputs:
            raise RequestError("inputs: empty (one input per model feature expected)", field="inputs")
        seen: dict[str, dict] = {}
        for i, inp in enumerate(inputs):
            if not isinstance(inp, dict):
                raise RequestError(f"inputs[{i}]: expected an object, got {_type_name(inp)}", field="inputs")
            name = inp.get("name")
            if not isinstance(name, str):
                raise RequestError(f"inputs[{i}].name: missing or not a string", field="inputs")
            if name not in self.names:
                raise RequestError(
                    f"{key_name(name)}: unknown input (not a model feature)", field=key_name(name)
                )
            if name in seen:
                raise RequestError(f"{name}: input given twice", field=name)
            seen[name] = inp
        absent = [f.name for f in self.features if f.name not in seen]
        if absent:
            raise RequestError(
                f"{absent[0]}: missing input ({len(absent)} feature(s) missing)", field=absent[0]
            )
        n_rows = None
        out = {}
        raw = {}
        for f in self.features:
            inp = seen[f.name]
            dt = inp.get("datatype")
            if dt != f.v2_datatype and not (f.kind == Kind.BOOLEAN and dt == "BOOL"):
                raise RequestError(
                    f"{f.name}: datatype {_describe(dt)} does not match the model's {f.v2_datatype}",
                    field=f.name,
                )
            shape = inp.get("shape")
            if (
                not isinstance(shape, list)
                or not 1 <= len(shape) <= 2
                or not all(type(d) is int and d >= 0 for d in shape)
                or (len(shape) == 2 and shape[1] != 1)
            ):
                raise RequestError(
                    f"{f.name}: shape {_describe(shape)} is not [rows] or [rows, 1]", field=f.name
                )
            rows = shape[0]
            if n_rows is None:
                n_rows = rows
                _check_rows(rows, max_rows, f.name)
            elif rows != n_rows:
                raise RequestError(
                    f"{f.name}: shape {shape} has {rows} rows, other inputs have {n_rows}", field=f.name
                )
            if binary is not None:
                column = binary(f, inp, shape, rows)
                if column is not None:
                    out[f.name] = raw[f.name] = column
                    continue
            data = inp.get("data")
            if not isinstance(data, list):
                raise RequestError(f"{f.name}: data must be an array, got {_type_name(data)}", field=f.name)
            if data and type(data[0]) is list:  # nested [[v], [v], ...]
                if not all(type(d) is list and len(d) == 1 for d in data):
                    raise RequestError(f"{f.name}: nested data does not match shape {shape}", field=f.name)
                data = [d[0] for d in data]
            if len(data) != rows:
                raise RequestError(
                    f"{f.name}: shape {shape} says {rows} values, data has {len(data)}", field=f.name
                )
            out[f.name] = encode_column(f, data, lambda i, name=f.name: f"{name}.data[{i}]")
            raw[f.name] = data
        return out, req_id, raw
