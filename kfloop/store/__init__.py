"""The model store: atomic, immutable model versions and audited, compare-and-swap aliases.

Rooted at a local directory (the embedded default) or ``gs://bucket/prefix``. Layout under the root::

    models/<name>/<version>/_CLAIM           written first, write-once: the version is taken
    models/<name>/<version>/model/...        the SavedModel (with kfloop_metadata.json), write-once files
    models/<name>/<version>/metadata.json    data window, metrics, blessing, schema hash, run id, files
    models/<name>/<version>/reference/...    a version artifact (write-once; the monitoring reference)
    models/<name>/<version>/_artifacts/<a>.json  the artifact's manifest, written last
    models/<name>/<version>/_COMMITTED       written last: a version without it does not exist for readers
    models/<name>/aliases/<alias>.json       {"version", "updated_at", "previous", "reason", "actor", "move"}
    models/<name>/history/<time>-<id>.json   one record per alias attempt / publish / rejection
    models/<name>/runs/<run-hash>.json       {"run_id", "version"}: a retried publish of a run reuses it
    models/<name>/_next_version.json         version counter (compare-and-swap; a hint, see below)

Integrity rules:

- Versions are ``v0001``, ``v0002``, ... A publish takes the counter's number but never one below an existing
  version directory, and then *claims* the directory with a write-once ``_CLAIM`` (GCS
  ``if_generation_match=0``, locally an exclusive hard link); every file of a version is write-once too. So
  a deleted, stale or rewound counter can never make a publish write into an existing version.
- Aliases change by compare-and-swap: on GCS an upload with ``if_generation_match`` (HTTP 412 when someone
  else wrote first); locally an atomic rename while holding ``fcntl.flock`` on ``models/<name>/.lock``. Each
  alias object carries the id of the move that wrote it (``move``), so a write whose response was lost is
  recognised as our own on the re-read.
- Every publish and alias move is recorded. The record of a move is named after the move
  (``history/<updated_at>-<move>.json``) and written right after the swap; a crash in between leaves the
  move in the alias object, and the next swap of that alias writes the missing record before it overwrites
  the object (reconciliation), while :meth:`ModelStore.history` shows it at once (``"recovered": true``).
  A publish is recorded the same way from its ``_COMMITTED`` marker.
- Every JSON file the store reads is checked (valid UTF-8 JSON object with the expected fields and types);
  a bad one raises :class:`CorruptStore` naming the file and the problem. Manifest paths that are absolute
  or leave the version directory are refused. Model, alias and version names are checked with full matches.

Every path is built by :mod:`kfloop.layout`. Modules, by job: :mod:`~kfloop.store.names` (names, errors,
checks), :mod:`~kfloop.store.roots` (which directory is a store), :mod:`~kfloop.store.base` (root, checked
JSON reads, compare-and-swap), :mod:`~kfloop.store.versions` (claim, publish, read, fetch),
:mod:`~kfloop.store.history` (records, reconciliation), :mod:`~kfloop.store.artifacts` (write-once
folders kept with a version: the monitoring reference), :mod:`~kfloop.store.aliases` (aliases, resolve,
rollback), :mod:`~kfloop.store.integrity` (verify, check). :class:`ModelStore` is all of them.

Only the standard library is imported at module level (this package also runs in the serving env).
"""

from __future__ import annotations

from kfloop import fs, layout  # noqa: F401  (kept as attributes: tests patch ``store.fs``)
from kfloop.store.aliases import _Aliases
from kfloop.store.artifacts import _Artifacts, check_artifact_name
from kfloop.store.base import _Base
from kfloop.store.history import _History
from kfloop.store.integrity import _Integrity
from kfloop.store.names import (
    _ALIAS_RE,
    _NAME_RE,
    _VERSION_RE,
    ANY,
    CANARY,
    CHAMPION,
    CLAIM_MARKER,
    COMMIT_MARKER,
    AliasConflict,
    CorruptStore,
    InvalidName,
    ModelNotFound,
    StoreError,
    check_model_name,
    default_actor,
    is_version,
    now_iso,
)
from kfloop.store.roots import containing_store, is_store_root
from kfloop.store.versions import _Versions


class ModelStore(_Aliases, _Artifacts, _Integrity, _Versions, _History, _Base):
    """A model store rooted at a local directory or ``gs://bucket/prefix``.

    Args:
        root_uri: Local directory (``file://`` accepted) or ``gs://bucket/prefix``.
    """


def only_model(root_uri: str, flag: str = "--model-name") -> str:
    """The one model a store holds: the name a command takes when it is given none.

    Raises:
        StoreError: the store holds no model or several (or cannot be read); the message says ``flag`` is
            required and what the store holds.
    """
    try:
        models = ModelStore(root_uri).models()
    except (StoreError, OSError):
        models = []
    if len(models) != 1:
        held = f"the store holds: {', '.join(models)}" if models else "the store holds no model"
        raise StoreError(f"{flag} is required: the dataset spec's name ({held})")
    return models[0]


__all__ = [
    "ANY",
    "CANARY",
    "CHAMPION",
    "CLAIM_MARKER",
    "COMMIT_MARKER",
    "_ALIAS_RE",
    "_NAME_RE",
    "_VERSION_RE",
    "AliasConflict",
    "CorruptStore",
    "InvalidName",
    "ModelNotFound",
    "ModelStore",
    "StoreError",
    "check_artifact_name",
    "check_model_name",
    "containing_store",
    "default_actor",
    "is_store_root",
    "is_version",
    "now_iso",
    "only_model",
]
