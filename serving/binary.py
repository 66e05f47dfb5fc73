"""The Open Inference Protocol's binary tensor data extension on ``/v2/models/<name>[/versions/<v>]/infer``.

Request: with the header ``Inference-Header-Content-Length: N`` the body's first ``N`` bytes are the JSON
request and the rest the binary tensors, one after another in the order of ``inputs``; an input with
``parameters.binary_data_size`` takes that many bytes (and has no ``data``). Numeric and ``BOOL`` tensors are
raw little-endian values (``FP32`` 4 bytes, ``INT64`` 8, ``BOOL`` 1), ``BYTES`` elements each a 4-byte
little-endian length and that many bytes (UTF-8 here: the model's strings are text). Inputs with ``data`` and
binary inputs may be mixed in one request. Binary values go straight into the model's column arrays
(``numpy.frombuffer``, checked on the array) after the same checks as JSON (:meth:`RequestDecoder.decode_v2
<serving.request.RequestDecoder.decode_v2>`: names, datatype against the spec's feature, shape, rows), and:

* the header length must be a number of bytes within the body, the sizes must add up to what follows the
  JSON exactly, and a size must be shape x element size (``BYTES``: the elements must fill it exactly);
* values follow the JSON rules: ``FP32`` non-finite values are refused (NaN is a missing value, allowed only
  for a nullable feature); a boolean feature's ``BOOL`` bytes and ``INT64`` values are 0 or 1 (``INT64``
  -1, the spec's missing value, for a nullable one: binary data has no ``null``); ``BYTES`` are valid UTF-8
  (``""`` is a nullable string feature's missing value, as in JSON).

Every mistake is a :class:`serving.request.RequestError` (400 naming the input, or ``body`` /
``inference-header-content-length``): a lying or truncated body never reaches the model.

Response: when the request asks for it (``parameters.binary_data_output: true``, or
``outputs[i].parameters.binary_data: true`` per output; ``outputs`` also selects which outputs come back)
the outputs go out the same way: a JSON header whose outputs carry ``parameters.binary_data_size`` instead
of ``data``, then their bytes (``BYTES`` class names length-prefixed), with ``Content-Type:
application/octet-stream`` and the ``Inference-Header-Content-Length`` response header. Otherwise the answer is
the JSON it always was.
"""

from __future__ import annotations

import struct

import numpy as np
import orjson

from kfloop.spec import Kind
from serving import request as schema
from serving.request import RequestError

#: The request / response header that gives the JSON part's length (ASGI header names are lower case).
HEADER = b"inference-header-content-length"
FIELD = HEADER.decode()
OCTET_STREAM = b"application/octet-stream"

_ITEM_BYTES = {"FP32": 4, "INT64": 8, "BOOL": 1}
_WIRE_DTYPES = {"FP32": "<f4", "INT64": "<i8", "BOOL": "u1"}
_LENGTH = struct.Struct("<I")


def content_type_ok(ctype: bytes, binary: bool) -> bool:
    """Whether a request's ``Content-Type`` is accepted: JSON, or octet-stream for a binary request."""
    media = ctype.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (binary and media == OCTET_STREAM)


def split_body(body: bytes, header: bytes | None) -> tuple[bytes, memoryview]:
    """``(JSON part, binary part)`` of a body, per its ``Inference-Header-Content-Length`` (None: all JSON)."""
    if header is None:
        return body, memoryview(b"")
    text = header.decode("latin-1").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise RequestError(f"{FIELD}: {schema.short(text)!r} is not a number of bytes", field=FIELD)
    n = int(text)
    if n > len(body):
        raise RequestError(f"{FIELD}: {n} is past the end of the body ({len(body)} bytes)", field=FIELD)
    return body[:n], memoryview(body)[n:]


def missing_header(e: RequestError) -> RequestError:
    """The error of a body that failed as JSON and names ``binary_data_size``: the header is missing."""
    return RequestError(
        f"{e.message}; a body with binary tensor data needs the Inference-Header-Content-Length header "
        "(the length of its JSON part)",
        field="body",
    )


def _input_name(inp: dict, i: int) -> tuple[str, str]:
    """``(where, field)`` of input ``i`` in error messages."""
    name = inp.get("name")
    if isinstance(name, str):
        name = schema.key_name(name)
        return name, name
    return f"inputs[{i}]", "inputs"


class BinaryInputs:
    """The binary parts of one request's inputs, cut from the body in input order.

    Called by :meth:`serving.request.RequestDecoder.decode_v2` for each feature once its datatype and shape
    are checked: returns the column, or None for an input that has JSON ``data``.

    Raises:
        RequestError: a size that is not a byte count, an input with ``data`` too, sizes that do not add up
            to the binary part of the body.
    """

    def __init__(self, inputs: list, blob: memoryview):
        self.parts: dict[int, memoryview] = {}
        self.arrow: dict = {}  # feature -> the Arrow string array of a BYTES input (for the prediction log)
        offset = 0
        for i, inp in enumerate(inputs):
            params = inp.get("parameters") if isinstance(inp, dict) else None
            if not isinstance(params, dict) or "binary_data_size" not in params:
                continue
            where, field = _input_name(inp, i)
            size = params["binary_data_size"]
            if type(size) is not int or size < 0:
                raise RequestError(
                    f"{where}.parameters.binary_data_size: expected a number of bytes, got "
                    f"{schema._describe(size)}",
                    field=field,
                )
            if "data" in inp:
                raise RequestError(
                    f"{where}: has both data and parameters.binary_data_size (one or the other)", field=field
                )
            left = len(blob) - offset
            if size > left:
                raise RequestError(
                    f"{where}: parameters.binary_data_size {size} is past the end of the body ({left} binary "
                    f"bytes left after the inputs before it; the JSON is the first {FIELD} bytes)",
                    field=field,
                )
            self.parts[id(inp)] = blob[offset : offset + size]
            offset += size
        if offset != len(blob):
            raise RequestError(
                f"body: {len(blob) - offset} bytes after the JSON header belong to no input (the inputs' "
                f"parameters.binary_data_size add up to {offset} of {len(blob)}; check {FIELD})",
                field="body",
            )

    def __call__(self, f, inp: dict, shape: list, rows: int) -> np.ndarray | None:
        part = self.parts.get(id(inp))
        if part is None:
            return None
        dt = inp["datatype"]  # checked against the feature by decode_v2
        if dt == "BYTES":
            column, arrow = _strings(f, part, shape, rows)
            if arrow is not None:
                self.arrow[f.name] = arrow
            return column
        item = _ITEM_BYTES[dt]
        if len(part) != rows * item:
            raise RequestError(
                f"{f.name}: parameters.binary_data_size {len(part)} does not match shape {shape}: {rows} x "
                f"{item} bytes ({dt}) = {rows * item}",
                field=f.name,
            )
        return _column(f, np.frombuffer(part, dtype=_WIRE_DTYPES[dt]), dt)


def _first_bad(f, bad: np.ndarray, values: np.ndarray, problem) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        raise RequestError(f"{f.name}[{i}]: {problem(values[i].item())}", field=f.name)


def _column(f, wire: np.ndarray, dt: str) -> np.ndarray:
    """The model's column from raw values (a native-order copy), checked as the JSON values would be."""
    if f.kind == Kind.NUMERIC:
        col = wire.astype(np.float32)
        finite = np.isfinite(col)
        if not finite.all():
            bad = ~finite if not f.nullable else np.isinf(col)
            _first_bad(f, bad, col, lambda v: schema._element_problem(f, v))
        return col
    col = wire.astype(np.int64)
    if f.kind != Kind.BOOLEAN:
        return col  # categorical INT64: any value (-1 is the missing value, as a JSON -1 or null)
    ok = (col == 0) | (col == 1)
    if f.nullable and dt == "INT64":
        ok |= col == -1
    if not ok.all():
        allowed = "0 or 1, or -1 (missing)" if f.nullable and dt == "INT64" else "0 or 1"
        _first_bad(f, ~ok, col, lambda v: f"expected a boolean ({dt} {allowed}), got {v}")
    return col


def _strings(f, part: memoryview, shape: list, rows: int) -> tuple[np.ndarray, object]:
    """``rows`` length-prefixed UTF-8 elements filling ``part`` exactly: ``(object array of str, the same
    values as an Arrow string array or None)``.

    Fast path (:func:`_arrow_strings`): the length prefixes are scanned once (or, when every element has the
    first one's length, checked with one strided numpy comparison), the prefix bytes are cut out in numpy,
    and Arrow checks the UTF-8 and makes the ``str`` objects, all in C. Anything it does not accept (a
    lying length, bad UTF-8, bytes left over) goes through :func:`_checked_strings`, the element-by-element
    loop, which names the first bad element (or, if the fast path was only being careful, gives the same
    values).
    """
    data = part.tobytes()
    try:
        arr = _arrow_strings(data, rows)
        return arr.to_numpy(zero_copy_only=False), arr
    except Exception:  # the checked loop raises the error naming the element, or agrees
        return _checked_strings(f, data, shape, rows), None


def _lengths(data: bytes, rows: int) -> np.ndarray:
    """The element lengths of ``rows`` length-prefixed elements that fill ``data`` exactly.

    Raises:
        ValueError / struct.error: they do not (a length past the end, bytes left over).
    """
    size = len(data)
    if size >= 4:
        (first,) = _LENGTH.unpack_from(data, 0)
        if rows * (4 + first) == size:  # one element length for all? one strided look at every prefix
            prefixes = np.ndarray((rows,), dtype="<u4", buffer=data, strides=(4 + first,))
            if (prefixes == first).all():
                return np.full(rows, first, dtype=np.int64)
    lengths = [0] * rows
    pos = 0
    unpack = _LENGTH.unpack_from
    for i in range(rows):
        (n,) = unpack(data, pos)  # struct.error past the end
        lengths[i] = n
        pos += 4 + n
    if pos != size:
        raise ValueError("the elements do not fill the binary data")
    return np.fromiter(lengths, dtype=np.int64, count=rows)


def _arrow_strings(data: bytes, rows: int):
    """The elements as a validated Arrow string array (raises on anything :func:`_checked_strings` would
    refuse, and on input too big for 32-bit offsets)."""
    import pyarrow as pa

    size = len(data)
    if rows <= 0 or size >= 2**31:
        raise ValueError("not for the fast path")
    lengths = _lengths(data, rows)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    prefix = offsets[:-1] + 4 * np.arange(rows, dtype=np.int64)  # where each 4-byte length starts
    keep = np.ones(size, dtype=bool)
    for k in range(4):
        keep[prefix + k] = False
    values = np.frombuffer(data, dtype=np.uint8)[keep]
    arr = pa.StringArray.from_buffers(rows, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(values))
    arr.validate(full=True)  # UTF-8 of every element
    return arr


def _checked_strings(f, data: bytes, shape: list, rows: int) -> np.ndarray:
    """The element-by-element decode: names the first bad element (truncated, bad UTF-8, bytes left over)."""
    size = len(data)
    out = [""] * rows
    pos = 0
    unpack = _LENGTH.unpack_from
    for i in range(rows):
        if pos + 4 > size:
            raise RequestError(
                f"{f.name}[{i}]: truncated BYTES element: {size - pos} byte(s) left where its 4-byte length "
                f"belongs (shape {shape}, parameters.binary_data_size {size})",
                field=f.name,
            )
        (n,) = unpack(data, pos)
        pos += 4
        if n > size - pos:
            raise RequestError(
                f"{f.name}[{i}]: truncated BYTES element: length {n}, {size - pos} byte(s) left "
                f"(parameters.binary_data_size {size})",
                field=f.name,
            )
        try:
            out[i] = data[pos : pos + n].decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestError(f"{f.name}[{i}]: not valid UTF-8 (byte {e.start})", field=f.name) from None
        pos += n
    if pos != size:
        raise RequestError(
            f"{f.name}: parameters.binary_data_size {size} has {size - pos} byte(s) after the {rows} "
            f"element(s) of shape {shape}",
            field=f.name,
        )
    return np.array(out, dtype=object)


def decode_v2(decoder, payload, blob: memoryview, max_rows: int):
    """:meth:`RequestDecoder.decode_v2 <serving.request.RequestDecoder.decode_v2>` of a JSON header and the
    body's binary part (empty for a plain JSON body); same return value."""
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list):
        return decoder.decode_v2(payload, max_rows)  # raises: no inputs array
    binary = BinaryInputs(inputs, blob)
    if not binary.parts:
        return decoder.decode_v2(payload, max_rows)
    columns, req_id, raw = decoder.decode_v2(payload, max_rows, binary)
    if binary.arrow:  # the BYTES inputs' Arrow arrays travel with the columns to the prediction log
        columns = schema.Columns(columns, binary.arrow)
    return columns, req_id, raw


class Reply:
    """What a request asks of its outputs: which (None: all, in the model's order) and which go binary.

    Attributes:
        names: The requested outputs' names, in request order (None: all).
        binary: Per requested output, whether it goes binary.
        default: ``parameters.binary_data_output`` (outputs without their own ``binary_data``).
    """

    def __init__(self, names: list[str] | None, binary: dict[str, bool], default: bool):
        self.names = names
        self.binary = binary
        self.default = default


def _flag(value, where: str, field: str) -> bool:
    if type(value) is not bool:
        raise RequestError(f"{where}: expected true or false, got {schema._describe(value)}", field=field)
    return value


def reply_of(payload: dict, output_names: list[str]) -> Reply | None:
    """The :class:`Reply` a V2 request asks for (None: all outputs as JSON, as before).

    Raises:
        RequestError: ``parameters`` / ``outputs`` malformed, an unknown or repeated output, ``classification``.
    """
    params = payload.get("parameters")
    default = False
    if params is not None:
        if not isinstance(params, dict):
            raise RequestError(
                f"parameters: expected an object, got {schema._type_name(params)}", field="parameters"
            )
        if "binary_data_output" in params:
            default = _flag(params["binary_data_output"], "parameters.binary_data_output", "parameters")
    outputs = payload.get("outputs")
    if outputs is None:
        return Reply(None, {}, True) if default else None
    if not isinstance(outputs, list) or not outputs:
        raise RequestError("outputs: expected a non-empty array of {name, parameters}", field="outputs")
    names: list[str] = []
    binary: dict[str, bool] = {}
    for i, o in enumerate(outputs):
        name = o.get("name") if isinstance(o, dict) else None
        if not isinstance(name, str):
            raise RequestError(f"outputs[{i}]: expected an object with a name", field="outputs")
        if name not in output_names:
            raise RequestError(
                f"outputs[{i}].name: {schema.key_name(name)!r} is not an output of this model "
                f"({', '.join(output_names)})",
                field="outputs",
            )
        if name in binary:
            raise RequestError(f"outputs[{i}].name: {name!r} asked twice", field="outputs")
        p = o.get("parameters", {})
        if not isinstance(p, dict):
            raise RequestError(f"outputs[{i}].parameters: expected an object", field="outputs")
        if "classification" in p:
            raise RequestError(f"outputs[{i}].parameters.classification: not supported", field="outputs")
        binary[name] = (
            _flag(p["binary_data"], f"outputs[{i}].parameters.binary_data", "outputs")
            if "binary_data" in p
            else default
        )
        names.append(name)
    return Reply(names, binary, default)


def _output_bytes(o: dict) -> bytes:
    dt = o["datatype"]
    if dt == "BYTES":
        encoded = [str(v).encode("utf-8") for v in o["data"]]
        return b"".join(_LENGTH.pack(len(b)) + b for b in encoded)
    return np.asarray(o["data"], dtype=_WIRE_DTYPES[dt]).tobytes()


def response(out: dict, reply: Reply | None) -> tuple[dict | bytes, bytes, list[tuple[bytes, bytes]]]:
    """``(body, content type, extra headers)`` of a V2 answer ``out`` for what the request asked.

    ``body`` is ``out`` itself (JSON, serialized by the caller) unless an output goes binary.
    """
    if reply is None:
        return out, b"application/json", []
    outputs = out["outputs"]
    if reply.names is not None:
        by_name = {o["name"]: o for o in outputs}
        outputs = [by_name[n] for n in reply.names]
    listed, blobs = [], []
    for o in outputs:
        if reply.binary.get(o["name"], reply.default):
            raw = _output_bytes(o)
            blobs.append(raw)
            listed.append(
                {
                    "name": o["name"],
                    "datatype": o["datatype"],
                    "shape": o["shape"],
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
        else:
            listed.append(o)
    head = {**out, "outputs": listed}
    if not blobs:
        return head, b"application/json", []
    header = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    return header + b"".join(blobs), OCTET_STREAM, [(HEADER, str(len(header)).encode())]
