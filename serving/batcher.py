"""Micro-batching on the event loop (:class:`Batcher`): concurrent requests become one model call, run in a
worker thread, each call logged as one item of the prediction log.

It knows the model only as a callable with ``version``, ``digest`` and ``log_schema`` (a
:class:`serving.model.LoadedModel`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time

import numpy as np


class _Pending:
    __slots__ = ("columns", "future", "model", "n", "request_id", "slot")

    def __init__(self, columns, n, future, request_id, slot, model=None):
        self.columns = columns
        self.model = model  # the LoadedModel whose decoder decoded the columns (None: whatever is current)
        self.n = n
        self.future = future
        self.request_id = request_id
        self.slot = slot  # its reserved room in the prediction log (a serving.log_queue.LogSlot), or None


class Batcher:
    """Micro-batching on the event loop: one model call at a time, in a worker thread.

    While the model runs, new requests queue up; when it is free, everything queued (up to
    ``max_batch_rows``) goes into the next call. A request decoded by one version's decoder is predicted by
    the current version if it has the same spec, else by the version that decoded it (after a hot reload to
    another spec, requests already decoded finish on the old one); one call never mixes specs. If requests
    are still being received when a batch is formed, it waits for them at most ``batch_wait_ms``. A lone
    request on an idle server never waits.
    """

    def __init__(self, get_model, max_batch_rows: int, batch_wait_ms: float):
        self.get_model = get_model
        self.max_batch_rows = max_batch_rows
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.receiving = 0  # requests whose body is being read / decoded (bumped by the HTTP layer)
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model-call")
        self.calls = 0
        self.rows = 0
        self.call_started: float | None = None  # monotonic start of the model call in progress
        self.prediction_log = None  # a PredictionLog: each model call is logged as ONE item (submit_batch)

    def problem(self) -> str | None:
        """Why the batcher can no longer serve (its task ended), or None."""
        task = self._task
        if task is not None and task.done():
            exc = None if task.cancelled() else task.exception()
            return f"micro-batcher stopped ({exc!r})" if exc else "micro-batcher stopped"
        return None

    async def submit(self, columns: dict, n: int, request_id: str = "", log_slot=None, model=None):
        """Predicts ``n`` rows (logged under ``request_id``, into ``log_slot`` if reserved) decoded by
        ``model``'s decoder (None: the current model's); returns ``(probabilities, version)``."""
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        fut = loop.create_future()
        self._queue.append(_Pending(columns, n, fut, request_id, log_slot, model))
        self._wakeup.set()
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [self._queue.popleft()]
            rows = batch[0].n
            model = self._model_for(batch[0])
            deadline = loop.time() + self.batch_wait_s
            while rows < self.max_batch_rows:
                if self._queue:
                    if rows + self._queue[0].n > self.max_batch_rows or not _same_spec(self._queue[0], model):
                        break
                    item = self._queue.popleft()
                    batch.append(item)
                    rows += item.n
                    continue
                if self.receiving <= 0 or loop.time() >= deadline:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), deadline - loop.time())
                except TimeoutError:
                    break
            self.call_started = time.monotonic()
            try:
                if model is None:
                    raise RuntimeError("no model loaded")
                if len(batch) == 1:
                    cols = batch[0].columns
                else:
                    cols = {
                        name: np.concatenate([p.columns[name] for p in batch]) for name in batch[0].columns
                    }
                probs = await loop.run_in_executor(self._executor, model, cols)
            except Exception as e:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            finally:
                self.call_started = None
            self.calls += 1
            self.rows += rows
            if self.prediction_log is not None:
                self._log(batch, cols, probs, model.version, model.log_schema)
            start = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result((probs[start : start + p.n], model.version))
                start += p.n

    def _model_for(self, p: _Pending):
        """The model that predicts ``p``: the current one if it has the spec that decoded ``p``."""
        current = self.get_model()
        if p.model is None or (current is not None and current.digest == p.model.digest):
            return current
        return p.model

    def _log(self, batch: list, cols: dict, probs, version: str, log_schema) -> None:
        """Logs one model call as one item; requests already cancelled (no answer sent) are left out.

        A call that mixes requests with and without reserved log room is logged per request, so rows that
        do not fit (unreserved) never take reserved ones down with them.
        """
        now = time.time()
        reserved = [p.slot is not None for p in batch]
        if all(not p.future.done() for p in batch) and (all(reserved) or not any(reserved)):
            slots = [p.slot for p in batch if p.slot is not None]
            self.prediction_log.submit_batch(
                [(p.request_id, p.n, now) for p in batch], version, cols, probs, slots, schema=log_schema
            )
            return
        start = 0
        for p in batch:
            if not p.future.done():
                self.prediction_log.submit_batch(
                    [(p.request_id, p.n, now)],
                    version,
                    p.columns,
                    probs[start : start + p.n],
                    [p.slot] if p.slot is not None else (),
                    schema=log_schema,
                )
            start += p.n


def _same_spec(p: _Pending, model) -> bool:
    return p.model is None or model is None or p.model.digest == model.digest
