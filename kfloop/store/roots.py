"""Which directory is a model store's root (commands refuse to write into a store around the store's back)."""

from __future__ import annotations

import os
from pathlib import Path

from kfloop import fs, layout
from kfloop.store.names import (
    COMMIT_MARKER,
)


def is_store_root(path: str | os.PathLike) -> bool:
    """Whether a local directory is a model store's root: ``models/<name>/`` under it holds a version
    counter, an ``aliases/`` folder or a committed version."""
    models = Path(layout.models_root(str(path)))
    try:
        for m in models.iterdir():
            if (m / layout.COUNTER_FILE).is_file() or (m / layout.ALIASES_DIR).is_dir():
                return True
            if any((v / COMMIT_MARKER).is_file() for v in m.glob("v*")):
                return True
    except OSError:  # no models/ folder (or not readable): not a store
        return False
    return False


def containing_store(path: str | os.PathLike, store_uri: str | None = None) -> str | None:
    """The root of the model store that a path lies in (the root itself included), or None.

    ``store_uri`` (local or ``gs://``) is such a root whatever it holds; a local path is also checked
    against every directory above it (:func:`is_store_root`). Commands use this to refuse writing into a
    store other than through :class:`ModelStore` and :mod:`kfloop.predlog`.
    """
    path = str(path)
    if store_uri:
        root = str(store_uri).removeprefix("file://")
        if fs.is_gcs(root) or fs.is_gcs(path):
            if fs.is_gcs(root) and fs.is_gcs(path):
                r = root.rstrip("/")
                if path.rstrip("/") == r or path.startswith(r + "/"):
                    return r
        else:
            r = os.path.realpath(root)
            p = os.path.realpath(path)
            if p == r or p.startswith(r.rstrip("/") + "/"):
                return r
    if fs.is_gcs(path):
        return None
    p = Path(os.path.realpath(path))
    for a in (p, *p.parents):
        if is_store_root(a):
            return str(a)
    return None
