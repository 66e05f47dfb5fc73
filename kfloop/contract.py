"""The model contract: what a kfloop model directory holds and the names every stage relies on.

A model directory (what the trainer exports, what the store keeps under ``models/<name>/<version>/model/``,
what KServe's storage initializer downloads) holds:

==========================  ==============================================================================
``saved_model.pb`` + vars   a TensorFlow SavedModel with the two signatures below
``kfloop_metadata.json``    what produced it: data window, hyperparameters, metrics, libraries (written last:
                            its presence means the export is complete)
``spec.yaml``               the dataset spec the model was trained on (:mod:`kfloop.spec`): serving, batch
                            prediction and monitoring read the features, label and thresholds from it
``schema.pbtxt``            the TFDV schema of its training data (the monitoring reference)
==========================  ==============================================================================

Signatures (both return ``{OUTPUT_KEY: float32[batch]}``, the probability of the positive class):

- ``RAW_SIGNATURE`` (``predict_raw``): one 1-D tensor per model feature, named after it, dtype from the
  spec; missing values as the spec's sentinels (NaN, -1, "").
- ``EXAMPLES_SIGNATURE`` (``serving_default``): ``examples``, a 1-D string tensor of serialized
  ``tf.Example``s.

Only the standard library and :mod:`kfloop.fs` / :mod:`kfloop.spec` are imported (both envs import this).
"""

from __future__ import annotations

#: Signature over one tensor per feature (the one the predictor and batch jobs call).
RAW_SIGNATURE = "predict_raw"
#: Signature over serialized tf.Examples (TFMA and ``saved_model_cli`` users).
EXAMPLES_SIGNATURE = "serving_default"
#: Name of the input of :data:`EXAMPLES_SIGNATURE`.
EXAMPLES_INPUT = "examples"
#: The output key of both signatures.
OUTPUT_KEY = "probability"
#: Provenance and metrics of an export, written last.
METADATA_FILE = "kfloop_metadata.json"
#: The dataset spec the model was trained on.
SPEC_FILE = "spec.yaml"
#: The TFDV schema of the model's training data.
SCHEMA_FILE = "schema.pbtxt"


def spec_uri(model_dir: str) -> str:
    """Where the dataset spec of a model directory is."""
    from kfloop import fs

    return fs.join(model_dir, SPEC_FILE)


def schema_uri(model_dir: str) -> str:
    """Where the TFDV schema of a model directory is."""
    from kfloop import fs

    return fs.join(model_dir, SCHEMA_FILE)


def metadata_uri(model_dir: str) -> str:
    """Where the metadata file of a model directory is."""
    from kfloop import fs

    return fs.join(model_dir, METADATA_FILE)


def read_spec(model_dir: str):
    """The :class:`kfloop.spec.DatasetSpec` a model directory was trained on.

    Raises:
        FileNotFoundError: the directory has no ``spec.yaml`` (a model exported before specs existed, or
            not by kfloop: ``kfloop models publish --spec`` adds one).
        kfloop.spec.SpecError: the file is not a valid spec.
    """
    from kfloop import fs, spec

    uri = spec_uri(model_dir)
    if not fs.exists(uri):
        raise FileNotFoundError(f"{uri}: the model directory has no {SPEC_FILE} (the model contract needs one)")
    return spec.loads(fs.read_text(uri), origin=uri)
