"""The kfloop KServe predictor: a ``kserve.Model`` over the trainer's ``predict_raw`` SavedModel signature.

* Loads from the model store (``champion`` alias by default, or a pinned version) or a plain directory.
* Hot reload: a background thread polls the alias, loads a new version, warms it up and swaps it in with
  one reference assignment; a batch in flight finishes on the model it started with.
* Micro-batching: concurrent requests are concatenated into one model call (see :class:`Batcher`).
* The model call skips avoidable TF overhead: inputs go in as a flat, pre-ordered tensor list.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import gc
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import kserve
import numpy as np

from kfloop import features as F
from kfloop import fs
from serving import request as schema

log = logging.getLogger("kfloop.serving")

_TF_DTYPES = {"float32": "float32", "int64": "int64", "string": "string"}


class ModelContractError(Exception):
    """The SavedModel does not have the ``predict_raw`` signature kfloop.features describes."""


class LoadedModel:
    """One loaded model version, callable on encoded columns.

    Attributes:
        version: Model version (store version, or the directory's name for ``--model-dir``).
        path: Local SavedModel directory.
        metadata: ``kfloop_metadata.json`` next to the SavedModel ({} when absent).
    """

    def __init__(self, path: str, version: str):
        import tensorflow as tf

        self.version = version
        self.path = path
        meta = Path(path) / "kfloop_metadata.json"
        self.metadata = json.loads(meta.read_text()) if meta.is_file() else {}
        self._tf = tf
        self._loaded = tf.saved_model.load(path)
        if "predict_raw" not in self._loaded.signatures:
            raise ModelContractError(f"{path}: SavedModel has no 'predict_raw' signature")
        sig = self._loaded.signatures["predict_raw"]
        _, specs = sig.structured_input_signature
        for f in F.MODEL_FEATURES:
            spec = specs.get(f.name)
            if spec is None:
                raise ModelContractError(f"{path}: predict_raw has no input {f.name!r}")
            if spec.dtype.name != _TF_DTYPES[f.dtype]:
                raise ModelContractError(
                    f"{path}: predict_raw input {f.name!r} is {spec.dtype.name}, kfloop.features says {f.dtype}"
                )
        extra = set(specs) - {f.name for f in F.MODEL_FEATURES}
        if extra:
            raise ModelContractError(
                f"{path}: predict_raw has inputs kfloop.features does not know: {sorted(extra)}"
            )
        if "probability" not in sig.structured_outputs:
            raise ModelContractError(f"{path}: predict_raw has no 'probability' output")
        self._sig = sig
        # Flat call: the signature's flattened input order (sorted names); checked against the public path.
        self._order = [
            s.name for s in tf.nest.flatten(sig.structured_input_signature, expand_composites=True)
        ]
        self._flat = None
        self._dtypes = {f.name: getattr(tf, _TF_DTYPES[f.dtype]) for f in F.MODEL_FEATURES}
        self._warm_up()

    def _tensors(self, columns: dict) -> dict:
        tf = self._tf
        return {name: tf.constant(columns[name], dtype=self._dtypes[name]) for name in self._dtypes}

    def _call_public(self, columns: dict) -> np.ndarray:
        return self._sig(**self._tensors(columns))["probability"].numpy()

    def _call_flat(self, columns: dict) -> np.ndarray:
        tensors = self._tensors(columns)
        out = self._sig._call_flat([tensors[n] for n in self._order], self._sig.captured_inputs)
        if isinstance(out, dict):
            out = out["probability"]
        elif isinstance(out, list | tuple):
            out = out[0]
        return out.numpy()

    def _warm_up(self) -> None:
        """Calls the model once per path; keeps the fast flat call only if it agrees with the public one."""
        rows = []
        for i in range(3):
            row = {}
            for f in F.MODEL_FEATURES:
                if f.kind == F.Kind.NUMERIC:
                    row[f.name] = np.float32(1.5 * i + 0.25)
                elif f.kind == F.Kind.CATEGORICAL_STR:
                    row[f.name] = ["Cash", "Credit Card", ""][i]
                else:
                    row[f.name] = np.int64(i + 1)
            rows.append(row)
        cols = {
            f.name: np.array([r[f.name] for r in rows], dtype=schema._NP_DTYPES[f.dtype])
            for f in F.MODEL_FEATURES
        }
        expected = self._call_public(cols)
        try:
            got = self._call_flat(cols)
            if got.shape == expected.shape and np.array_equal(got, expected):
                self._flat = True
        except Exception as e:  # a TF version without the private fast path: use the public call
            log.info("flat signature call unavailable (%s); using the public call", e)
        if not self._flat:
            self._flat = False

    def __call__(self, columns: dict) -> np.ndarray:
        """Probabilities (float32, one per row) for encoded columns ``{feature: np.ndarray}``."""
        return self._call_flat(columns) if self._flat else self._call_public(columns)


class ModelSource:
    """Where model versions come from: the model store (alias or pinned version) or a plain directory.

    Args:
        model_name: Name in the store.
        store_uri: Store root (local dir or ``gs://``); None with ``model_dir``.
        ref: Alias (``champion``) or version (``v0003``).
        model_dir: Serve this SavedModel directory (local or ``gs://``) instead of the store.
        workdir: Local directory for downloaded versions.
    """

    def __init__(self, model_name: str, store_uri=None, ref="champion", model_dir=None, workdir=None):
        self.model_name = model_name
        self.ref = ref
        self.model_dir = model_dir
        self.workdir = workdir or tempfile.mkdtemp(prefix="kfloop-serving-")
        self.store = None
        if model_dir is None:
            from kfloop.store import ModelStore, is_version

            self.store = ModelStore(store_uri)
            self.pinned = is_version(ref)
        else:
            self.pinned = True

    def current_version(self) -> str:
        """The version the ref points to now."""
        if self.store is None:
            meta = fs.join(self.model_dir, "kfloop_metadata.json")
            if fs.exists(meta):
                v = json.loads(fs.read_text(meta)).get("version")
                if v:
                    return str(v)
            return Path(str(self.model_dir).rstrip("/")).name
        return self.store.resolve(self.model_name, self.ref)

    def load(self, version: str) -> LoadedModel:
        """Downloads (if needed) and loads one version."""
        if self.store is None:
            path = fs.local_copy(self.model_dir, os.path.join(self.workdir, "model"))
        else:
            path = self.store.fetch(self.model_name, version, os.path.join(self.workdir, version))
        return LoadedModel(path, version)

    def discard(self, model: LoadedModel) -> None:
        """Deletes a replaced version's local copy (only copies this source downloaded)."""
        if self.store is not None and model.path.startswith(self.workdir):
            shutil.rmtree(model.path, ignore_errors=True)


class _Pending:
    __slots__ = ("columns", "future", "n", "request_id", "slot")

    def __init__(self, columns, n, future, request_id, slot):
        self.columns = columns
        self.n = n
        self.future = future
        self.request_id = request_id
        self.slot = slot  # its reserved room in the prediction log (a serving.log_queue.LogSlot), or None


class Batcher:
    """Micro-batching on the event loop: one model call at a time, in a worker thread.

    While the model runs, new requests queue up; when it is free, everything queued (up to
    ``max_batch_rows``) goes into the next call. If requests are still being received when a batch is formed,
    it waits for them at most ``batch_wait_ms``. A lone request on an idle server never waits.
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

    async def submit(self, columns: dict, n: int, request_id: str = "", log_slot=None):
        """Predicts ``n`` rows (logged under ``request_id``, into ``log_slot`` if reserved); returns
        ``(probabilities, version)``."""
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        fut = loop.create_future()
        self._queue.append(_Pending(columns, n, fut, request_id, log_slot))
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
            deadline = loop.time() + self.batch_wait_s
            while rows < self.max_batch_rows:
                if self._queue:
                    if rows + self._queue[0].n > self.max_batch_rows:
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
            model = self.get_model()
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
                self._log(batch, cols, probs, model.version)
            start = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result((probs[start : start + p.n], model.version))
                start += p.n

    def _log(self, batch: list, cols: dict, probs, version: str) -> None:
        """Logs one model call as one item; requests already cancelled (no answer sent) are left out.

        A call that mixes requests with and without reserved log room is logged per request, so rows that
        do not fit (unreserved) never take reserved ones down with them.
        """
        now = time.time()
        reserved = [p.slot is not None for p in batch]
        if all(not p.future.done() for p in batch) and (all(reserved) or not any(reserved)):
            slots = [p.slot for p in batch if p.slot is not None]
            self.prediction_log.submit_batch(
                [(p.request_id, p.n, now) for p in batch], version, cols, probs, slots
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
                )
            start += p.n


class TaxiModel(kserve.Model):
    """The big_tipper predictor (``kserve.Model``) with hot reload, micro-batching and a prediction log.

    Args:
        name: Model name (endpoint path and store name).
        source: Where versions come from.
        config: :class:`kfloop.config.ServingConfig` (limits, batching, logging).
        prediction_log: Where predictions go (None: not logged).
        reload_interval_s: Alias polling interval (0 disables hot reload).
    """

    def __init__(
        self, name: str, source: ModelSource, config, prediction_log=None, reload_interval_s: float = 1.0
    ):
        super().__init__(name)
        self.source = source
        self.config = config
        self.prediction_log = prediction_log
        self.feedback = None  # serving.feedback.Feedback: the recent-id index of :feedback, when enabled
        self.reload_interval_s = reload_interval_s
        self.current: LoadedModel | None = None
        self.batcher = Batcher(lambda: self.current, config.max_batch_rows, config.batch_wait_ms)
        self.batcher.prediction_log = prediction_log
        self._stop = threading.Event()
        self._watcher = None
        self.reloads = 0
        self.draining = False  # set on SIGTERM: readiness answers 503 from then on
        self.loop = None  # the server's event loop (recorded by serving.http on its first call)

    # -- lifecycle -------------------------------------------------------------------------------------
    def load(self) -> bool:
        version = self.source.current_version()
        self.current = self.source.load(version)
        log.info("serving %s version %s from %s", self.name, version, self.current.path)
        self.ready = True
        if not self.source.pinned and self.reload_interval_s > 0 and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="alias-watch", daemon=True)
            self._watcher.start()
        return self.ready

    def start(self):  # kserve calls this at registration; the model is already loaded
        self.ready = self.current is not None

    def health(self) -> str | None:
        """None while this model can answer predictions; else why not (liveness then fails)."""
        if self.current is None:
            return "no model loaded"
        if not self.ready:
            return "model unloaded"
        problem = self.batcher.problem()
        if problem:
            return problem
        started = self.batcher.call_started
        if started is not None:
            running = time.monotonic() - started
            if running > self.config.max_call_seconds:
                return f"a model call has been running for {running:.0f} s (bound {self.config.max_call_seconds} s)"
        if self.prediction_log is not None:
            return self.prediction_log.stalled()
        return None

    def readiness_problem(self) -> str | None:
        """None while this replica should get traffic; else why not (readiness then fails): not live,
        shutting down, or a prediction log that cannot write (full / read-only storage, a stuck writer)."""
        problem = self.health()
        if problem is None and self.draining:
            problem = "shutting down"
        if problem is None and self.prediction_log is not None:
            problem = self.prediction_log.problem()
        return problem

    async def healthy(self) -> bool:  # kserve's own readiness checks (gRPC) ask this
        return self.readiness_problem() is None

    def begin_drain(self) -> None:
        """Shutdown starts: readiness fails from now on and the alias watcher stops; requests still run."""
        self.draining = True
        self._stop.set()

    def _watch(self) -> None:
        failed: dict[str, float] = {}
        while not self._stop.wait(self.reload_interval_s):
            try:
                version = self.source.current_version()
            except Exception as e:
                log.warning("hot reload: cannot resolve %s %r: %s", self.name, self.source.ref, e)
                continue
            if version == self.current.version or time.monotonic() < failed.get(version, 0):
                continue
            try:
                new = self.source.load(version)
            except Exception:
                log.exception(
                    "hot reload: loading %s %s failed; keeping %s", self.name, version, self.current.version
                )
                failed[version] = time.monotonic() + 30.0
                continue
            old, self.current = self.current, new  # atomic swap; batches in flight keep `old`
            self.reloads += 1
            log.info("hot reload: %s switched %s -> %s", self.name, old.version, new.version)
            self.source.discard(old)
            del old
            # The old version was frozen with the process's start-up objects (serving.__main__): unfreeze so
            # its reference cycles can be collected, collect once (one full pass per reload), freeze again
            # with the new version. A batch still running on the old version keeps it alive past this.
            gc.unfreeze()
            gc.collect()
            gc.freeze()

    def close(self, log_timeout: float = 30.0) -> None:
        """Stops the alias watcher and flushes the prediction log (waiting at most ``log_timeout`` s)."""
        self._stop.set()
        if self.prediction_log is not None:
            self.prediction_log.close(timeout=log_timeout)

    # -- metadata --------------------------------------------------------------------------------------
    def get_input_types(self):
        return schema.model_inputs_metadata()

    def get_output_types(self):
        return [{"name": "probability", "datatype": "FP32", "shape": [-1]}]

    def metadata(self) -> dict:
        """V2 model metadata, with the version being served."""
        return {
            "name": self.name,
            "versions": [self.current.version] if self.current else [],
            "platform": "tensorflow_savedmodel",
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
        }

    # -- prediction ------------------------------------------------------------------------------------
    async def predict_columns(
        self, columns: dict, request_id: str, raw, log_slot=None
    ) -> tuple[np.ndarray, str]:
        """Predicts decoded columns (micro-batched) and logs them (into ``log_slot``, the request's reserved
        room in the prediction log, if any); returns ``(probabilities, version)``."""
        n = len(next(iter(columns.values())))
        probs, version = await self.batcher.submit(columns, n, request_id, log_slot)  # the batcher logs them
        if self.feedback is not None:
            self.feedback.seen(request_id, n, time.time())
        return probs, version

    async def predict(self, payload, headers=None):
        """kserve's own request path (used by gRPC, or by any client of kserve's dataplane).

        V1 dicts and V2 ``InferRequest`` objects; client mistakes raise ``kserve.errors.InvalidInput`` (400).
        The HTTP fast path in :mod:`serving.http` handles REST requests before they get here.
        """
        import uuid

        from kserve.errors import InvalidInput
        from kserve.protocol.infer_type import InferRequest, InferResponse

        headers = headers or {}
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        try:
            if isinstance(payload, InferRequest):
                body = {
                    "inputs": [
                        {
                            "name": i.name,
                            "datatype": i.datatype,
                            "shape": list(i.shape),
                            "data": _as_list(i),
                        }
                        for i in payload.inputs
                    ]
                }
                columns, _, raw = schema.decode_v2(body, self.config.max_rows)
            else:
                columns = schema.decode_v1(payload, self.config.max_rows)
                raw = payload["instances"]
        except schema.RequestError as e:
            raise InvalidInput(e.message) from None
        probs, version = await self.predict_columns(columns, request_id, raw)
        if isinstance(payload, InferRequest):
            from kserve.protocol.infer_type import InferOutput

            out = InferOutput(name="probability", shape=[len(probs)], datatype="FP32")
            out.set_data_from_numpy(probs.astype(np.float32))
            return InferResponse(
                response_id=payload.id or request_id,
                model_name=self.name,
                infer_outputs=[out],
                model_version=version,
            )
        return {"predictions": probs.tolist(), "model_version": version}


def _as_list(inp) -> list:
    """An ``InferInput``'s values as a flat list of JSON-like scalars (bytes decoded, NaN kept)."""
    data = inp.data
    if data is None or isinstance(data, np.ndarray):
        data = inp.as_numpy().reshape(-1)
    out = data.tolist() if isinstance(data, np.ndarray) else list(data)
    if out and isinstance(out[0], list):
        out = [v for sub in out for v in sub]
    return [d.decode("utf-8", "replace") if isinstance(d, bytes) else d for d in out]
