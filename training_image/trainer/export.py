"""Export: the SavedModel with the contract's two signatures, the files kfloop adds, and the atomic publish.

The SavedModel (``tf.saved_model.save``) holds the model's variables and lookup tables (not the Keras
objects, nor the optimizer state) and two signatures (:mod:`kfloop.contract`):

* :data:`~kfloop.contract.EXAMPLES_SIGNATURE`: serialized ``tf.Example`` strings -> the task's output.
* :data:`~kfloop.contract.RAW_SIGNATURE`: one named tensor per model feature (sentinel-encoded) -> the
  task's output.

The output (:func:`kfloop.contract.output_key`): binary ``probability`` [batch]; regression
``prediction`` [batch] in label units (the Keras model predicts the standardised label; the training
split's label mean and std are constants of the exported graph: ``prediction = z * std + mean``);
multiclass ``probabilities`` [batch, K].

Beside it kfloop writes the spec, the training schema and, last, the metadata (:func:`finish`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kfloop import contract, fs
from training_image.trainer.hparams import TrainError


def tf_dtype(f):
    """The TensorFlow dtype of a spec feature."""
    import tensorflow as tf

    return {"float32": tf.float32, "int64": tf.int64, "string": tf.string}[f.dtype]


def export_saved_model(model, spec, export_dir: str, label_scaling: dict | None = None) -> None:
    """Saves a Keras ``model`` of ``spec``'s features with the contract's two signatures.

    Args:
        model: The fitted Keras model (:func:`training_image.trainer.model.build_model`).
        spec: Its dataset spec.
        export_dir: Where the SavedModel goes.
        label_scaling: Regression: ``{"mean", "std"}`` of the training label
            (:func:`training_image.trainer.data.label_scaling`), applied to the model's standardised
            output so that ``prediction`` is in label units. Required for regression, ignored otherwise.
    """
    import tensorflow as tf

    task = contract.task_of(spec)
    key = contract.output_key(spec)
    if task == "regression" and label_scaling is None:
        raise TrainError("a regression export needs the training label's scaling (mean and std)")
    raw_spec = {f.name: tf.TensorSpec([None], tf_dtype(f), name=f.name) for f in spec.model_features}
    parse_spec = {
        f.name: tf.io.FixedLenFeature([], tf_dtype(f), default_value=f.missing) for f in spec.model_features
    }

    # Only what the two functions use: the model's variables (not the optimizer's slots) and its lookup
    # tables. Tracking the Keras model itself also saves its layers' objects and functions and the Adam
    # state, which every load (server start, canary, batch job) then restores: ~0.55-0.9 s per load here
    # instead of ~0.35-0.6 s. A resource the functions use and this misses fails the save itself.
    module = tf.Module()
    module.model_variables = [getattr(v, "value", v) for v in model.variables]
    module.lookup_tables = [
        o
        for o in tf.train.TrackableView(model).descendants()
        if isinstance(o, tf.saved_model.experimental.TrackableResource)
    ]

    @tf.function(input_signature=[raw_spec])
    def predict_raw(features):
        out = model(features, training=False)
        if task == "multiclass":
            return {key: tf.reshape(tf.cast(out, tf.float32), [-1, spec.n_classes])}
        if task == "regression":
            z = tf.cast(tf.reshape(out, [-1]), tf.float64)
            out = z * label_scaling["std"] + label_scaling["mean"]
        return {key: tf.reshape(tf.cast(out, tf.float32), [-1])}

    # Calls predict_raw, so the model's graph is saved (and loaded) once, not once per signature: a
    # 30% smaller saved_model.pb, and loads of 0.27-0.35 s instead of 0.35-0.54 s here.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
    def serve_examples(examples):
        return predict_raw(tf.io.parse_example(examples, parse_spec))

    module.predict_raw = predict_raw
    module.serve_examples = serve_examples
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            contract.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
            contract.RAW_SIGNATURE: predict_raw.get_concrete_function(),
        },
    )


def finish(model_dir: str, spec, schema_uri: str | None, metadata: dict) -> dict:
    """Writes the spec, the schema and (last) the metadata into an exported model directory.

    Returns:
        The metadata as written (with ``spec_sha256`` / ``schema_sha256`` added).

    Raises:
        TrainError: ``schema_uri`` does not exist.
    """
    try:
        hashes = contract.write_spec_and_schema(model_dir, spec, schema_uri)
    except FileNotFoundError as e:
        raise TrainError(str(e)) from None
    metadata = {**metadata, **hashes}
    fs.write_text(contract.metadata_uri(model_dir), json.dumps(metadata, indent=2, default=str))
    return metadata


def check_target(model_dir: str) -> None:
    """Raises TrainError when a local ``model_dir`` exists and is not an empty directory."""
    if not fs.is_gcs(model_dir):
        target = Path(model_dir)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise TrainError(f"model_dir {model_dir!r} already exists and is not empty")


def publish_dir(staging: Path, model_dir: str) -> None:
    """Moves a finished export into ``model_dir`` (local: rename; gs://: upload, metadata last)."""
    if fs.is_gcs(model_dir):
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == contract.METADATA_FILE)  # metadata last: its presence = complete
        for p in files:
            fs.write_bytes(fs.join(model_dir, p.relative_to(staging).as_posix()), p.read_bytes())
        shutil.rmtree(staging, ignore_errors=True)
        return
    target = Path(model_dir)
    if target.exists():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # e.g. the empty directory KFP prepares for an Output[Model]
        else:
            shutil.rmtree(staging, ignore_errors=True)
            raise TrainError(f"model_dir {model_dir!r} already exists and is not empty")
    os.replace(staging, target)
    for p in [target, *target.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)


def read_metadata(model_dir: str) -> dict:
    """Reads ``kfloop_metadata.json`` of an exported model."""
    return json.loads(fs.read_text(contract.metadata_uri(model_dir)))
