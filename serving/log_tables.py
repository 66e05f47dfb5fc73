"""Queued prediction log items as Arrow tables: what the writer process (:mod:`serving.log_writer`) writes.

An item of the queue (:mod:`serving.log_queue`) is ``(request ids, row counts, epochs, version, columns,
outputs, log schema)`` (outputs per the schema's task: ``[n]``, or multiclass ``[n, K]``); the format of the table is :mod:`kfloop.predlog`. The queue (which starts the
writer) and the writer both import this module, so the writer never imports the queue.
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
    merged = {
        name: (cols[0][name] if len(cols) == 1 else np.concatenate([np.asarray(c[name]) for c in cols]))
        for name in names
    }
    # One output per row ([n]), or K per row (multiclass [n, K]): rows stay rows.
    outs = [np.asarray(it[5], dtype=np.float32) for it in items]
    probs = np.concatenate([o if o.ndim == 2 else o.reshape(-1) for o in outs])
    ids = np.repeat(np.array([str(i) for i in ids_l], dtype=object), counts)
    epochs = np.repeat(np.array(epochs_l, dtype=np.float64), counts)
    item_rows = np.fromiter((len(it[5]) for it in items), dtype=np.int64, count=len(items))
    versions = np.repeat(np.array([str(it[3]) for it in items], dtype=object), item_rows)
    return predlog.prediction_table(
        ids, epochs, versions, merged, probs, source=source, rows=rows, schema=schema
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
