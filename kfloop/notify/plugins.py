"""kfloop's own apprise channels, registered with apprise's custom-plugin decorator (``apprise.decorators.notify``).

Apprise schemes are ``[a-z0-9]`` only, so they are registered as ``kfloopwebhook``, ``kfloopwebhooks`` and
``kfloopfile``; the hyphenated spellings below are accepted in a config and translated (:func:`to_apprise`).

* ``kfloop-webhook://host:port/path?secret_env=NAME`` (``kfloop-webhooks://`` for HTTPS): POSTs the event's
  JSON with ``X-Kfloop-Event: <type>``, ``X-Kfloop-Event-Id: <id>`` and ``X-Kfloop-Signature:
  sha256=<hex HMAC-SHA256 of the body>``, keyed with the value of the environment variable ``NAME`` (the
  secret never appears in the URL). A receiver checks it with :func:`verify`. Without ``secret_env`` (or
  with the variable unset) nothing is sent: the attempt fails, naming the variable.
* ``kfloop-file:///abs/path.jsonl``: appends the event's JSON as one line (a local audit trail; what
  ``make run`` uses by default).

Both receive the event's full JSON as the body (:func:`kfloop.notify.emit` sends it to these schemes
instead of the text for people). A failure is logged on apprise's logger (captured into the attempt's
``error``) and returned as ``False``. Nothing is registered at import: :func:`register` does it, once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading

#: kfloop's schemes as written in channel URLs -> the apprise scheme registered for each (apprise's schemes
#: are ``[a-z0-9]{1,32}``, no hyphen; both spellings are accepted in a config).
SCHEMES = {
    "kfloop-webhook": "kfloopwebhook",
    "kfloop-webhooks": "kfloopwebhooks",
    "kfloop-file": "kfloopfile",
}
SIGNATURE_HEADER = "X-Kfloop-Signature"
EVENT_HEADER = "X-Kfloop-Event"
EVENT_ID_HEADER = "X-Kfloop-Event-Id"

_LOCK = threading.Lock()
_FILE_LOCK = threading.Lock()
_REGISTERED = False
_log = logging.getLogger("apprise")  # apprise.LogCapture captures this logger


def is_kfloop(url: str) -> bool:
    """Whether ``url`` is one of kfloop's channels (in either spelling): it receives the event JSON."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme in SCHEMES or scheme in SCHEMES.values()


def to_apprise(url: str) -> str:
    """``url`` with a hyphenated kfloop scheme replaced by the apprise scheme it is registered as."""
    scheme, sep, rest = url.partition("://")
    return f"{SCHEMES[scheme.lower()]}{sep}{rest}" if sep and scheme.lower() in SCHEMES else url


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` keyed with ``secret`` (the signature header's value)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str, secret: str) -> bool:
    """Whether ``signature`` (the header's value) is ``body``'s signature under ``secret`` (constant time)."""
    return hmac.compare_digest(sign(body, secret), str(signature or ""))


def _timeout(meta: dict) -> float:
    qsd = meta.get("qsd") or {}
    try:
        return float(qsd.get("rto") or qsd.get("cto") or 10.0)
    except ValueError:
        return 10.0


def _event_of(body: str) -> dict:
    try:
        event = json.loads(body)
    except ValueError:
        event = None
    if not isinstance(event, dict) or "type" not in event:
        raise ValueError("the body is not a kfloop event's JSON (send through kfloop.notify.emit)")
    return event


def _webhook(body, title, notify_type, *args, meta=None, **kwargs) -> bool:
    meta = meta or {}
    schema = meta.get("schema", "kfloopwebhook")
    try:
        event = _event_of(body)
        env = (meta.get("qsd") or {}).get("secret_env", "")
        if not env:
            raise ValueError(f"{schema}:// needs ?secret_env=NAME (the env var holding the signing key)")
        secret = os.environ.get(env)
        if not secret:
            raise ValueError(f"{schema}://: the signing key's environment variable {env} is not set")
        host = meta.get("host")
        if not host:
            raise ValueError(f"{schema}:// URL has no host")
        port = f":{meta['port']}" if meta.get("port") else ""
        url = f"{'https' if schema.endswith('s') else 'http'}://{host}{port}{meta.get('fullpath') or '/'}"
        data = body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: str(event["type"]),
            EVENT_ID_HEADER: str(event.get("event_id", "")),
            SIGNATURE_HEADER: sign(data, secret),
            "User-Agent": "kfloop-notify",
        }
        import requests

        resp = requests.post(
            url, data=data, headers=headers, timeout=_timeout(meta), verify=meta.get("verify", True)
        )
        if not 200 <= resp.status_code < 300:
            raise ValueError(f"{url} answered HTTP {resp.status_code}: {resp.text[:200]}")
    except Exception as e:
        _log.warning("kfloop webhook failed: %s: %s", type(e).__name__, e)
        return False
    return True


def _file(body, title, notify_type, *args, meta=None, **kwargs) -> bool:
    meta = meta or {}
    try:
        event = _event_of(body)
        path = ((meta.get("host") and "/" + meta["host"]) or "") + (meta.get("fullpath") or "")
        if not path.startswith("/") or path == "/":
            raise ValueError(
                f"kfloop-file:// needs an absolute file path (kfloop-file:///abs/path.jsonl), got {path!r}"
            )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        line = json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n"
        with _FILE_LOCK, open(path, "a", encoding="utf-8") as f:
            f.write(line)
    except Exception as e:
        _log.warning("kfloop file channel failed: %s: %s", type(e).__name__, e)
        return False
    return True


def register() -> None:
    """Registers kfloop's schemes with apprise (idempotent; called by :func:`kfloop.notify.emit`)."""
    global _REGISTERED
    with _LOCK:
        if _REGISTERED:
            return
        from apprise.decorators import notify

        notify(on=SCHEMES["kfloop-webhook"], name="kfloop signed webhook")(_webhook)
        notify(on=SCHEMES["kfloop-webhooks"], name="kfloop signed webhook (HTTPS)")(_webhook)
        notify(on=SCHEMES["kfloop-file"], name="kfloop JSON-lines file")(_file)
        _REGISTERED = True
