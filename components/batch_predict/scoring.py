"""Scoring chunks with a store version's SavedModel: :class:`SavedModel` (its raw signature on encoded
columns) and the Beam ``ModelHandler`` that ``RunInference`` calls (:func:`saved_model_handler`).
"""

from __future__ import annotations

from components.batch_predict.chunks import ScoredChunk, chunk_nbytes
from components.batch_predict.inputs import BatchPredictError
from kfloop import contract

#: Beam metrics namespace of the scoring step (RunInference's and the rows / log files counters).
METRICS_NAMESPACE = "kfloop_batch_predict"


class SavedModel:
    """The raw signature (:data:`kfloop.contract.RAW_SIGNATURE`) of one model directory, callable on
    encoded columns; its inputs are the model features of the directory's own ``spec.yaml``.

    Args:
        path: The model directory (a SavedModel with its ``spec.yaml``).
        spec: The spec to use instead of the directory's (default: :func:`kfloop.contract.read_spec`).

    Raises:
        BatchPredictError: no raw signature, or no valid spec in the directory.
    """

    def __init__(self, path: str, spec=None):
        import tensorflow as tf

        from kfloop.spec import SpecError

        if spec is None:
            try:
                spec = contract.read_spec(path)
            except (FileNotFoundError, SpecError) as e:
                raise BatchPredictError(str(e)) from None
        loaded = tf.saved_model.load(path)
        if contract.RAW_SIGNATURE not in loaded.signatures:
            raise BatchPredictError(f"{path}: SavedModel has no {contract.RAW_SIGNATURE!r} signature")
        self.spec = spec
        self._loaded = loaded
        self._sig = loaded.signatures[contract.RAW_SIGNATURE]
        self._tf = tf
        self._dtypes = {f.name: getattr(tf, f.dtype) for f in spec.model_features}
        self._key = contract.output_key(spec)
        if self._key not in self._sig.structured_outputs:
            raise BatchPredictError(
                f"{path}: the {contract.RAW_SIGNATURE!r} signature has no {self._key!r} output "
                f"(a {spec.task.value} model's; it has {sorted(self._sig.structured_outputs)})"
            )
        self._k = spec.n_classes if spec.task.value == "multiclass" else 0

    def __call__(self, columns: dict):
        """The task's output of the rows: [n] (binary probability, regression prediction) or [n, K]
        (multiclass probabilities in ``spec.classes`` order)."""
        tf = self._tf
        tensors = {n: tf.constant(columns[n], dtype=d) for n, d in self._dtypes.items()}
        out = self._sig(**tensors)[self._key].numpy()
        return out.reshape(-1, self._k) if self._k else out.reshape(-1)


def _model_handler_class():
    from apache_beam.ml.inference.base import ModelHandler

    class SavedModelHandler(ModelHandler):
        """Beam ``ModelHandler`` over a store version's SavedModel (its raw signature), one chunk per call.

        ``load_model`` fetches the version from the store (checked against its published digests) on each
        worker; the elements are already chunks of rows, so each ``run_inference`` call scores one chunk.
        """

        def __init__(self, store_uri: str, model_name: str, version: str):
            self.store_uri, self.model_name, self.version = store_uri, model_name, version

        def load_model(self):
            # In the calling thread: a SavedModel loaded in a helper thread (to overlap it with the first
            # range's parsing) once made a task process abort at exit ("terminate called without an active
            # exception"), for ~0.1-0.3 s of overlap.
            import os
            import tempfile

            from kfloop.store import ModelStore

            dest = os.path.join(tempfile.mkdtemp(prefix="kfloop-batch-model-"), self.version)
            return SavedModel(ModelStore(self.store_uri).fetch(self.model_name, self.version, dest))

        def run_inference(self, batch, model, inference_args=None):
            return [ScoredChunk(chunk, model(chunk[1])) for chunk in batch]

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": 1}

        def get_num_bytes(self, batch) -> int:
            # Beam's default pickles the whole batch only to measure it: the arrays' sizes are enough.
            return sum(chunk_nbytes(chunk) for chunk in batch)

        def get_metrics_namespace(self) -> str:
            return METRICS_NAMESPACE

    return SavedModelHandler


def saved_model_handler(store_uri: str, model_name: str, version: str):
    """A :class:`SavedModelHandler` (a Beam ``ModelHandler``) for one store version."""
    return _model_handler_class()(store_uri, model_name, version)
