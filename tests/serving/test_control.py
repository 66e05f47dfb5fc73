"""The predictor's control surface: repository API closed, docs hidden, liveness = can the model still serve."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from tests.serving.conftest import MODEL
from tests.serving.test_server import v1_body

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")


def test_repository_api_is_closed_and_the_pod_stays_in_service(small_server, taxi_rows):
    frame, _ = taxi_rows
    server = small_server
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path in (
            f"/v2/repository/models/{MODEL}/unload",
            f"/v2/repository/models/{MODEL}/load",
            "/v2/repository/index",
        ):
            r = c.post(path, json={})
            assert r.status_code == 403 and "disabled" in r.json()["error"], (path, r.text)
        assert c.get("/v2/repository/index").status_code == 403
        # The unload above changed nothing: ready, live, predicting.
        for path in (
            "/",
            "/v2/health/live",
            "/v2/health/ready",
            f"/v2/models/{MODEL}/ready",
            f"/v1/models/{MODEL}",
        ):
            r = c.get(path)
            assert r.status_code == 200, (path, r.text)
        assert c.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get(f"/v1/models/{MODEL}").json() == {"name": MODEL, "ready": True}
        assert c.post(f"/v1/models/{MODEL}:predict", json=v1_body(frame.iloc[:2])).status_code == 200
        # Not served on the public port: the OpenAPI document (it would list kserve's routes, not ours) and UIs.
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert c.get(path).status_code == 404, path
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert "kfloop_prediction_log_written_total" in metrics.text
        assert "kfloop_requests_shed_total" in metrics.text
        # Other model names still get kserve's 404, not our answers.
        assert c.get("/v2/models/other/ready").status_code == 404


@pytest.fixture
def asgi(demo_model_dirs, tmp_path):
    """The HTTP layer in process over the real model (no kserve behind it: any other route is 404)."""
    from kfloop import config
    from serving import http
    from serving.model import ModelSource, Predictor

    async def not_found(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    cfg = dataclasses.replace(config.ServingConfig(), max_call_seconds=5.0)
    model = Predictor(MODEL, ModelSource(MODEL, model_dir=demo_model_dirs[0], workdir=str(tmp_path)), cfg)
    model.load()
    model.start()
    app = http.PredictorApp(not_found, model, cfg.max_body_bytes)
    return model, app


def _health(app) -> dict[str, int]:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            live = (await c.get("/v2/health/live")).status_code
            root = (await c.get("/")).status_code
            ready = (await c.get("/v2/health/ready")).status_code
            mready = (await c.get(f"/v2/models/{MODEL}/ready")).status_code
            v1ready = (await c.get(f"/v1/models/{MODEL}")).status_code
        assert live == root and ready == mready == v1ready
        return {"live": live, "ready": ready}

    return asyncio.run(go())


def test_liveness_fails_once_the_model_cannot_serve(asgi):
    model, app = asgi
    assert _health(app) == {"live": 200, "ready": 200}
    model.ready = False  # what kserve's unload does (ModelRepository.unload -> model.stop())
    assert _health(app) == {"live": 503, "ready": 503}
    model.ready = True
    current, model.current = model.current, None
    assert _health(app) == {"live": 503, "ready": 503}
    model.current = current
    model.batcher.call_started = time.monotonic() - 6.0  # a model call stuck past max_call_seconds
    assert _health(app) == {"live": 503, "ready": 503}
    model.batcher.call_started = None

    async def dead_batcher():
        async def boom():
            raise RuntimeError("batcher crashed")

        task = asyncio.get_running_loop().create_task(boom())
        await asyncio.gather(task, return_exceptions=True)
        return task

    model.batcher._task = asyncio.run(dead_batcher())
    assert _health(app) == {"live": 503, "ready": 503}
    model.batcher._task = None
    assert _health(app) == {"live": 200, "ready": 200}
    model.begin_drain()  # SIGTERM: not ready, still live
    assert _health(app) == {"live": 200, "ready": 503}


def test_repository_extension_refuses_load_and_unload_for_grpc_too():
    """The same lock behind kserve's gRPC RepositoryModelLoad / Unload (gRPC is off by default)."""
    from kserve.errors import InvalidInput

    from kfloop import config
    from serving.__main__ import _model_server_class
    from tests.serving.conftest import free_port

    server = _model_server_class()(
        http_port=free_port(), enable_grpc=False, model=None, cfg=config.ServingConfig()
    )
    for call in (server.model_repository_extension.load, server.model_repository_extension.unload):
        with pytest.raises(InvalidInput, match="disabled"):
            asyncio.run(call(MODEL))
