"""The champion's reference data: the train / eval splits it was trained and evaluated on.

The store keeps each version's data window (``metadata.json`` → ``data_window``: ``start`` / ``end``, the
ingest cutoff). Ingest is deterministic (time split, hash hold-out), so re-ingesting the source with that
window rebuilds exactly the champion's train and eval splits.
"""

from __future__ import annotations

import os

from kfloop import config


class ReferenceError_(ValueError):
    """No champion, or its metadata has no data window; the message names the model and version."""


def champion_reference(store_uri: str, model_name: str, source: str, workdir: str) -> dict:
    """Resolves the champion and rebuilds its train / eval splits under ``workdir``.

    Returns:
        ``{"version", "train", "eval", "window": {"start", "end"}}`` (paths of Dataset CSVs).

    Raises:
        ReferenceError_: no champion, or no data window recorded for it.
    """
    from components.ingest.ingest import ingest
    from kfloop import store as kstore

    st = kstore.ModelStore(store_uri)
    try:
        version = st.resolve(model_name, kstore.CHAMPION)
        meta = st.metadata(model_name, version)
    except kstore.StoreError as e:
        raise ReferenceError_(f"no champion reference for model {model_name!r}: {e}") from None
    window = meta.get("data_window") or {}
    if not window.get("end"):
        raise ReferenceError_(
            f"model {model_name!r} version {version}: metadata.json has no data_window.end (the ingest cutoff)"
        )
    os.makedirs(workdir, exist_ok=True)
    paths = {k: os.path.join(workdir, f"{k}.csv") for k in ("train", "eval", "rest")}
    ingest(
        source,
        window["end"],
        paths["train"],
        paths["eval"],
        paths["rest"],
        window_start=window.get("start") or "",
        eval_fraction=float(meta.get("eval_fraction", config.DEFAULT_EVAL_FRACTION)),
    )
    return {"version": version, "train": paths["train"], "eval": paths["eval"], "window": window}
