"""Delivery of one event to every configured channel, with retries, and its record in the store.

:func:`emit` never raises: a broken config, an unreachable channel or a store that cannot be written
becomes a recorded failure (or, when even the record cannot be written, a returned dict with ``error``), so
a failed channel never fails the pipeline step that reports a decision. The record
(``monitoring/<model>/events/<event_id>.json``, :func:`kfloop.records.write`) holds the event and every
delivery attempt; a retried step that emits the same event again (same id) re-sends only to the channels
that have not succeeded yet, and nothing once all have.
"""

from __future__ import annotations

import json
import logging
import time as _time
from collections.abc import Callable

from kfloop import clock, layout, records
from kfloop.notify import channels as C
from kfloop.notify import plugins
from kfloop.notify.events import Event

#: The record kind of events (``monitoring/<model>/events/``).
EVENTS = "events"
#: Record outcomes: every channel delivered; some did; none did; no channel configured; config unusable.
DELIVERED, PARTIAL, FAILED, NO_CHANNELS, CONFIG_ERROR = (
    "delivered",
    "partial",
    "failed",
    "no_channels",
    "config_error",
)
_MAX_ERROR = 2000


def _with_timeouts(url: str, seconds: float) -> str:
    """``url`` with apprise's connect / read timeouts (``cto`` / ``rto``) unless it sets them itself.

    Appended at the very end, as apprise reads its query there (after a Slack ``#channel`` too).
    """
    query = url.split("?", 1)[1] if "?" in url else ""
    keys = {p.split("=", 1)[0] for p in query.split("&") if p}
    extra = "&".join(f"{k}={seconds:g}" for k in ("cto", "rto") if k not in keys)
    return f"{url}{'&' if '?' in url else '?'}{extra}" if extra else url


def _problems(log: str) -> list[str]:
    """apprise's warnings and errors of one attempt, and the exception details it logs at debug level."""
    out = []
    for line in log.splitlines():
        level, _, msg = line.partition(" ")
        if level in ("WARNING", "ERROR", "CRITICAL") or (
            level == "DEBUG" and ("Exception" in msg.split(":", 1)[0] or msg.startswith("Response Details"))
        ):
            out.append(" ".join(msg.split()))
    return out


def _send_once(url: str, event: Event, timeout: float) -> tuple[bool, str | None]:
    """One delivery attempt through apprise: ``(ok, error)``, the error from apprise's log."""
    import apprise

    obj = apprise.Apprise()
    if not obj.add(_with_timeouts(plugins.to_apprise(url), timeout)):
        return False, "apprise does not accept this URL (unknown scheme or bad form)"
    if plugins.is_kfloop(url):
        body, fmt = json.dumps(event.to_dict(), sort_keys=True), apprise.NotifyFormat.TEXT
    else:
        body, fmt = event.text(), apprise.NotifyFormat.TEXT
    with apprise.LogCapture(level=logging.DEBUG, fmt="%(levelname)s %(message)s") as captured:
        try:
            ok = bool(
                obj.notify(
                    body=body,
                    title=event.title(),
                    notify_type=apprise.NotifyType(event.severity),
                    body_format=fmt,
                )
            )
        except Exception as e:
            ok, extra = False, f"{type(e).__name__}: {e}"
        else:
            extra = ""
        text = " | ".join(
            [*_problems(captured.getvalue()), extra] if extra else _problems(captured.getvalue())
        )
    return ok, None if ok else (text[:_MAX_ERROR] or "apprise reported a failure without a message")


def _deliver(
    template: str, event: Event, cfg: C.NotifyConfig, sleep: Callable[[float], None], start: int
) -> list[dict]:
    """Up to ``cfg.retries`` attempts on one channel; the attempts, numbered from ``start + 1``."""
    shown = C.redact(template)
    out: list[dict] = []
    try:
        url = C.substitute(template)
    except C.NotifyConfigError as e:
        return [
            {
                "channel": shown,
                "attempt": start + 1,
                "ok": False,
                "error": str(e),
                "at": clock.iso(clock.utc_now()),
                "seconds": 0.0,
            }
        ]
    for n in range(cfg.retries):
        at, t0 = clock.utc_now(), _time.perf_counter()
        try:
            ok, error = _send_once(url, event, cfg.timeout_seconds)
        except Exception as e:
            ok, error = False, f"{type(e).__name__}: {e}"
        if error:  # a substituted secret never reaches the record
            error = _scrub(error, template)
        out.append(
            {
                "channel": shown,
                "attempt": start + n + 1,
                "ok": ok,
                "error": error,
                "at": clock.iso(at),
                "seconds": round(_time.perf_counter() - t0, 4),
            }
        )
        if ok or (error or "").startswith("apprise does not accept"):
            break
        if n + 1 < cfg.retries:
            sleep(cfg.backoff_seconds * 2**n)
    return out


def _scrub(text: str, template: str) -> str:
    """``text`` with the values substituted into ``template`` (its ``${NAME}`` variables) masked."""
    import os

    for name in C.env_names(template):
        value = os.environ.get(name, "")
        if len(value) >= 3:
            text = text.replace(value, "***")
    return text


def _outcome(chans: list[str], ok_by_channel: dict[str, bool]) -> str:
    if not chans:
        return NO_CHANNELS
    done = sum(bool(ok_by_channel.get(c)) for c in chans)
    return DELIVERED if done == len(chans) else PARTIAL if done else FAILED


def emit(
    store_uri: str, event: Event, config: str = "", *, sleep: Callable[[float], None] = _time.sleep
) -> dict:
    """Delivers ``event`` to every configured channel and records it with every attempt. Never raises.

    Args:
        store_uri: Store root (local or ``gs://``); the record goes to
            ``monitoring/<model>/events/<event_id>.json``.
        event: The :class:`~kfloop.notify.Event`.
        config: Notification config (:func:`kfloop.notify.load_config`): ``""`` = env ``KFLOOP_NOTIFY_CONFIG``
            (unset: no channels; the event is still recorded), a YAML file's path / URI, or one channel URL.
        sleep: The backoff sleep (tests inject a fast one).

    Returns:
        The record: the event's fields (:meth:`Event.to_dict`), ``channels`` (redacted URLs), ``attempts``
        (``{channel, attempt, ok, error, at, seconds}`` each, across emits of this id), ``delivered``
        (redacted URL -> bool), ``outcome`` (``delivered`` | ``partial`` | ``failed`` | ``no_channels`` |
        ``config_error``), ``config_error`` (or None), ``deduplicated`` (True when this call sent nothing
        because every channel had already delivered), ``record_uri`` and ``error`` (None, or why the
        record could not be written / the event could not be handled).
    """
    try:
        return _emit(store_uri, event, config, sleep)
    except Exception as e:
        return {
            "error": f"notify: {type(e).__name__}: {e}",
            "outcome": FAILED,
            "attempts": [],
            "record_uri": None,
        }


def _previous(store_uri: str, event: Event) -> dict | None:
    from kfloop import fs

    uri = layout.record(store_uri, event.model, EVENTS, event.event_id)
    try:
        if not fs.exists(uri):
            return None
        old = json.loads(fs.read_text(uri))
    except Exception:
        return None
    return old if isinstance(old, dict) else None


def _emit(store_uri: str, event: Event, config: str, sleep) -> dict:
    if not isinstance(event, Event):
        raise TypeError(f"emit needs a kfloop.notify.Event, got {type(event).__name__}")
    old = _previous(store_uri, event) or {}
    attempts = list(old.get("attempts") or [])
    delivered = dict(old.get("delivered") or {})
    config_error = None
    try:
        cfg = C.load_config(config)
    except C.NotifyConfigError as e:
        cfg, config_error = C.NotifyConfig(), str(e)
    chans = [C.redact(c) for c in cfg.channels]
    pending = [(t, s) for t, s in zip(cfg.channels, chans, strict=True) if not delivered.get(s)]
    sent_now = False
    if pending:
        plugins.register()
    for template, shown in pending:
        start = sum(1 for a in attempts if a.get("channel") == shown)
        new = _deliver(template, event, cfg, sleep, start)
        attempts += new
        delivered[shown] = any(a["ok"] for a in new)
        sent_now = True
    outcome = CONFIG_ERROR if config_error else _outcome(chans, delivered)
    record = {
        **event.to_dict(),
        "channels": chans,
        "attempts": attempts,
        "delivered": {c: bool(delivered.get(c)) for c in chans},
        "outcome": outcome,
        "config_error": config_error,
        "deduplicated": bool(old) and not sent_now and bool(chans),
        "recorded_at": clock.iso(clock.utc_now()),
        "error": None,
    }
    if record["deduplicated"]:
        record["recorded_at"] = old.get("recorded_at", record["recorded_at"])
        record["record_uri"] = layout.record(store_uri, event.model, EVENTS, event.event_id)
        return record
    try:
        record["record_uri"] = records.write(store_uri, event.model, EVENTS, event.event_id, record)
    except Exception as e:
        record["record_uri"] = None
        record["error"] = f"the event record could not be written: {type(e).__name__}: {e}"
    return record


def read_events(store_uri: str, model: str) -> list[dict]:
    """Every recorded event of ``model``, oldest first (by event time, then id).

    Raises:
        kfloop.store.InvalidName: ``model`` is not a valid model name.
    """
    return records.read_all(
        store_uri, model, EVENTS, sort_key=lambda r: (str(r.get("time", "")), str(r.get("event_id", "")))
    )


def describe(record: dict) -> str:
    """One line saying where an emitted event went, e.g. for ``make run``'s output."""
    head = f"{record.get('type', '?')} {record.get('model', '')} {record.get('version') or ''}".strip()
    if record.get("config_error"):
        return f"{head}: notify config error: {record['config_error']}"
    chans = record.get("channels") or []
    if not chans:
        return f"{head}: recorded, no notification channel configured"
    by = {}
    for a in record.get("attempts") or []:
        by.setdefault(a["channel"], []).append(a)
    parts = []
    for c in chans:
        tries = by.get(c, [])
        ok = record.get("delivered", {}).get(c)
        parts.append(f"{c} {'ok' if ok else 'FAILED'} ({len(tries)} attempt{'s' if len(tries) != 1 else ''})")
    return f"{head}: " + "; ".join(parts)
