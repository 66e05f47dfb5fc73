"""Which model is in production now: the ``champion`` alias of the model store, as a model URI."""

from __future__ import annotations

from kfloop.store import CHAMPION, ModelNotFound, ModelStore


def champion_uri(store_uri: str, model_name: str) -> tuple[str, str]:
    """Resolves the current champion.

    Args:
        store_uri: Model store root (local directory or ``gs://bucket/prefix``).
        model_name: Name of the model in the store.

    Returns:
        ``(version, model_uri)``; ``("", "")`` when there is no champion yet (the first model).
    """
    store = ModelStore(store_uri)
    try:
        version = store.resolve(model_name, CHAMPION)
    except ModelNotFound:
        return "", ""
    return version, store.model_uri(model_name, version)
