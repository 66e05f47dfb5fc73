"""Building log tables: prediction rows from decoded feature columns, feedback rows from labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kfloop.predlog.schema import (
    OUTPUT_FIELDS,
    SOURCES,
    TIMESTAMP_TYPE,
    LogError,
    as_prediction_schema,
    feature_fields,
    feedback_schema,
    prediction_task,
    schema_classes,
    task_name,
)


def _dtype_of(f) -> str:
    """``float32`` / ``int64`` / ``string`` of a :class:`kfloop.spec.Feature` or a log field."""
    if isinstance(f, pa.Field):
        if pa.types.is_floating(f.type):
            return "float32"
        if pa.types.is_integer(f.type):
            return "int64"
        return "string"
    return f.dtype


def _micros(epoch, n: int) -> pa.Array:
    """``n`` UTC timestamps (us) from a scalar epoch (seconds) or an array of them."""
    arr = np.asarray(epoch, dtype=np.float64)
    us = np.round(arr * 1e6).astype(np.int64)
    if us.ndim == 0:
        us = np.full(n, int(us), dtype=np.int64)
    elif len(us) != n:
        raise LogError(f"{len(us)} timestamps for {n} rows")
    return pa.array(us, type=pa.int64()).cast(TIMESTAMP_TYPE)


def _broadcast(value, n: int, name: str) -> pa.Array:
    if isinstance(value, str):
        return pa.repeat(pa.scalar(value, pa.string()), n)
    if isinstance(value, pa.Array) and pa.types.is_string(value.type):
        arr = value
    elif isinstance(value, np.ndarray) and value.dtype == object:
        arr = pa.array(value, type=pa.string())
    else:
        arr = pa.array([str(v) for v in value], type=pa.string())
    if len(arr) != n:
        raise LogError(f"{len(arr)} values of {name!r} for {n} rows")
    return arr


def feature_array(f, values) -> pa.Array:
    """One decoded feature column (the spec's missing-value sentinels NaN / -1 / ``""``) as a nullable
    Arrow array: NaN / -1 / ``""`` / ``None`` become null.

    Args:
        f: The :class:`kfloop.spec.Feature`, or its log field (:func:`kfloop.predlog.feature_field`).
        values: A numpy array (or list); a string feature may also come as an Arrow array.
    """
    dtype = _dtype_of(f)
    if dtype == "string":
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, pa.Array):  # already Arrow (a CSV reader's column): no per-row Python
            arr = values.cast(pa.string())
        else:
            arr = pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
        return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    if dtype == "float32":
        arr = np.asarray(values, dtype=np.float32)
        return pa.array(arr, type=pa.float32(), mask=np.isnan(arr))
    arr = np.asarray(values, dtype=np.int64)
    return pa.array(arr, type=pa.int64(), mask=arr == -1)


def _instance_value(v, dtype: str, missing):
    if v is None:
        return missing
    if dtype == "int64" and isinstance(v, bool):
        return int(v)
    return v


def columns_from_instances(instances: list, spec_or_schema) -> dict:
    """Decoded ``{feature: numpy array}`` columns (sentinels for missing) from V1-style instance dicts.

    A value that is absent or ``None`` is missing; values are converted to the feature's dtype as given
    (the caller has validated them; a boolean may be ``true`` / ``false``).

    Args:
        instances: ``[{feature: value}, ...]``.
        spec_or_schema: The :class:`kfloop.spec.DatasetSpec` or the prediction schema naming the features.
    """
    fields = feature_fields(as_prediction_schema(spec_or_schema))
    cols = {}
    for f in fields:
        dtype = _dtype_of(f)
        miss = {"float32": np.nan, "int64": -1, "string": ""}[dtype]
        vals = [
            _instance_value(r.get(f.name) if isinstance(r, dict) else None, dtype, miss) for r in instances
        ]
        cols[f.name] = np.array(
            vals, dtype={"float32": np.float32, "int64": np.int64, "string": object}[dtype]
        )
    return cols


def prediction_table(
    request_id,
    epoch,
    version,
    columns: dict,
    probabilities,
    source: str = "online",
    rows=None,
    *,
    schema,
) -> pa.Table:
    """The log rows of one request (or batch) from its already-decoded column arrays.

    Args:
        request_id: The request id (one string for all rows), or one id per row (a sequence, or an Arrow
            string array).
        epoch: Prediction time in seconds since the epoch (scalar, or one per row).
        version: Model version (one string, or one per row, as ``request_id``).
        columns: ``{feature name: numpy array}`` as :mod:`serving.request` decodes a request (sentinels
            NaN / -1 / ``""`` for missing; a string feature may be an Arrow array, null = missing); every
            feature of ``schema`` must be present (others are ignored).
        probabilities: The model's outputs per the schema's task: binary one probability per row, regression
            one prediction per row (``[n]``, or ``[n, 1]``); multiclass ``[n, K]`` probabilities in the
            spec's class order (K: the schema's classes when it records them).
        source: ``"online"`` (served over HTTP) or ``"batch"`` (batch prediction).
        rows: Row index of each row within its request (default ``0 .. n-1``: one request).
        schema: The prediction schema (:func:`kfloop.predlog.prediction_schema`) or the
            :class:`kfloop.spec.DatasetSpec` of the predicting model.

    Returns:
        A table of that schema.

    Raises:
        LogError: a feature is missing, lengths differ, the outputs are not of the task's shape, or
            ``source`` is unknown.
    """
    schema = as_prediction_schema(schema)
    if source not in SOURCES:
        raise LogError(f"source must be one of {SOURCES}, got {source!r}")
    task = prediction_task(schema)
    out = _output_array(task, probabilities, schema_classes(schema) if task == "multiclass" else None)
    n = len(out)
    what = "probabilities" if task != "regression" else "predictions"
    arrays = []
    for f in feature_fields(schema):
        if f.name not in columns:
            raise LogError(f"column {f.name!r} missing from the decoded request")
        arr = feature_array(f, columns[f.name])
        if len(arr) != n:
            raise LogError(f"column {f.name!r} has {len(arr)} values for {n} {what}")
        arrays.append(arr)
    if rows is None:
        row_arr = pa.array(np.arange(n, dtype=np.int32))
    else:
        row_arr = pa.array(np.asarray(rows, dtype=np.int32).reshape(-1))
        if len(row_arr) != n:
            raise LogError(f"{len(row_arr)} row indices for {n} rows")
    data = [
        _broadcast(request_id, n, "request_id"),
        row_arr,
        _micros(epoch, n),
        _broadcast(str(version) if isinstance(version, str | int) else version, n, "model_version"),
        _broadcast(source, n, "source"),
        *arrays,
        out,
    ]
    return pa.Table.from_arrays(data, schema=schema)


def _output_array(task: str, outputs, classes) -> pa.Array:
    """The output column of ``task`` from the model's outputs (float32 [n]; multiclass list<float32> of K).

    Raises:
        LogError: the outputs are not numbers, or not of the task's shape (names the task and the shape).
    """
    try:
        arr = np.asarray(outputs, dtype=np.float32)
    except (TypeError, ValueError):
        raise LogError(f"{OUTPUT_FIELDS[task].name}: the {task} outputs must be numbers") from None
    if task != "multiclass":
        if (arr.ndim == 2 and arr.shape[1] != 1) or arr.ndim > 2:
            raise LogError(
                f"{OUTPUT_FIELDS[task].name}: a {task} model has one output per row ([n]), got shape "
                f"{list(arr.shape)}"
            )
        return pa.array(arr.reshape(-1), type=pa.float32())
    k = len(classes) if classes is not None else None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, k or 0)
    if arr.ndim != 2 or (k is not None and arr.shape[1] != k) or arr.shape[1] < 2:
        want = f"[n, {k}] (one probability per class of {list(classes)})" if k else "[n, K] (K >= 2)"
        raise LogError(f"probabilities: a multiclass model's outputs are {want}, got shape {list(arr.shape)}")
    n, k = arr.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(arr.reshape(-1), type=pa.float32()))


def feedback_table(
    request_ids, rows, labels, arrival_epoch, prediction_epoch=None, labeler=None, *, spec=None
) -> pa.Table:
    """Arrived labels as a table of the task's feedback schema (:func:`kfloop.predlog.feedback_schema`;
    binary: :data:`kfloop.predlog.FEEDBACK_SCHEMA`).

    Args:
        request_ids: One request id per label.
        rows: Row index within its request, one per label.
        labels: One per label, in the log's form (the spec's raw label values are mapped by the caller,
            :meth:`kfloop.spec.DatasetSpec.label_of`): binary 0 or 1; multiclass the class index
            0..K-1 in ``spec.classes`` order (an int); regression a finite number.
        arrival_epoch: When the labels arrived (seconds since the epoch; scalar or one per label).
        prediction_epoch: When the labelled rows were predicted (scalar, one per label, or None).
        labeler: Who sent the labels: a name for all, one (or None) per label, or None.
        spec: The model's :class:`kfloop.spec.DatasetSpec` (or its ``Task`` / task name; a multiclass
            task name alone cannot check the class index's upper bound). None: binary.

    Raises:
        LogError: lengths differ, a label is not of the task's type (names the request and row of the
            first), or a row is negative.
    """
    task = task_name(spec)
    ids = [str(r) for r in request_ids]
    n = len(ids)
    row_arr = np.asarray(rows, dtype=np.int64).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    if len(row_arr) != n or len(lab) != n:
        raise LogError(f"{n} request ids, {len(row_arr)} rows and {len(lab)} labels")
    lab = _check_labels(task, lab, ids, row_arr, getattr(spec, "n_classes", None))
    if n and (row_arr.min() < 0 or row_arr.max() > np.iinfo(np.int32).max):
        raise LogError("row indices must be in 0 .. 2**31-1")
    arrival = _micros(arrival_epoch, n)
    if prediction_epoch is None:
        pred = pa.nulls(n, type=TIMESTAMP_TYPE)
        delay = pa.nulls(n, type=pa.float64())
    else:
        pred = _micros(prediction_epoch, n)
        delay = pa.array(
            (arrival.cast(pa.int64()).to_numpy() - pred.cast(pa.int64()).to_numpy()) / 1e6, type=pa.float64()
        )
    return pa.Table.from_arrays(
        [
            pa.array(ids, type=pa.string()),
            pa.array(row_arr.astype(np.int32)),
            lab,
            arrival,
            pred,
            delay,
            _labelers(labeler, n),
        ],
        schema=feedback_schema(spec if task != "binary" else None),
    )


def _check_labels(task: str, lab: np.ndarray, ids: list, rows: np.ndarray, k) -> pa.Array:
    """The label column of ``task`` (binary int8, multiclass int32, regression float64), or
    :class:`LogError` naming the request and row of the first label that is not of the task's type."""
    values = lab.tolist()
    if task == "regression":
        bad = [
            i
            for i, v in enumerate(values)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v)
        ]
        want = "a finite number"
    elif task == "multiclass":
        top = range(k) if isinstance(k, int) and k > 0 else None
        bad = [
            i
            for i, v in enumerate(values)
            if type(v) is not int or v < 0 or (top is not None and v not in top) or v > np.iinfo(np.int32).max
        ]
        want = f"a class index in 0..{k - 1}" if top is not None else "a class index (an int >= 0)"
    else:
        bad = [i for i, v in enumerate(values) if type(v) is not int or v not in (0, 1)]
        want = "0 or 1"
    if len(values) and (bad or (task != "regression" and lab.dtype.kind in "fb") or lab.dtype.kind == "b"):
        i = bad[0] if bad else 0
        raise LogError(f"label of request {ids[i]!r} row {int(rows[i])} must be {want}, got {lab[i]!r}")
    if task == "regression":
        return pa.array(lab.astype(np.float64), type=pa.float64())
    if task == "multiclass":
        return pa.array(lab.astype(np.int32), type=pa.int32())
    return pa.array(lab.astype(np.int8))


def _labelers(labeler, n: int) -> pa.Array:
    if labeler is None or isinstance(labeler, str):
        return pa.array([labeler] * n, type=pa.string())
    names = list(labeler)
    if len(names) != n or any(v is not None and not isinstance(v, str) for v in names):
        raise LogError(f"labeler: expected a name or {n} names (or None), got {len(names)} values")
    return pa.array(names, type=pa.string())
