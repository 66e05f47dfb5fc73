"""The monitoring record series under a store: ``<store>/monitoring/<model>/<kind>/<id>.json`` (:func:`kfloop.layout.record`).

One JSON object per file (GCS objects cannot be appended to), so concurrent writers never clash. Kinds
in use: ``runs`` (monitoring summaries: the drift time series), ``decisions`` and ``triggers``.
"""

from __future__ import annotations

import json

from kfloop import fs, layout, store


def prefix(store_uri: str, model_name: str, kind: str) -> str:
    """Where the records of one kind live.

    Raises:
        store.InvalidName: ``model_name`` is not a valid model name (it could leave the store).
    """
    return layout.records_dir(store_uri, store.check_model_name(model_name), kind)


def write(store_uri: str, model_name: str, kind: str, record_id: str, record: dict) -> str:
    """Writes one record (atomically on a local store); returns its URI."""
    uri = layout.record(store_uri, store.check_model_name(model_name), kind, record_id)
    fs.write_text(uri, json.dumps(record, indent=1, sort_keys=True))
    return uri


def read_all(store_uri: str, model_name: str, kind: str, *, sort_key) -> list[dict]:
    """Every readable record of one kind, sorted by ``sort_key``; a missing series is empty.

    A file that is not valid JSON (e.g. written by hand) is skipped rather than failing the reader.
    """
    out = []
    for uri in fs.list_files(prefix(store_uri, model_name, kind)):
        if uri.endswith(".json"):
            try:
                out.append(json.loads(fs.read_text(uri)))
            except ValueError:
                continue
    return sorted(out, key=sort_key)
