"""Getting the Chicago taxi CSV: out of the ``tfx`` wheel, checked by sha256, cached on disk.

The CSV ships as it is in the wheel (no transformation); :mod:`examples.fetching` reads and verifies it.
The wheel is one given on the command line or one ``pip download`` gets (never the installed ``tfx``).
"""

from __future__ import annotations

from pathlib import Path

from examples import fetching
from examples.fetching import FetchError, data_dir

__all__ = ["FetchError", "data_dir", "extract_csv", "fetch", "is_valid"]

TFX_VERSION = "1.21.0"
MEMBER = "tfx/examples/chicago_taxi_pipeline/data/simple/data.csv"
SHA256 = "cdaf0b5931442ef47693f408f25a37af710aca23fccb90a78f00930e89548805"
FILENAME = "chicago_taxi.csv"
EXAMPLE = fetching.Example(
    MEMBER, SHA256, FILENAME, SHA256, package="tfx", version=TFX_VERSION, installed=False
)


def extract_csv(wheel: Path, target: Path, sha256: str = SHA256) -> Path:
    """Extracts the taxi CSV from a tfx wheel into ``target``, verifying its sha256 first.

    Nothing is written unless the checksum matches; the write is atomic.

    Raises:
        FetchError: the wheel lacks the file, or its checksum differs.
    """
    payload = fetching.read_member(MEMBER, sha256, wheel, package="tfx", version=TFX_VERSION, installed=False)
    return fetching.write_verified(payload, target, sha256)


def is_valid(path: Path, sha256: str = SHA256) -> bool:
    """Whether ``path`` exists and has the expected checksum."""
    return fetching.is_valid(path, sha256)


def fetch(directory: str | None = None, wheel: str | None = None, force: bool = False) -> Path:
    """Makes sure the taxi CSV is in the data directory and returns its path.

    Args:
        directory: Data directory (see :func:`data_dir`).
        wheel: A tfx wheel already on disk, instead of downloading one.
        force: Fetch again even when a verified copy is cached.

    Raises:
        FetchError: download failed or checksum mismatch (nothing half-written).
    """
    return EXAMPLE.fetch(directory, wheel, force)
