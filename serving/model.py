"""The kfloop KServe predictor: a ``kserve.Model`` over the trainer's ``predict_raw`` SavedModel signature.

* Loads from the model store (``champion`` alias by default, or a pinned version) or a plain directory.
* Knows no dataset: each loaded version reads the dataset spec stored in its model directory
  (:func:`kfloop.contract.read_spec`) and builds from it its request decoder (:mod:`serving.request`), its
  V2 model metadata and its prediction log schema.
* Hot reload: a background thread polls the alias, loads a new version, warms it up and swaps it in with
  one reference assignment (the decoder and the model swap together: they are one object); a request is
  decoded and predicted by the same spec, and a batch in flight finishes on the model it started with.
* Micro-batching: concurrent requests are concatenated into one model call (:class:`serving.batcher.Batcher`).
* The model call skips avoidable TF overhead: inputs go in as a flat, pre-ordered tensor list.
"""

from __future__ import annotations

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

from kfloop import contract, fs
from kfloop.spec import Kind
from serving import outputs as task_outputs
from serving import request as schema
from serving.batcher import Batcher

log = logging.getLogger("kfloop.serving")

_TF_DTYPES = {"float32": "float32", "int64": "int64", "string": "string"}


class ModelContractError(Exception):
    """The model directory does not hold what the model contract (:mod:`kfloop.contract`) asks: a spec, a
    ``predict_raw`` signature over the spec's features with the task's output (:func:`kfloop.contract.output_key`:
    binary ``probability`` [n], regression ``prediction`` [n], multiclass ``probabilities`` [n, K])."""


class LoadedModel:
    """One loaded model version, callable on encoded columns, with what its spec gives.

    Attributes:
        version: Model version (store version, or the directory's name for ``--model-dir``).
        path: Local SavedModel directory.
        metadata: ``kfloop_metadata.json`` next to the SavedModel ({} when absent).
        spec: The :class:`kfloop.spec.DatasetSpec` stored with the model (``spec.yaml``).
        decoder: The :class:`serving.request.RequestDecoder` of that spec.
        digest: The spec's digest (versions with the same digest take the same requests).
        output_key: The signature's output this version answers with (the spec's task's).
    """

    def __init__(self, path: str, version: str):
        import tensorflow as tf

        self.version = version
        self.path = path
        meta = Path(path) / contract.METADATA_FILE
        self.metadata = json.loads(meta.read_text()) if meta.is_file() else {}
        try:
            self.spec = contract.read_spec(path)
        except FileNotFoundError as e:
            raise ModelContractError(str(e)) from None
        except ValueError as e:  # kfloop.spec.SpecError: one line naming the key
            raise ModelContractError(f"{path}: {contract.SPEC_FILE} is not a valid spec: {e}") from None
        self.decoder = schema.RequestDecoder(self.spec)
        self.digest = self.decoder.digest
        features = self.decoder.features
        self._tf = tf
        self._loaded = tf.saved_model.load(path)
        raw_sig = contract.RAW_SIGNATURE
        if raw_sig not in self._loaded.signatures:
            raise ModelContractError(f"{path}: SavedModel has no {raw_sig!r} signature")
        sig = self._loaded.signatures[raw_sig]
        _, specs = sig.structured_input_signature
        for f in features:
            spec = specs.get(f.name)
            if spec is None:
                raise ModelContractError(f"{path}: {raw_sig} has no input {f.name!r}")
            if spec.dtype.name != _TF_DTYPES[f.dtype]:
                raise ModelContractError(
                    f"{path}: {raw_sig} input {f.name!r} is {spec.dtype.name}, the spec says {f.dtype}"
                )
        extra = set(specs) - {f.name for f in features}
        if extra:
            raise ModelContractError(f"{path}: {raw_sig} has inputs the spec does not know: {sorted(extra)}")
        self.output_key = contract.output_key(self.spec)
        if self.output_key not in sig.structured_outputs:
            raise ModelContractError(
                f"{path}: {raw_sig} has no {self.output_key!r} output (the output of task {self.spec.task.value})"
            )
        self._sig = sig
        # Flat call: the signature's flattened input order (sorted names); checked against the public path.
        self._order = [
            s.name for s in tf.nest.flatten(sig.structured_input_signature, expand_composites=True)
        ]
        self._flat = None
        self._dtypes = {f.name: getattr(tf, _TF_DTYPES[f.dtype]) for f in features}
        self._log_schema = None
        self._warm_up()

    @property
    def log_schema(self):
        """The prediction log schema of this version's spec (:func:`kfloop.predlog.prediction_schema`)."""
        if self._log_schema is None:
            from kfloop import predlog

            self._log_schema = predlog.prediction_schema(self.spec)
        return self._log_schema

    def v2_metadata(self, name: str) -> dict:
        """V2 model metadata: inputs from the spec, the task's outputs (:mod:`serving.outputs`), and the
        spec's name / task / label (multiclass: its classes, in order) in ``parameters``."""
        return {
            "name": name,
            "versions": [self.version],
            "platform": "tensorflow_savedmodel",
            "inputs": self.decoder.inputs_metadata(),
            "outputs": task_outputs.outputs_metadata(self.spec),
            "parameters": {
                "spec": self.spec.name,
                "task": self.spec.task.value,
                "label": self.spec.label.name,
                "spec_sha256": self.digest,
                **task_outputs.metadata_parameters(self.spec),
            },
        }

    def _tensors(self, columns: dict) -> dict:
        tf = self._tf
        return {name: tf.constant(columns[name], dtype=self._dtypes[name]) for name in self._dtypes}

    def _call_public(self, columns: dict) -> np.ndarray:
        return self._sig(**self._tensors(columns))[self.output_key].numpy()

    def _call_flat(self, columns: dict) -> np.ndarray:
        tensors = self._tensors(columns)
        out = self._sig._call_flat([tensors[n] for n in self._order], self._sig.captured_inputs)
        if isinstance(out, dict):
            out = out[self.output_key]
        elif isinstance(out, list | tuple):
            out = out[0]
        return out.numpy()

    def _warm_up(self) -> None:
        """Calls the model once per path; keeps the fast flat call only if it agrees with the public one."""
        cols = warm_up_columns(self.decoder.features)
        expected = self._call_public(cols)
        self._check_output_shape(expected, len(next(iter(cols.values()))))
        try:
            got = self._call_flat(cols)
            if got.shape == expected.shape and np.array_equal(got, expected):
                self._flat = True
        except Exception as e:  # a TF version without the private fast path: use the public call
            log.info("flat signature call unavailable (%s); using the public call", e)
        if not self._flat:
            self._flat = False

    def _check_output_shape(self, out: np.ndarray, n: int) -> None:
        """A regression model answers ``[n]``, a multiclass one ``[n, K]`` (binary: as it always was)."""
        task = self.spec.task.value
        want = {"regression": (n,), "multiclass": (n, self.spec.n_classes)}.get(task)
        if want is not None and tuple(out.shape) != want:
            raise ModelContractError(
                f"{self.path}: {contract.RAW_SIGNATURE} output {self.output_key!r} has shape {list(out.shape)} "
                f"for {n} rows; a {task} model answers {list(want)}"
            )

    def __call__(self, columns: dict) -> np.ndarray:
        """The model's outputs for encoded columns ``{feature: np.ndarray}``: float32 per row (binary
        probabilities, regression predictions) or ``[n, K]`` (multiclass probabilities)."""
        return self._call_flat(columns) if self._flat else self._call_public(columns)


def _sample_values(f, n: int) -> list:
    """``n`` valid values of a feature for a warm-up call (domain values where the spec has them)."""
    if f.kind == Kind.BOOLEAN:
        return [i % 2 for i in range(n)]
    if f.kind == Kind.NUMERIC:
        lo = f.range[0] if f.range and f.range[0] is not None else 0.0
        return [float(lo) + 1.5 * i + 0.25 for i in range(n)]
    if f.domain:
        return [f.domain[i % len(f.domain)] for i in range(n)]
    if f.kind == Kind.CATEGORICAL_STR:
        return [["a", "b", ""][i % 3] for i in range(n)]
    return [i + 1 for i in range(n)]


def warm_up_columns(features, n: int = 3) -> dict:
    """Encoded columns of ``n`` made-up rows (one model call's worth, to warm a model up)."""
    return {f.name: np.array(_sample_values(f, n), dtype=schema._NP_DTYPES[f.dtype]) for f in features}


#: The V2 metadata of a binary model's one output (per task: :func:`serving.outputs.outputs_metadata`).
OUTPUTS_METADATA = [dict(o) for o in task_outputs.BINARY_OUTPUTS]


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
            meta = contract.metadata_uri(self.model_dir)
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


class Predictor(kserve.Model):
    """The predictor of one model name (``kserve.Model``): hot reload, micro-batching, a prediction log.

    Its inputs, V2 metadata and log schema are the current version's spec's (:class:`LoadedModel`).

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
    def current_spec(self):
        """The dataset spec of the version being served (None before the first load)."""
        current = self.current
        return current.spec if current is not None else None

    def get_input_types(self):
        current = self.current
        return current.decoder.inputs_metadata() if current is not None else []

    def get_output_types(self):
        current = self.current
        if current is None:
            return [dict(o) for o in OUTPUTS_METADATA]
        return task_outputs.outputs_metadata(current.spec)

    def metadata(self) -> dict:
        """V2 model metadata of the version being served: inputs from its spec, the output, and the spec's
        name / task / label (and digest) in ``parameters``."""
        current = self.current
        if current is None:
            return {"name": self.name, "versions": [], "platform": "tensorflow_savedmodel", "inputs": [],
                    "outputs": self.get_output_types()}  # fmt: skip
        return current.v2_metadata(self.name)

    # -- prediction ------------------------------------------------------------------------------------
    async def predict_columns(
        self, columns: dict, request_id: str, raw, log_slot=None, model: LoadedModel | None = None
    ) -> tuple[np.ndarray, str]:
        """Predicts decoded columns (micro-batched) and logs them (into ``log_slot``, the request's reserved
        room in the prediction log, if any); returns ``(outputs, version)`` (outputs per the task: ``[n]``
        or, multiclass, ``[n, K]``).

        ``model``: the loaded version whose decoder decoded ``columns`` (None: the current one's).
        """
        n = len(next(iter(columns.values())))
        probs, version = await self.batcher.submit(columns, n, request_id, log_slot, model)  # logs them
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
        model = self.current
        if model is None:
            raise InvalidInput("no model loaded")
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
                columns, _, raw = model.decoder.decode_v2(body, self.config.max_rows)
            else:
                columns = model.decoder.decode_v1(payload, self.config.max_rows)
                raw = payload["instances"]
        except schema.RequestError as e:
            raise InvalidInput(e.message) from None
        probs, version = await self.predict_columns(columns, request_id, raw, model=model)
        if isinstance(payload, InferRequest):
            return InferResponse(
                response_id=payload.id or request_id,
                model_name=self.name,
                infer_outputs=task_outputs.infer_outputs(model.spec, np.asarray(probs, dtype=np.float32)),
                model_version=version,
            )
        if model.spec.task.value == "multiclass":  # plain Python values: kserve serializes this dict
            rows = task_outputs.v1_predictions(model.spec, probs)
            preds = [{"class": r["class"], "probabilities": {k: float(v) for k, v in r["probabilities"].items()}}
                     for r in rows]  # fmt: skip
            return {"predictions": preds, "model_version": version}
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
