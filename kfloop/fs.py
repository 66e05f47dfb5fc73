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


def write_bytes(uri: str, data: bytes) -> None:
    """Writes a whole file atomically: readers see the old content or the new, never a part."""
    if is_gcs(uri):
        bucket, key = split_gcs(uri)
        gcs_client().bucket(bucket).blob(key).upload_from_string(data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an artifact must stay readable by other steps
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(uri: str, text: str) -> None:
    """Writes a whole text file (UTF-8), atomically."""
    write_bytes(uri, text.encode("utf-8"))


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
