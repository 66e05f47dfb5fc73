"""The BentoML peer of the serving benchmark: a kfloop SavedModel behind a batchable BentoML API (1.4).

Runs in its own env (``.venv-bench-bentoml``, ``benchmarks/peers/requirements-bentoml.lock``), started by
:mod:`benchmarks.peers.launch` as ``bentoml serve bentoml_service:KfloopPeer`` (working dir: this folder)
with the model directory in ``KFLOOP_BENCH_MODEL_DIR``. What a user would write: one worker, one batchable
JSON API (``POST /predict`` with ``{"rows": [{feature: value, ...}, ...]}``, one object per row) with
BentoML's adaptive batching (max batch size 1,024 rows, max latency 50 ms); the batch's rows become one
column per model feature of the model's spec (:func:`kfloop.contract.read_spec`; null -> the feature's
missing value) and one call of the raw signature (:data:`kfloop.contract.RAW_SIGNATURE`).
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np

from kfloop import contract


@bentoml.service(workers=1)
class KfloopPeer:
    """The SavedModel in ``KFLOOP_BENCH_MODEL_DIR``."""

    def __init__(self) -> None:
        import tensorflow as tf

        path = os.environ["KFLOOP_BENCH_MODEL_DIR"]
        self.spec = contract.read_spec(path)
        self.key = contract.output_key(self.spec)
        self.sig = tf.saved_model.load(path).signatures[contract.RAW_SIGNATURE]

    @bentoml.api(batchable=True, max_batch_size=1024, max_latency_ms=50)
    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The model's output for each row (its ``OUTPUT_KEYS`` value), in order."""
        cols = {}
        for f in self.spec.model_features:
            try:
                vals = [f.missing if r[f.name] is None else r[f.name] for r in rows]
            except KeyError:
                raise ValueError(f"a row has no {f.name!r}") from None
            cols[f.name] = np.asarray(vals, dtype=object if f.dtype == "string" else f.dtype)
        return self.sig(**cols)[self.key].numpy().tolist()
