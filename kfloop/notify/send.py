"""One call for a pipeline step: build the :class:`~kfloop.notify.events.Event` and :func:`emit` it; never raises.

A step's event fields come from its own records (a NaN in a comparison, a reason longer than a line): an
event that cannot be built is recorded as such in the returned dict, never a failed step.
"""

from __future__ import annotations


def send(store_uri: str, *, config: str = "", **fields) -> dict:
    """Builds ``Event(**fields)`` and emits it (:func:`kfloop.notify.deliver.emit`).

    Returns:
        The event record (with its delivery attempts), or ``{"event_id": None, "error": ...}`` when the
        event could not be built.
    """
    from kfloop.notify.deliver import emit
    from kfloop.notify.events import Event

    try:
        if "details" in fields:
            fields["details"] = _finite(fields["details"])
        event = Event(**fields)
    except Exception as e:  # a step never fails on its notification
        return {"event_id": None, "type": fields.get("type"), "error": f"{type(e).__name__}: {e}"[:500]}
    return emit(store_uri, event, config=config)


def _finite(value):
    """JSON-ready copy with non-finite floats as None (events are strict JSON)."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
