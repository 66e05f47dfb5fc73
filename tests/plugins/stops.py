"""Fixtures: the Minneapolis stops CSV (examples/mpls_stops) and a seeded sample of it."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Stops in :func:`stops_sample`.
SAMPLE_ROWS = 6000


@pytest.fixture(scope="session")
def stops_csv() -> Path:
    """The full stops CSV, fetched once into the data directory (verified by sha256) and cached there."""
    from examples.mpls_stops import fetch

    return fetch.fetch()


@pytest.fixture(scope="session")
def stops_sample(stops_csv, tmp_path_factory) -> Path:
    """``SAMPLE_ROWS`` random stops (seeded) of the raw CSV, in the file's (time) order, as raw text."""
    import random

    lines = stops_csv.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    keep = sorted(random.Random(2017).sample(range(len(rows)), SAMPLE_ROWS))
    out = tmp_path_factory.mktemp("stops") / "stops_sample.csv"
    out.write_text(header + "".join(rows[i] for i in keep))
    return out
