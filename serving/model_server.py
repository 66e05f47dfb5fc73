"""The kserve ``ModelServer`` of ``python -m serving``: the model repository API locked, kfloop's SIGTERM
sequence (readiness 503 at once, the listeners closed after ``--shutdown-delay``, in-flight requests
finished) and, when gRPC is on, :class:`serving.grpc_v2.GRPCFront` in place of kserve's own gRPC server,
closed together with the HTTP listener.
"""

from __future__ import annotations

import logging
import signal
import time

from kfloop import config


def model_server_class():
    """kserve.ModelServer with the repository API locked and kfloop's SIGTERM sequence."""
    import asyncio

    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    class LockedRepository(ModelRepositoryExtension):
        """Model load / unload refused (also on gRPC): versions change through the store's aliases."""

        async def load(self, model_name: str) -> None:
            raise InvalidInput(
                "the model repository API is disabled; versions change through the store's aliases"
            )

        async def unload(self, model_name: str) -> None:
            raise InvalidInput(
                "the model repository API is disabled; versions change through the store's aliases"
            )

    class ModelServer(kserve.ModelServer):
        def __init__(self, *a, model, cfg: config.ServingConfig, **kw):
            super().__init__(*a, **kw)
            self.model_repository_extension = LockedRepository(model_registry=self.registered_models)
            self._model = model
            self._cfg = cfg
            self.shutdown_started: float | None = None
            self.grpc_front = None  # serving.grpc_v2.GRPCFront, when gRPC is on

        async def _serve(self):
            if self.grpc_front is None:
                return await super()._serve()
            grpc_task = asyncio.ensure_future(self.grpc_front.serve())
            try:
                await asyncio.gather(*self.servers, asyncio.shield(grpc_task))
            finally:  # the HTTP server returned (signal): the gRPC one stops too, in-flight RPCs finished
                await self.grpc_front.stop()
                await grpc_task

        def setup_event_loop(self):  # called after the REST server is built, before it runs
            super().setup_event_loop()
            uv = self._rest_server._server
            exit_now = uv.handle_exit  # uvicorn: stop accepting, wait for connections, then return
            model, delay = self._model, self._cfg.shutdown_delay_s
            log = logging.getLogger("kfloop.serving")

            def handle_exit(sig, frame):
                first = self.shutdown_started is None
                if first:
                    self.shutdown_started = time.monotonic()
                    model.begin_drain()
                    log.info("signal %s: readiness now 503; closing the listener in %.1f s", sig, delay)
                loop = model.loop
                if first and sig == signal.SIGTERM and delay > 0 and loop is not None:
                    loop.call_soon_threadsafe(loop.call_later, delay, exit_now, sig, None)
                else:
                    exit_now(sig, frame)

            uv.handle_exit = handle_exit
            close_listeners = uv.shutdown  # uvicorn: close the listeners, then wait for the connections
            drain_s = self._cfg.accept_drain_s

            async def shutdown(sockets=None):
                from serving.listener import drain_listeners

                await drain_listeners(uv.servers, uv.server_state.connections, drain_s)
                if self.grpc_front is None:
                    return await close_listeners(sockets)
                # both listeners close together; each finishes its in-flight requests
                await asyncio.gather(close_listeners(sockets), self.grpc_front.stop())

            uv.shutdown = shutdown

    return ModelServer
