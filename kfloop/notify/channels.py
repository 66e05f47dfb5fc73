"""Where notifications go: the typed :class:`NotifyConfig`, read from YAML (local or ``gs://``), with
``${ENV_NAME}`` substitution in channel URLs and redaction of secrets for records.

A channel is an apprise URL: ``slack://...``, ``mailto://`` / ``mailtos://`` (email), ``json://`` /
``jsons://`` (generic JSON webhook), or kfloop's own ``kfloop-webhook(s)://`` (signed) and
``kfloop-file://`` (:mod:`kfloop.notify.plugins`). Secrets belong in environment variables: write
``slack://${SLACK_TOKEN_A}/${SLACK_TOKEN_B}/${SLACK_TOKEN_C}/#ops``; the record keeps the URL as written
(never the substituted secret), redacted once more in case a secret was written into it.

Importing runs nothing (PyYAML and apprise are imported by the functions that need them).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import urllib.parse

from kfloop import config as _cfg
from kfloop import fs

#: The environment variable naming the notification config when the caller passes ``""``.
CONFIG_ENV = "KFLOOP_NOTIFY_CONFIG"
#: Where a cluster task finds the notification config (the ``kfloop-notify`` Secret, key ``notify.yaml``,
#: mounted by :func:`pipelines.settings.notify_access`; :class:`kfloop.config.ClusterConfig`).
MOUNTED_CONFIG = f"{_cfg.ClusterConfig().notify_mount}/notify.yaml"
#: The YAML keys of a notification config file.
CONFIG_KEYS = ("channels", "retries", "backoff_seconds", "timeout_seconds")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Query parameters whose values are secrets (redacted in records).
_SECRET_PARAMS = re.compile(r"(pass|secret|token|key|auth|sig|webhook|cred)", re.IGNORECASE)
_MASK = "***"


class NotifyConfigError(ValueError):
    """A notification config is not valid or cannot be read; the message names the key or the file."""


@dataclasses.dataclass(frozen=True)
class NotifyConfig:
    """Notification channels and delivery settings.

    Attributes:
        channels: Apprise URLs, as written (``${ENV_NAME}`` substituted at delivery).
        retries: Attempts per channel (1 = no retry).
        backoff_seconds: Sleep before the n-th retry (n = 0, 1, ...): ``backoff_seconds * 2**n``.
        timeout_seconds: Connect and read timeout of one attempt (apprise's ``cto`` / ``rto``).
    """

    channels: tuple[str, ...] = ()
    retries: int = 3
    backoff_seconds: float = 0.5
    timeout_seconds: float = 10.0

    def __post_init__(self):
        chans = self.channels
        if isinstance(chans, str) or not isinstance(chans, list | tuple):
            raise NotifyConfigError(f"notify channels must be a list of URLs, got {chans!r}")
        for i, c in enumerate(chans):
            if not isinstance(c, str) or "://" not in c:
                raise NotifyConfigError(f"notify channels[{i}] must be a URL (scheme://...), got {c!r}")
        object.__setattr__(self, "channels", tuple(c.strip() for c in chans))
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 1 <= self.retries <= 20:
            raise NotifyConfigError(f"notify retries must be an integer in 1..20, got {self.retries!r}")
        for name, lo_open in (("backoff_seconds", False), ("timeout_seconds", True)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise NotifyConfigError(f"notify {name} must be a finite number, got {v!r}")
            if v < 0 or (lo_open and v == 0):
                raise NotifyConfigError(f"notify {name} must be {'>' if lo_open else '>='} 0, got {v!r}")


def parse_config(data, origin: str = "notify config") -> NotifyConfig:
    """A :class:`NotifyConfig` from a parsed YAML mapping.

    Raises:
        NotifyConfigError: not a mapping, an unknown key (named, with the known ones) or a bad value.
    """
    if data is None:
        return NotifyConfig()
    if not isinstance(data, dict):
        raise NotifyConfigError(f"{origin}: must be a mapping with keys {', '.join(CONFIG_KEYS)}")
    unknown = sorted(str(k) for k in data if k not in CONFIG_KEYS)
    if unknown:
        raise NotifyConfigError(
            f"{origin}: unknown key {', '.join(map(repr, unknown))} (known: {', '.join(CONFIG_KEYS)})"
        )
    try:
        return NotifyConfig(**{**data, "channels": data.get("channels") or ()})
    except NotifyConfigError as e:
        raise NotifyConfigError(f"{origin}: {e}") from None


def load_config(config: str = "") -> NotifyConfig:
    """The notification config named by ``config``.

    Args:
        config: ``""``: the env var ``KFLOOP_NOTIFY_CONFIG``, else :data:`MOUNTED_CONFIG` when a cluster task
            has the Secret mounted (neither: no channels); a path or URI
            (``gs://`` too) of a YAML file ``{channels: [url, ...], retries: 3, backoff_seconds: 0.5,
            timeout_seconds: 10}``; or one channel URL itself (any scheme but ``gs://`` / ``file://``),
            with the default settings.

    Raises:
        NotifyConfigError: the file cannot be read or parsed, or its content is not valid.
    """
    text = str(config or "").strip() or os.environ.get(CONFIG_ENV, "").strip()
    if not text and os.path.isfile(MOUNTED_CONFIG):  # a cluster task with the notify Secret mounted
        text = MOUNTED_CONFIG
    if not text:
        return NotifyConfig()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme and scheme not in ("gs", "file"):
        return NotifyConfig(channels=(text,))
    uri = text[len("file://") :] if scheme == "file" else text
    try:
        raw = fs.read_text(uri)
    except Exception as e:
        raise NotifyConfigError(f"notify config {uri}: cannot be read ({type(e).__name__}: {e})") from None
    import yaml

    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise NotifyConfigError(f"notify config {uri}: not YAML ({' '.join(str(e).split())})") from None
    return parse_config(data, f"notify config {uri}")


def substitute(url: str) -> str:
    """``url`` with every ``${NAME}`` replaced by the environment variable's value.

    Raises:
        NotifyConfigError: a named variable is not set (the message names it, never a value).
    """

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise NotifyConfigError(
                f"channel URL names ${{{name}}} but the environment variable {name} is not set"
            )
        return os.environ[name]

    return _ENV_RE.sub(one, url)


def env_names(url: str) -> list[str]:
    """The environment variables ``url`` names as ``${NAME}``, in order."""
    return _ENV_RE.findall(url)


def load_channels(config: str = "") -> list[str]:
    """The channel URLs of :func:`load_config`, with ``${ENV_NAME}`` substituted (ready for apprise).

    Raises:
        NotifyConfigError: as :func:`load_config` and :func:`substitute`.
    """
    return [substitute(c) for c in load_config(config).channels]


def _mask(value: str) -> str:
    return value if not value or _ENV_RE.fullmatch(value) else _MASK


def redact(url: str) -> str:
    """``url`` safe to record: password, secret-looking query values and token path parts masked.

    ``${NAME}`` placeholders are kept (they name a variable, not a secret). The user, host, port and the
    path of ``kfloop-*``, ``json(s)``, ``mailto(s)`` and other host-addressed schemes are kept; for
    token-addressed services (Slack, Discord, Telegram, ...: whatever apprise addresses by token), every
    path segment and the host are masked unless they are placeholders or a ``#channel`` / ``@user``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _MASK
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    host_part = netloc.rsplit("@", 1)[-1]
    user = ""
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        name, sep, password = userinfo.partition(":")
        user = f"{name}:{_mask(password)}@" if sep else f"{name}@"
    path = parts.path
    if scheme not in _HOST_SCHEMES and not scheme.startswith("kfloop"):
        host_part = _token_mask(host_part)
        path = "/".join(_token_mask(seg) for seg in path.split("/"))
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    safe_query = "&".join(
        f"{k}={_mask(v) if _SECRET_PARAMS.search(k) and k != 'secret_env' else v}" for k, v in query
    )
    out = f"{parts.scheme}://{user}{host_part}{path}"
    return out + (f"?{safe_query}" if safe_query else "") + (f"#{parts.fragment}" if parts.fragment else "")


#: Schemes whose host and path address a server, not a token (kept in records).
_HOST_SCHEMES = frozenset(
    {"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos", "http", "https", "ntfy", "ntfys"}
)


def _token_mask(seg: str) -> str:
    if not seg or _ENV_RE.fullmatch(seg) or seg.startswith(("#", "@", "+")) or len(seg) < 6:
        return seg
    return _MASK
