"""Batch prediction's input side: the request id, the version a ref names and its spec, the caller's CSV as a
Dataset CSV (:func:`prepare_input`), and the errors bad input raises.
"""

from __future__ import annotations

import time
import uuid

from kfloop import contract, fs


class BatchPredictError(ValueError):
    """Bad input to batch prediction (a missing column, an unknown model ref); the message names it."""


class BlockedInput(BatchPredictError):
    """Rows the data gate refuses before validation: a raw-extract value that cannot be cleaned (as
    ``kfloop validate`` blocks it, exit 3); the message names the column and CSV line."""


def new_request_id() -> str:
    """A request id for one batch job: ``batch-<UTC time>-<random>``."""
    return f"batch-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def version_spec(store_uri: str, model_name: str, model_ref: str):
    """The version a ref names and the dataset spec and TFDV schema stored with it (the model contract).

    Returns:
        ``(version, spec, schema_uri)``: ``schema_uri`` is the version's ``schema.pbtxt``, or None when the
        version has none (then the schema the spec alone implies is used).

    Raises:
        BatchPredictError: the ref is not set / not committed, or the version has no valid spec (names the
            file).
    """
    from kfloop import store as kstore
    from kfloop.spec import SpecError

    version = resolve(store_uri, model_name, model_ref)
    model_dir = kstore.ModelStore(store_uri).model_uri(model_name, version)
    try:
        spec = contract.read_spec(model_dir)
    except (FileNotFoundError, SpecError) as e:
        raise BatchPredictError(f"model {model_name!r} {version}: {e}") from None
    schema = contract.schema_uri(model_dir)
    return version, spec, schema if fs.exists(schema) else None


def prepare_input(input_uri: str, dataset_uri: str, spec) -> int:
    """Reads the caller's CSV into a Dataset CSV of the spec's model features (event time kept when present).

    Raw data (the user's form: another time format, missing-value tokens, ``yes``/``no`` booleans, excluded
    columns; :func:`kfloop.clean.is_raw` decides) is cleaned as ``kfloop ingest`` does
    (:func:`kfloop.clean.clean`); the label, or what it is derived from, is not needed and is dropped (batch
    input is serving data), and so is the time column when the input lacks it. Dataset-form values are
    kept as they are written, so a value that does not parse reaches the validation as a type anomaly.

    Args:
        input_uri: The caller's CSV (local path or ``gs://``).
        dataset_uri: Where the Dataset CSV goes.
        spec: The :class:`kfloop.spec.DatasetSpec` of the model version that scores.

    Returns:
        The number of rows.

    Raises:
        BlockedInput: raw data with a value that cannot be cleaned (names the column and line).
        BatchPredictError: the file is missing or unreadable, has no rows, or lacks a model feature.
    """
    from kfloop import clean, datasets

    try:
        frame = clean.read_raw(input_uri)
    except clean.IngestError as e:
        raise BatchPredictError(str(e)) from None
    missing = [name for name in spec.input_names if name not in frame.columns]
    if missing:
        raise BatchPredictError(f"input {input_uri!r}: missing model feature column(s): {', '.join(missing)}")
    if spec.time is not None and spec.time.column not in frame.columns:
        spec = spec.model_copy(update={"time": None})  # serving data without its event time
    if clean.is_raw(frame, spec):
        try:
            frame = clean.clean(frame, spec, form="raw", with_label=False)
        except clean.IngestError as e:
            raise BlockedInput(f"raw input {input_uri!r}: {e}") from None
    head = (spec.event_time.name,) if spec.event_time is not None else ()
    datasets.write_dataset(frame[[*head, *spec.input_names]], dataset_uri)
    return len(frame)


def resolve(store_uri: str, model_name: str, model_ref: str) -> str:
    """The version an alias (``champion``), ``latest`` or a version id names.

    Raises:
        BatchPredictError: the ref is not set / not committed in the store.
    """
    from kfloop.store import ModelStore, StoreError

    try:
        return ModelStore(store_uri).resolve(model_name, model_ref)
    except StoreError as e:
        raise BatchPredictError(f"model ref {model_ref!r}: {e}") from None
