"""The MLServer peer of the serving benchmark: a custom runtime serving a kfloop SavedModel (MLServer 1.7).

Runs in its own env (``.venv-bench-mlserver``, ``benchmarks/peers/requirements-mlserver.lock``), started by
:mod:`benchmarks.peers.launch` as ``mlserver start DIR`` with this module's :class:`KfloopRuntime` as the
model's ``implementation``. What a user would write: load the SavedModel's raw signature
(:data:`kfloop.contract.RAW_SIGNATURE`), read its features from the model's spec
(:func:`kfloop.contract.read_spec`), decode the V2 request's inputs (one per feature, as kfloop's V2 JSON)
into one column each (null -> the feature's missing value), call the signature once, answer its output.
MLServer's own adaptive batching (``max_batch_size`` / ``max_batch_time`` in the model settings) merges
concurrent requests before :meth:`KfloopRuntime.predict`.
"""

from __future__ import annotations

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from kfloop import contract


class KfloopRuntime(MLModel):
    """One kfloop SavedModel (``parameters.uri`` in the model settings) behind MLServer's V2 API."""

    async def load(self) -> bool:
        import tensorflow as tf

        path = await get_model_uri(self._settings)
        self._spec = contract.read_spec(path)
        self._features = {f.name: f for f in self._spec.model_features}
        self._key = contract.output_key(self._spec)
        self._sig = tf.saved_model.load(path).signatures[contract.RAW_SIGNATURE]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        cols = {}
        for inp in payload.inputs:
            f = self._features.get(inp.name)
            if f is None:
                raise ValueError(f"input {inp.name!r} is not a feature of model {self._spec.name!r}")
            values = [f.missing if v is None else v for v in inp.data.root]
            cols[f.name] = np.asarray(values, dtype=object if f.dtype == "string" else f.dtype)
        missing = set(self._features) - set(cols)
        if missing:
            raise ValueError(f"missing inputs: {', '.join(sorted(missing))}")
        out = self._sig(**cols)[self._key].numpy()
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output(name=self._key, payload=out)]
        )
