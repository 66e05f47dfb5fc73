"""uvicorn's per-request access line: off by default (the prediction log records every prediction), on with
``--access-log``."""

from __future__ import annotations

import pytest

from tests.serving.conftest import MODEL
from tests.serving.test_server import v1_body

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")


@pytest.mark.parametrize("flag", [False, True], ids=["default", "--access-log"])
def test_access_line_only_with_the_flag(start_server, store_root, taxi_rows, flag):
    frame, _ = taxi_rows
    args = ["--store-uri", store_root, "--model-name", MODEL, "--no-prediction-log"]
    server = start_server(*args, *(["--access-log"] if flag else []))
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{server.url}/v1/models/{MODEL}:predict", json=v1_body(frame.iloc[:2]))
    assert r.status_code == 200, r.text
    assert server.stop() == 0
    lines = [ln for ln in server.log_text().splitlines() if f'"POST /v1/models/{MODEL}%3Apredict' in ln]
    assert len(lines) == (1 if flag else 0), lines
