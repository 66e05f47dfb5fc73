"""Queued prediction log items as Arrow tables: what the writer process (:mod:`serving.log_writer`) writes.

An item of the queue (:mod:`serving.log_queue`) is ``(request ids, row counts, epochs, version, columns,
outputs, log schema)`` (outputs per the schema's task: ``[n]``, or multiclass ``[n, K]``); the format of the table is :mod:`kfloop.predlog`. The queue (which starts the
writer) and the writer both import this module, so the writer never imports the queue.

On the wire (:func:`wire_items`) a string column the request's decode already had as an Arrow array (binary
BYTES inputs, :class:`serving.request.Columns`) travels as that array: pickling it is a copy of its buffers,
where an object array pickles one ``str`` per row and the writer then rebuilds the Arrow array from them.
"""

from __future__ import annotations

import numpy as np


def _columns_of(raw, schema) -> dict:
    """Decoded ``{feature: array}`` columns; V1 instance dicts (old callers, tests) are decoded here."""
    if isinstance(raw, dict):
        return raw
    from kfloop import predlog

    return predlog.columns_from_instances(raw, schema)


def _schema_of(item):
    return item[6] if len(item) > 6 else None


def wire_items(items: list) -> list:
    """The items as sent to the writer process: columns that also come as Arrow arrays (``.arrow`` of a
    :class:`serving.request.Columns`) are sent as those arrays, in a plain dict (same values)."""
    out = []
    for it in items:
        arrow = getattr(it[4], "arrow", None)
        if arrow:
            it = (*it[:4], {**it[4], **arrow}, *it[5:])
        out.append(it)
    return out


def _merge(parts: list):
    """One feature's column of several items: numpy arrays concatenated; when any part is an Arrow array
    (:func:`wire_items`), one Arrow string array (numpy parts converted)."""
    import pyarrow as pa

    if len(parts) == 1:
        return parts[0]
    if not any(isinstance(p, pa.Array) for p in parts):
        return np.concatenate([np.asarray(p) for p in parts])
    return pa.concat_arrays(
        [
            p if isinstance(p, pa.Array) else pa.array(np.asarray(p, dtype=object), type=pa.string())
            for p in parts
        ]
    )


def _repeated(values: list, counts: np.ndarray):
    """``values[i]`` repeated ``counts[i]`` times as an Arrow string array: one Arrow string per distinct
    value and one ``take`` (C), not one Python object per row."""
    import pyarrow as pa

    uniq = pa.array([str(v) for v in values], type=pa.string())
    return uniq.take(pa.array(np.repeat(np.arange(len(values), dtype=np.int32), counts)))


def items_table(items: list, source: str = "online", schema=None):
    """One Arrow table of one prediction log schema for queued items (all of that schema).

    An item is ``(request ids, row counts, epochs, version, columns, probabilities, log schema)``: one
    request (:meth:`PredictionLog.submit`) or one micro-batch of requests (:meth:`PredictionLog.submit_batch`).

    Args:
        items: The items.
        source: ``online`` / ``batch``.
        schema: The prediction schema (default: the first item's).
    """
    from kfloop import predlog

    schema = schema if schema is not None else _schema_of(items[0])
    if schema is None:
        raise predlog.LogError("a prediction log item has no schema (the model's spec gives it)")
    names = predlog.feature_names(schema)
    ids_l, counts_l, epochs_l = [], [], []
    for it in items:
        ids_l.extend(it[0])
        counts_l.extend(it[1])
        epochs_l.extend(it[2])
    counts = np.array(counts_l, dtype=np.int64)
    n = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rows = np.arange(n, dtype=np.int64) - starts
    cols = [_columns_of(it[4], schema) for it in items]
    merged = {name: _merge([c[name] for c in cols]) for name in names}
    # One output per row ([n]), or K per row (multiclass [n, K]): rows stay rows.
    outs = [np.asarray(it[5], dtype=np.float32) for it in items]
    probs = np.concatenate([o if o.ndim == 2 else o.reshape(-1) for o in outs])
    epochs = np.repeat(np.array(epochs_l, dtype=np.float64), counts)
    item_rows = np.fromiter((len(it[5]) for it in items), dtype=np.int64, count=len(items))
    versions = [str(it[3]) for it in items]
    # Per-row request ids and versions built from the distinct values by one take (no per-row str).
    version = versions[0] if len(set(versions)) == 1 else _repeated(versions, item_rows)
    return predlog.prediction_table(
        _repeated(ids_l, counts), epochs, version, merged, probs, source=source, rows=rows, schema=schema
    )


def items_tables(items: list, source: str = "online", default_schema=None) -> list:
    """The queued items as one table per prediction schema (items grouped by their schema, in order of
    first appearance): each becomes its own files."""
    groups: dict = {}
    for it in items:
        schema = _schema_of(it) if _schema_of(it) is not None else default_schema
        key = id(schema)
        for k, (sc, _) in groups.items():  # the same schema built twice (two versions of one spec)
            if sc is schema or (
                sc is not None and schema is not None and sc.equals(schema, check_metadata=True)
            ):
                key = k
                break
        groups.setdefault(key, (schema, []))[1].append(it)
    return [items_table(its, source, schema) for schema, its in groups.values()]
