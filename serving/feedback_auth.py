"""Who may send labels: the bearer tokens ``POST /v1/models/<name>:feedback`` checks.

Labels decide canaries and retraining, so the predictor accepts them only from a known labeler. Each labeler
has a name and a token; a request carries ``Authorization: Bearer <token>`` and the label rows it writes record
the labeler's name (``labeler`` column of the feedback log).

Where the tokens come from (``python -m serving --feedback-tokens PATH``):

* a **directory**, as Kubernetes mounts a Secret: one file per labeler, the file name is the labeler's name and
  its content the token (``kubectl create secret generic kfloop-feedback-tokens --from-literal=labeler=...``;
  the ``..data`` links and other dot entries Kubernetes adds are skipped);
* a **file** of ``name:token`` lines (``#`` comments and blank lines allowed).

Comparison is constant-time (:func:`hmac.compare_digest`) against every token, so the answer time does not say
how much of a token matched or which labeler's it resembled.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path

#: A labeler's name: a Secret key / file name, also written into the feedback log.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: Shortest token accepted (a 128-bit random token in hex is 32 characters; 16 rules out passwords like
#: ``labeler1`` while allowing a base64 128-bit token).
MIN_TOKEN_CHARS = 16


class TokenError(ValueError):
    """The token source is unusable; the message names the file and the entry."""


def _check(name: str, token: str, where: str) -> None:
    if not NAME_RE.match(name):
        raise TokenError(
            f"{where}: labeler name {name!r} must be 1-63 letters, digits, '.', '_' or '-' (starting with a "
            "letter or digit)"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(
            f"{where}: the token of labeler {name!r} has {len(token)} characters; use at least "
            f"{MIN_TOKEN_CHARS} random ones (e.g. `openssl rand -hex 32`)"
        )
    if any(c.isspace() for c in token) or not token.isprintable():
        raise TokenError(f"{where}: the token of labeler {name!r} holds whitespace or control characters")


def load_tokens(path: str) -> dict[str, str]:
    """``{labeler name: token}`` from a mounted Secret directory or a ``name:token`` file.

    Raises:
        TokenError: the path is missing or holds no token, a name or token is malformed, or two labelers
            share a token (their labels could not be told apart).
    """
    p = Path(path)
    tokens: dict[str, str] = {}
    if p.is_dir():
        for entry in sorted(p.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                token = entry.read_text().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise TokenError(f"{entry}: cannot read the token ({e})") from None
            _check(entry.name, token, str(entry))
            tokens[entry.name] = token
    elif p.is_file():
        try:
            lines = p.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenError(f"{p}: cannot read ({e})") from None
        for i, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, token = line.partition(":")
            where = f"{p} line {i}"
            if not sep:
                raise TokenError(f"{where}: expected 'name:token'")
            name, token = name.strip(), token.strip()
            _check(name, token, where)
            if name in tokens:
                raise TokenError(f"{where}: labeler {name!r} appears twice")
            tokens[name] = token
    else:
        raise TokenError(f"{path}: no such file or directory (the feedback tokens)")
    if not tokens:
        raise TokenError(f"{path}: holds no token; feedback would refuse every labeler")
    seen: dict[str, str] = {}
    for name, token in tokens.items():
        if token in seen:
            raise TokenError(f"{path}: labelers {seen[token]!r} and {name!r} share a token")
        seen[token] = name
    return tokens


class Unauthorized(Exception):
    """A feedback request without valid credentials: ``status`` 401 (none / malformed) or 403 (wrong)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict:
        return {"error": self.message, "field": "authorization"}


class Authenticator:
    """Checks ``Authorization: Bearer <token>`` against the labelers' tokens.

    Args:
        tokens: ``{labeler name: token}`` (:func:`load_tokens`).
    """

    def __init__(self, tokens: dict[str, str]):
        if not tokens:
            raise TokenError("no feedback tokens")
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]

    @property
    def labelers(self) -> list[str]:
        return [name for name, _ in self._tokens]

    def labeler(self, header: bytes | None) -> str:
        """The name of the labeler whose token ``header`` (the raw Authorization value) carries.

        Raises:
            Unauthorized: 401 without a bearer token, 403 for a token that is nobody's.
        """
        if header is None:
            raise Unauthorized(
                401, "authorization: feedback needs the header 'Authorization: Bearer <labeler token>'"
            )
        scheme, _, credential = header.strip().partition(b" ")
        credential = credential.strip()
        if scheme.lower() != b"bearer" or not credential:
            raise Unauthorized(
                401,
                "authorization: expected 'Authorization: Bearer <labeler token>' (another scheme or no token)",
            )
        found = None
        for name, token in self._tokens:  # every token compared: the time does not depend on which matched
            if hmac.compare_digest(credential, token):
                found = name
        if found is None:
            raise Unauthorized(403, "authorization: the bearer token is not a labeler's token")
        return found


def from_path(path: str | None) -> Authenticator | None:
    """An :class:`Authenticator` for ``path`` (None: feedback unauthenticated, the local loop's default)."""
    if not path:
        return None
    return Authenticator(load_tokens(os.fspath(path)))
