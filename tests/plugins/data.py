"""Fixtures: the real taxi CSV and an ingested time split of it."""

from __future__ import annotations

import pytest

#: The taxi example's time split (``make run`` passes the same ``--cutoff``): trips before it train.
TAXI_CUTOFF = "2015-01-01"


@pytest.fixture(scope="session")
def taxi_csv():
    """Path of the real Chicago taxi CSV (fetched once into the data dir and cached there)."""
    from examples.taxi import fetch as data

    return data.fetch()


@pytest.fixture(scope="session")
def taxi_split(taxi_csv, taxi_spec, tmp_path_factory):
    """The taxi example's ingest split at :data:`TAXI_CUTOFF`: ``{"train": path, "eval": path, "live": path}``."""
    from kfloop.ingest import ingest

    out = tmp_path_factory.mktemp("split")
    paths = {k: str(out / f"{k}.csv") for k in ("train", "eval", "live")}
    ingest(str(taxi_csv), taxi_spec, TAXI_CUTOFF, paths["train"], paths["eval"], paths["live"])
    return paths
