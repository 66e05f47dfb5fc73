"""Getting the Chicago taxi CSV: out of the ``tfx`` wheel, checked by sha256, cached on disk."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TFX_VERSION = "1.21.0"
MEMBER = "tfx/examples/chicago_taxi_pipeline/data/simple/data.csv"
SHA256 = "cdaf0b5931442ef47693f408f25a37af710aca23fccb90a78f00930e89548805"
FILENAME = "chicago_taxi.csv"
DEFAULT_DATA_DIR = "data"


class FetchError(RuntimeError):
    """The taxi CSV could not be fetched or did not verify; the message is one readable line."""


def data_dir(explicit: str | None = None) -> Path:
    """The data directory: ``explicit``, else ``$KFLOOP_DATA_DIR``, else ``./data``."""
    return Path(explicit or os.environ.get("KFLOOP_DATA_DIR") or DEFAULT_DATA_DIR)


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
    cmd += ["--dest", str(dest), f"tfx=={TFX_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("tfx-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"could not download tfx=={TFX_VERSION} with pip (offline?): {last}")
    return wheels[0]


def extract_csv(wheel: Path, target: Path, sha256: str = SHA256) -> Path:
    """Extracts the taxi CSV from a tfx wheel into ``target``, verifying its sha256 first.

    Nothing is written unless the checksum matches; the write is atomic.

    Raises:
        FetchError: the wheel lacks the file, or its checksum differs.
    """
    try:
        with zipfile.ZipFile(wheel) as z:
            payload = z.read(MEMBER)
    except (KeyError, zipfile.BadZipFile) as e:
        raise FetchError(f"{wheel} does not hold {MEMBER}: {e}") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise FetchError(f"checksum mismatch for {MEMBER}: expected sha256 {sha256}, got {digest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.replace(tmp, target)
    return target


def is_valid(path: Path, sha256: str = SHA256) -> bool:
    """Whether ``path`` exists and has the expected checksum."""
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def fetch(directory: str | None = None, wheel: str | None = None, force: bool = False) -> Path:
    """Makes sure the taxi CSV is in the data directory and returns its path.

    Args:
        directory: Data directory (see :func:`data_dir`).
        wheel: A tfx wheel already on disk, instead of downloading one.
        force: Fetch again even when a verified copy is cached.

    Raises:
        FetchError: download failed or checksum mismatch (nothing half-written).
    """
    target = data_dir(directory) / FILENAME
    if not force and is_valid(target):
        return target
    if wheel:
        return extract_csv(Path(wheel), target)
    with tempfile.TemporaryDirectory(prefix="kfloop-tfx-") as tmp:
        return extract_csv(_download_wheel(Path(tmp)), target)
