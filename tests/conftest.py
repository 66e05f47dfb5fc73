"""Test tiers: unit tests, kfp.local runs, compiled-IR golden checks, and ``e2e`` (needs KFP_HOST)."""

import os

import pytest

pytest_plugins = [
    "tests.plugins.data",
    "tests.plugins.gcs",
    "tests.plugins.model",
    "tests.plugins.stops",
    "tests.plugins.receivers",
]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KFP_HOST"):
        return
    skip = pytest.mark.skip(reason="e2e: needs a Kubeflow cluster; set KFP_HOST=https://... to run")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


#: The taxi example's dataset spec (the only place tests learn the taxi columns from).
TAXI_SPEC_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "taxi", "spec.yaml"
)


@pytest.fixture(scope="session")
def taxi_spec():
    """The taxi example's :class:`kfloop.spec.DatasetSpec`."""
    from kfloop import spec

    return spec.load(TAXI_SPEC_PATH)
