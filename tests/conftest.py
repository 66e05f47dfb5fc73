"""Test tiers: unit tests, kfp.local runs, compiled-IR golden checks, and ``e2e`` (needs KFP_HOST)."""

import os

import pytest

pytest_plugins = ["tests.plugins.data", "tests.plugins.gcs", "tests.plugins.model"]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KFP_HOST"):
        return
    skip = pytest.mark.skip(reason="e2e: needs a Kubeflow cluster; set KFP_HOST=https://... to run")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
