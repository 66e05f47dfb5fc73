"""Tiny file-system layer over local paths and ``gs://`` URIs.

Local paths are the embedded default; ``gs://bucket/key`` goes through google-cloud-storage, which honours
``STORAGE_EMULATOR_HOST`` (fake-gcs-server in tests). Nothing here runs at import time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def is_gcs(uri: str) -> bool:
    """Whether ``uri`` names a GCS object or prefix."""
    return str(uri).startswith("gs://")


def split_gcs(uri: str) -> tuple[str, str]:
    """Splits ``gs://bucket/key`` into ``(bucket, key)``.

    Raises:
        ValueError: ``uri`` is not a ``gs://`` URI with a bucket.
    """
    if not is_gcs(uri):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    rest = uri[len("gs://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI without a bucket: {uri!r}")
    return bucket, key


_CLIENT = None


def gcs_client():
    """A cached ``google.cloud.storage.Client`` (anonymous when talking to an emulator)."""
    global _CLIENT
    if _CLIENT is None:
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _CLIENT = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT", "kfloop-test"),
                credentials=AnonymousCredentials(),
            )
        else:
            _CLIENT = storage.Client()
    return _CLIENT


def reset_client() -> None:
    """Forgets the cached client (tests switch emulators between sessions)."""
    global _CLIENT
    _CLIENT = None


def join(base: str, *parts: str) -> str:
    """Joins URI parts with ``/`` (works for both local paths and ``gs://``)."""
    out = str(base).rstrip("/")
    for p in parts:
        out = f"{out}/{str(p).strip('/')}"
    return out


def read_bytes(uri: str) -> bytes:
    """Reads a whole file.

    Raises:
        FileNotFoundError: nothing is stored at ``uri``.
    """
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, key = split_gcs(uri)
        try:
            return gcs_client().bucket(bucket).blob(key).download_as_bytes()
        except NotFound:
            raise FileNotFoundError(uri) from None
    return Path(uri).read_bytes()


def read_text(uri: str) -> str:
    """Reads a whole text file (UTF-8)."""
    return read_bytes(uri).decode("utf-8")


#: HTTP statuses of a GCS call worth retrying (Google's retry guidance: 408, 429 and 5xx).
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: Attempts of one write (the first plus retries) and its backoff: 0.2 s, 0.4 s, 0.8 s, ... capped at 4 s,
#: each with up to 50 % random jitter (at most ~8 s of waiting in all).
WRITE_ATTEMPTS = 6
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 4.0


class GenerationMismatch(Exception):
    """A GCS write with ``if_generation_match=N`` (N > 0) found another generation (HTTP 412)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a GCS error is worth retrying: 408/429/5xx, a reset or refused connection, a timeout."""
    try:
        from google.api_core import exceptions as gx
    except ImportError:  # pragma: no cover - no GCS client installed
        gx = None
    if gx is not None and isinstance(exc, gx.GoogleAPICallError):
        return getattr(exc, "code", None) in TRANSIENT_STATUS
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    mod = type(exc).__module__
    if mod.startswith(("requests", "urllib3", "google.auth")):
        # requests.ConnectionError / ChunkedEncodingError / ReadTimeout, urllib3 protocol errors,
        # google.auth.exceptions.TransportError: the connection broke, the server may or may not have acted.
        return any(
            k in type(exc).__name__
            for k in ("Connection", "Timeout", "Protocol", "ChunkedEncoding", "Transport")
        )
    inner = exc.__cause__ or exc.__context__
    return inner is not None and inner is not exc and is_transient(inner)


def _backoff(attempt: int) -> None:
    import random
    import time

    delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * (2**attempt))
    time.sleep(delay * (1 + random.random() / 2))


def _gcs_write(uri: str, upload, if_generation_match: int | None, same_content) -> None:
    """Runs ``upload(blob, if_generation_match)`` with bounded exponential backoff on transient errors.

    A retried write-once upload (``if_generation_match=0``) that finds the object already there
    (HTTP 412) may be meeting its own earlier attempt whose response was lost: ``same_content(blob)``
    decides, and a match counts as success.
    """
    from google.api_core.exceptions import PreconditionFailed

    bucket, key = split_gcs(uri)
    b = gcs_client().bucket(bucket)
    for attempt in range(WRITE_ATTEMPTS):
        blob = b.blob(key)
        try:
            upload(blob, if_generation_match)
            return
        except PreconditionFailed:
            if if_generation_match == 0:
                if attempt > 0 and same_content(b.blob(key)):
                    return  # our earlier attempt landed; only its response was lost
                raise FileExistsError(uri) from None
            raise GenerationMismatch(uri) from None
        except Exception as e:
            if not is_transient(e) or attempt == WRITE_ATTEMPTS - 1:
                raise
            _backoff(attempt)


def write_bytes(uri: str, data: bytes, *, if_generation_match: int | None = None) -> None:
    """Writes a whole file atomically: readers see the old content or the new, never a part.

    On GCS the upload is retried with bounded exponential backoff (:data:`WRITE_ATTEMPTS`,
    :data:`BACKOFF_INITIAL_S`) on 408/429/5xx and broken connections (:func:`is_transient`); the client
    library's own retry is off, so there is one retry policy for every write.

    Args:
        uri: Local path or ``gs://bucket/key``.
        data: The content.
        if_generation_match: ``0``: write-once - create the file only if nothing is there (GCS
            precondition; locally an exclusive hard link), else :class:`FileExistsError`. ``N > 0`` (GCS
            only): compare-and-swap against generation N, else :class:`GenerationMismatch`. None: overwrite.

    Raises:
        FileExistsError: ``if_generation_match=0`` and the file exists (with other content, on a retry).
        GenerationMismatch: the object's generation is not ``if_generation_match``.
        google.api_core.exceptions.GoogleAPICallError: a non-transient GCS error, or retries exhausted.
    """
    if is_gcs(uri):

        def upload(blob, gen):
            kwargs = {} if gen is None else {"if_generation_match": gen}
            blob.upload_from_string(data, retry=None, **kwargs)

        def same(blob):
            try:
                return blob.download_as_bytes() == data
            except Exception:
                return False

        _gcs_write(uri, upload, if_generation_match, same)
        return
    _place_local(uri, lambda f: f.write(data), if_generation_match)


def _place_local(uri: str, fill, if_generation_match: int | None) -> None:
    """Writes a local file through a temporary file: renamed into place, or (write-once) hard-linked."""
    if if_generation_match not in (None, 0):
        raise ValueError(f"{uri}: if_generation_match={if_generation_match} applies to gs:// only")
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an artifact must stay readable by other steps
        if if_generation_match == 0:
            os.link(tmp, path)  # atomic and exclusive: FileExistsError if anything is there
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upload_file(path: str | os.PathLike, uri: str, *, if_generation_match: int | None = None) -> None:
    """Copies a local file to ``uri`` with the semantics and retries of :func:`write_bytes`.

    Local targets are written to a temporary name and renamed (or, write-once, hard-linked) into place.
    """
    if is_gcs(uri):

        def upload(blob, gen):
            kwargs = {} if gen is None else {"if_generation_match": gen}
            blob.upload_from_filename(str(path), retry=None, **kwargs)

        def same(blob):
            import base64
            import hashlib

            try:
                blob.reload()
                h = hashlib.md5()  # GCS keeps an MD5 of every object it stores in one piece
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                return blob.md5_hash == base64.b64encode(h.digest()).decode()
            except Exception:
                return False

        _gcs_write(uri, upload, if_generation_match, same)
        return
    import shutil

    def fill(f):
        with open(path, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)

    _place_local(uri, fill, if_generation_match)


def write_text(uri: str, text: str, *, if_generation_match: int | None = None) -> None:
    """Writes a whole text file (UTF-8), atomically (see :func:`write_bytes`)."""
    write_bytes(uri, text.encode("utf-8"), if_generation_match=if_generation_match)


def exists(uri: str) -> bool:
    """Whether a file exists at ``uri``."""
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        return gcs_client().bucket(bucket).blob(key).exists()
    return Path(uri).is_file()


def list_files(prefix: str) -> list[str]:
    """All files under a directory / prefix, recursively, as full URIs, sorted.

    A missing directory or an empty prefix yields an empty list.
    """
    if is_gcs(prefix):
        bucket, key = split_gcs(prefix)
        key = key.rstrip("/") + "/" if key else ""
        blobs = gcs_client().list_blobs(bucket, prefix=key)
        return sorted(f"gs://{bucket}/{b.name}" for b in blobs if not b.name.endswith("/"))
    root = Path(prefix)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def local_copy(uri: str, workdir: str | None = None) -> str:
    """Returns a local path holding ``uri`` (the path itself when local; a download for ``gs://``).

    For a ``gs://`` prefix (a directory such as a SavedModel) every object below it is downloaded.
    """
    if not is_gcs(uri):
        return str(uri)
    target = Path(workdir or tempfile.mkdtemp(prefix="kfloop-"))
    bucket, key = split_gcs(uri)
    files = list_files(uri)
    if not files:  # a single object
        out = target / Path(key).name
        out.write_bytes(read_bytes(uri))
        return str(out)
    for f in files:
        rel = f[len(f"gs://{bucket}/{key.rstrip('/')}/") :]
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(read_bytes(f))
    return str(target)
