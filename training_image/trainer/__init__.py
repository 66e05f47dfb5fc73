"""The kfloop trainer: train a model of a dataset spec on Dataset CSVs and export a model directory.

``spec.trainer`` chooses the trainer:

* ``keras`` (the default): the built-in Keras functional model (:mod:`.model`) whose preprocessing lives
  inside the model (imputation + missing indicators, clipping and normalisation of numerics, 0/1 plus a
  missing indicator for booleans, vocabularies with an out-of-vocabulary bucket for categorical ints and
  strings), every statistic from the training split, so serving receives raw features. The same code path
  runs on a laptop CPU, on a GPU node (``MirroredStrategy``) and under a TFJob with several workers
  (``MultiWorkerMirroredStrategy``, chosen from ``TF_CONFIG``; :mod:`.distribute`).
* ``package.module:function``: bring your own model. kfloop imports the module and calls::

      function(train, eval, spec, hyperparameters, output_dir)

  - ``train``, ``eval``: pandas DataFrames in Dataset form (kfloop's normalized splits): the spec's
    ``dataset_columns``; numeric features float64 with NaN for missing; categorical ints, booleans (0/1),
    the time column (epoch seconds) and the label (0/1) pandas ``Int64`` with ``<NA>`` for missing;
    categorical strings ``object`` with NaN for missing. Rows without a label are already dropped.
  - ``spec``: the :class:`kfloop.spec.DatasetSpec` (``spec.model_features``, ``spec.label``, ...).
  - ``hyperparameters``: ``spec.hyperparameters`` (a dict; the function validates its own keys).
  - ``output_dir``: a path that does not exist yet. The function must export a TensorFlow SavedModel
    there with the signatures of :mod:`kfloop.contract`: ``predict_raw`` taking one 1-D tensor per model
    feature, named after it, of the feature's dtype (float32 / int64 / string) with missing values as
    the sentinels (NaN, -1, ``""``), and ``serving_default`` taking ``examples`` (1-D string, serialized
    ``tf.Example``s; an absent key is a missing value); both return ``{"probability": float32[batch]}``
    in [0, 1]. Its return value is ignored; an exception fails the training with its message.

  kfloop then checks the export (:func:`kfloop.contract.check_model`, the same check as
  ``kfloop models check``), scores it on both splits (AUC, log loss, accuracy) and adds ``spec.yaml``,
  ``schema.pbtxt`` and, last, ``kfloop_metadata.json`` (:mod:`.export`). A model trained elsewhere enters
  the store through ``kfloop models publish`` instead.

Both write one model directory: the SavedModel, ``spec.yaml``, the training data's TFDV ``schema.pbtxt``
(when given) and ``kfloop_metadata.json`` (written last, with ``spec_sha256`` / ``schema_sha256``).

CLI: ``python -m training_image.trainer --spec SPEC --train-data URI --eval-data URI --model-dir DIR
[--schema URI] [--epochs N ...]`` (:mod:`.cli`).

Importing this package imports only the standard library and kfloop's ground floor (TensorFlow and Keras
are imported where they are used).
"""

from __future__ import annotations

from kfloop.contract import EXAMPLES_SIGNATURE, METADATA_FILE, OUTPUT_KEY, RAW_SIGNATURE
from training_image.trainer.cli import add_arguments, build_parser, main, run_from_args
from training_image.trainer.data import feature_stats, make_dataset, read_split
from training_image.trainer.distribute import cluster_size, is_chief, strategy_kind, worker_checkpoint_dir
from training_image.trainer.export import export_saved_model, read_metadata
from training_image.trainer.fit import TrainResult, library_versions, train
from training_image.trainer.hparams import HParams, TrainError, parse_hidden_units

__all__ = [
    "EXAMPLES_SIGNATURE",
    "METADATA_FILE",
    "OUTPUT_KEY",
    "RAW_SIGNATURE",
    "HParams",
    "TrainError",
    "TrainResult",
    "add_arguments",
    "build_parser",
    "cluster_size",
    "export_saved_model",
    "feature_stats",
    "is_chief",
    "library_versions",
    "main",
    "make_dataset",
    "parse_hidden_units",
    "read_metadata",
    "read_split",
    "run_from_args",
    "strategy_kind",
    "train",
    "worker_checkpoint_dir",
]
