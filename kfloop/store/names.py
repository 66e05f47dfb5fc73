"""Names, errors and checks of the model store: model names, aliases, version ids, manifest paths.

Only the standard library is imported (the store also runs in the serving env).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import os
import re
from pathlib import Path, PurePosixPath

from kfloop import layout

CHAMPION = "champion"
CANARY = "canary"
COMMIT_MARKER = layout.COMMIT_MARKER
CLAIM_MARKER = layout.CLAIM_MARKER

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_ALIAS_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_VERSION_RE = re.compile(r"v\d{4,9}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CAS_RETRIES = 20
_CLAIM_RETRIES = 20


class StoreError(Exception):
    """Anything the store refuses or cannot find; the message names the model / version / alias / file."""


class ModelNotFound(StoreError, LookupError):
    """No such model, committed version, or alias."""


class InvalidName(StoreError, ValueError):
    """A model name, alias or version that does not match its pattern."""


class CorruptStore(StoreError):
    """A store file that is unreadable, not the JSON it should be, or does not match its manifest."""


class AliasConflict(StoreError):
    """A compare-and-swap on an alias lost: the alias was not (any more) what the caller expected."""

    def __init__(self, name: str, alias: str, expected: str | None, actual: str | None, wanted: str | None):
        self.name, self.alias, self.expected, self.actual, self.wanted = name, alias, expected, actual, wanted
        super().__init__(
            f"alias {alias!r} of model {name!r} was changed concurrently: expected {expected!r}, "
            f"found {actual!r}; not moved to {wanted!r} (re-read the alias and try again)"
        )


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: ``expected=ANY`` (the default of :meth:`ModelStore.set_alias`): move the alias whatever it points to
#: now (still a compare-and-swap against the value just read, retried if someone writes in between).
ANY = _Any()


def now_iso() -> str:
    """The current UTC time as ``2026-11-23T12:00:00.123456Z``."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stamp(iso: str) -> str:
    return iso.replace("-", "").replace(":", "").replace(".", "")


def default_actor() -> str:
    """Who is acting: ``$KFLOOP_ACTOR``, else the OS user, else ``"unknown"``."""
    actor = os.environ.get("KFLOOP_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_model_name(name: str) -> str:
    """Returns ``name`` if it is a valid model name (it becomes a path component everywhere).

    Valid: 1-63 characters, lowercase letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit
    (so never ``..``, a slash or a newline).

    Raises:
        InvalidName: (a :class:`StoreError` and a ``ValueError``) anything else.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"invalid model name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


_check_name = check_model_name


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.fullmatch(alias) or _VERSION_RE.fullmatch(alias):
        shown = alias if not isinstance(alias, str) or len(alias) <= 40 else alias[:40] + "..."
        raise InvalidName(f"invalid alias {shown!r}: use lowercase letters, digits and '-' (e.g. 'champion')")
    return alias


def is_version(ref: str) -> bool:
    """Whether ``ref`` is a version id (``v0001``; 4 to 9 digits) rather than an alias."""
    return isinstance(ref, str) and bool(_VERSION_RE.fullmatch(ref))


def _check_ref(ref) -> str:
    ref = str(ref)
    if ref[:1] == "v" and ref[1:].isdigit() and not is_version(ref):
        shown = ref if len(ref) <= 20 else f"{ref[:12]}... ({len(ref)} characters)"
        raise InvalidName(f"invalid version {shown!r}: versions are 'v' and 4 to 9 digits (e.g. 'v0001')")
    return ref


def _check_version(name: str, version: str) -> str:
    """Returns ``version`` if ``name`` is a valid model name and ``version`` a version id.

    Raises:
        InvalidName: either is not.
    """
    check_model_name(name)
    if not is_version(version):
        raise InvalidName(
            f"invalid version {_check_ref(version)!r} of model {name!r} (versions look like 'v0001')"
        )
    return version


def _check_manifest_path(uri: str, rel) -> str:
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise CorruptStore(f"{uri}: manifest entry {rel!r} is not a relative file path")
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise CorruptStore(
            f"{uri}: manifest entry {rel!r} is absolute or leaves the version directory; refusing it"
        )
    return rel


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)
