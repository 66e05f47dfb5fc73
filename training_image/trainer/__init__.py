"""The kfloop trainer: train a model of a dataset spec on Dataset CSVs and export a model directory.

``spec.trainer`` chooses the trainer:

* ``keras`` (the default): the built-in Keras functional model (:mod:`.model`) whose preprocessing lives
  inside the model (imputation + missing indicators, clipping and normalisation of numerics, 0/1 plus a
  missing indicator for booleans, vocabularies with an out-of-vocabulary bucket for categorical ints and
  strings), every statistic from the training split, so serving receives raw features. Its head follows
  ``spec.task``: a sigmoid ``probability`` (binary cross-entropy, early stopping on ``val_auc``); a linear
  ``prediction`` of the label standardised with the training split's mean and std, turned back into label
  units in the export (``loss: mse`` or ``huber``, early stopping on ``val_rmse``); a softmax
  ``probabilities`` over the classes (sparse categorical cross-entropy, early stopping on ``val_loss``,
  the log loss). The same code path
  runs on a laptop CPU, on a GPU node (``MirroredStrategy``) and under a TFJob with several workers
  (``MultiWorkerMirroredStrategy``, chosen from ``TF_CONFIG``; :mod:`.distribute`).
* ``package.module:function``: bring your own model. kfloop imports the module and calls::

      function(train, eval, spec, hyperparameters, output_dir)

  - ``train``, ``eval``: pandas DataFrames in Dataset form (kfloop's normalized splits): the spec's
    ``dataset_columns``; numeric features float64 with NaN for missing; categorical ints, booleans (0/1),
    the time column (epoch seconds) and a class label (binary 0/1, multiclass the class index 0..K-1 in
    ``spec.classes`` order) pandas ``Int64`` with ``<NA>`` for missing; a regression label float64;
    categorical strings ``object`` with NaN for missing. Rows without a label are already dropped.
  - ``spec``: the :class:`kfloop.spec.DatasetSpec` (``spec.model_features``, ``spec.label``, ...).
  - ``hyperparameters``: ``spec.hyperparameters`` (a dict; the function validates its own keys).
  - ``output_dir``: a path that does not exist yet. The function must export a TensorFlow SavedModel
    there with the signatures of :mod:`kfloop.contract`: ``predict_raw`` taking one 1-D tensor per model
    feature, named after it, of the feature's dtype (float32 / int64 / string) with missing values as
    the sentinels (NaN, -1, ``""``), and ``serving_default`` taking ``examples`` (1-D string, serialized
    ``tf.Example``s; an absent key is a missing value); both return the task's output
    (:func:`kfloop.contract.output_key`): binary ``{"probability": float32[batch]}`` in [0, 1];
    regression ``{"prediction": float32[batch]}`` in the label's units; multiclass
    ``{"probabilities": float32[batch, K]}``, a softmax in ``spec.classes`` order. Its return value is
    ignored; an exception fails the training with its message.

  kfloop then checks the export (:func:`kfloop.contract.check_model`, the same check as
  ``kfloop models check``), scores it on both splits (binary AUC, log loss, accuracy; regression RMSE,
  MAE, R²; multiclass accuracy, log loss: :func:`.byo.metrics_of`) and adds ``spec.yaml``,
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
from training_image.trainer.fit import TrainResult, early_stopping_monitor, library_versions, train
from training_image.trainer.hparams import LOSSES, HParams, TrainError, parse_hidden_units

__all__ = [
    "EXAMPLES_SIGNATURE",
    "LOSSES",
    "METADATA_FILE",
    "OUTPUT_KEY",
    "RAW_SIGNATURE",
    "HParams",
    "TrainError",
    "TrainResult",
    "add_arguments",
    "build_parser",
    "cluster_size",
    "early_stopping_monitor",
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
