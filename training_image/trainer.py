"""The taxi ``big_tipper`` trainer: a Keras functional model that serves raw features.

Preprocessing lives inside the model (imputation + missing indicators, clipping and normalisation of
numeric features, lookups with an out-of-vocabulary bucket for categorical ones), with every statistic
computed on the training split, so serving receives raw features and there is no training/serving skew
by construction. Feature facts come from :mod:`kfloop.features`.

The export is one SavedModel (``tf.saved_model.save``) of the model's variables and lookup tables (not
the Keras objects, nor the optimizer state) with two signatures:

* ``serving_default``: ``examples`` (tf.string [None], serialized ``tf.Example``) -> ``probability``.
* ``predict_raw``: one named tensor per model feature (sentinel-encoded) -> ``probability``.

and ``kfloop_metadata.json`` beside the SavedModel files.

The same code path runs on a laptop CPU, on a GPU node (``MirroredStrategy``) and under a TFJob with
several workers (``MultiWorkerMirroredStrategy``, chosen from ``TF_CONFIG``).

CLI: ``python -m training_image.trainer --train-data URI --eval-data URI --model-dir DIR [--epochs N ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kfloop import datasets, fs
from kfloop import features as F

log = logging.getLogger("kfloop.trainer")

#: Name of the metadata file written next to the SavedModel files.
METADATA_FILE = "kfloop_metadata.json"
#: Signature over raw (sentinel-encoded) feature tensors.
RAW_SIGNATURE = "predict_raw"
#: Signature over serialized tf.Examples.
EXAMPLES_SIGNATURE = "serving_default"
#: Output key of both signatures.
OUTPUT_KEY = "probability"


class TrainError(ValueError):
    """Bad input to the trainer (hyperparameters or data); the message names the field or column."""


@dataclasses.dataclass(frozen=True)
class HParams:
    """Typed hyperparameters of the trainer, validated on construction.

    Attributes:
        learning_rate: Adam learning rate, > 0.
        epochs: Maximum number of epochs, >= 1 (early stopping may end sooner).
        batch_size: Rows per (global) batch, >= 1.
        hidden_units: Sizes of the hidden Dense layers, each >= 1 (may be empty: a linear model).
        dropout: Dropout rate after each hidden layer, in [0, 1).
        early_stopping_patience: Epochs without eval-AUC improvement before stopping; 0 = no early stop.
        embedding_dim: Categorical vocabularies larger than this are embedded with this many dims,
            smaller ones are one-hot encoded; >= 1.
        min_category_count: A category needs this many training rows to get its own vocabulary entry
            (rarer ones share the out-of-vocabulary bucket); >= 1.
        clip_quantile: Numeric features are clipped to the training [q, 1 - q] quantiles, in [0, 0.5).
        shuffle_buffer: tf.data shuffle buffer (rows), >= 1.
        seed: Seed of weights init, dropout and shuffling.
        mixed_precision: Use ``mixed_float16`` (GPU only; ignored with a log line on CPU).
    """

    learning_rate: float = 0.003
    epochs: int = 20
    batch_size: int = 256
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    early_stopping_patience: int = 3
    embedding_dim: int = 8
    min_category_count: int = 5
    clip_quantile: float = 0.001
    shuffle_buffer: int = 10_000
    seed: int = 42
    mixed_precision: bool = False

    def __post_init__(self):
        def bad(field: str, value, rule: str):
            raise TrainError(f"hyperparameter {field}={value!r}: {rule}")

        def is_num(v) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        if not is_num(self.learning_rate) or not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            bad("learning_rate", self.learning_rate, "must be a finite number > 0")
        for name, lo in (
            ("epochs", 1),
            ("batch_size", 1),
            ("embedding_dim", 1),
            ("min_category_count", 1),
            ("shuffle_buffer", 1),
            ("early_stopping_patience", 0),
            ("seed", 0),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                bad(name, v, f"must be an integer >= {lo}")
        if not isinstance(self.hidden_units, tuple):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        for u in self.hidden_units:
            if not isinstance(u, int) or isinstance(u, bool) or u < 1:
                bad("hidden_units", self.hidden_units, "every layer size must be an integer >= 1")
        if not is_num(self.dropout) or not 0.0 <= self.dropout < 1.0:
            bad("dropout", self.dropout, "must be in [0, 1)")
        if not is_num(self.clip_quantile) or not 0.0 <= self.clip_quantile < 0.5:
            bad("clip_quantile", self.clip_quantile, "must be in [0, 0.5)")
        if not isinstance(self.mixed_precision, bool):
            bad("mixed_precision", self.mixed_precision, "must be true or false")

    def to_dict(self) -> dict:
        """JSON-ready hyperparameters."""
        d = dataclasses.asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d

    @classmethod
    def from_dict(cls, values: dict) -> HParams:
        """Builds HParams from a dict (unknown keys are refused, naming them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainError(f"unknown hyperparameter(s): {', '.join(unknown)}")
        values = dict(values)
        if "hidden_units" in values:
            values["hidden_units"] = parse_hidden_units(values["hidden_units"])
        return cls(**values)


def parse_hidden_units(value) -> tuple[int, ...]:
    """``"64,32"`` / ``[64, 32]`` / ``""`` -> ``(64, 32)`` / ``(64, 32)`` / ``()``."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise TrainError(f"hyperparameter hidden_units={value!r}: use comma-separated integers") from None
    return tuple(value)


@dataclasses.dataclass
class TrainResult:
    """What one training run produced.

    Attributes:
        model_dir: The SavedModel directory (with ``kfloop_metadata.json``).
        metrics: Final eval metrics of the exported weights: ``auc``, ``loss``, ``accuracy``, plus
            ``train_auc``, ``train_loss``, ``best_epoch``, ``epochs_run``.
        history: Per-epoch Keras history of this run (``loss``, ``auc``, ``val_loss``, ``val_auc``...).
        epochs: 0-based epoch indices this call ran (a resumed run starts after the checkpoint's epoch).
        metadata: The content of ``kfloop_metadata.json``.
        device: ``"GPU"`` or ``"CPU"``.
        strategy: Class name of the distribution strategy used.
        train_seconds: Wall time of ``fit``.
        examples_per_second: Training rows processed per second of ``fit``.
    """

    model_dir: str
    metrics: dict
    history: dict
    epochs: list[int]
    metadata: dict
    device: str
    strategy: str
    train_seconds: float
    examples_per_second: float


# --------------------------------------------------------------------------------------- strategy


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TrainError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise TrainError("TF_CONFIG must be a JSON object")
    return cfg


def cluster_size(tf_config: dict | None = None) -> int:
    """Number of training tasks (chief + workers) that ``TF_CONFIG`` names (1 without TF_CONFIG)."""
    cfg = _tf_config() if tf_config is None else tf_config
    cluster = cfg.get("cluster") or {}
    return sum(len(cluster.get(role) or []) for role in ("chief", "worker")) or 1


def is_chief(tf_config: dict | None = None) -> bool:
    """Whether this task writes the model: the chief, or worker 0 when the cluster has no chief."""
    cfg = _tf_config() if tf_config is None else tf_config
    task = cfg.get("task") or {}
    if not task:
        return True
    role, index = task.get("type"), int(task.get("index", 0))
    if role == "chief":
        return True
    has_chief = bool((cfg.get("cluster") or {}).get("chief"))
    return role == "worker" and index == 0 and not has_chief


def worker_checkpoint_dir(checkpoint_dir: str, tf_config: dict | None = None) -> str:
    """The backup directory of this task: ``checkpoint_dir`` for the chief, a sibling per other worker
    (Keras 3's BackupAndRestore is not multi-worker aware; workers must not write one file)."""
    if is_chief(tf_config):
        return checkpoint_dir
    task = (_tf_config() if tf_config is None else tf_config).get("task") or {}
    return f"{checkpoint_dir.rstrip('/')}-{task.get('type', 'worker')}-{int(task.get('index', 0))}"


def strategy_kind(tf_config: dict | None = None, gpus: int | None = None) -> str:
    """Which strategy the hardware calls for: ``"multi_worker"``, ``"mirrored"`` or ``"default"``."""
    if cluster_size(tf_config) > 1:
        return "multi_worker"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if gpus > 0 else "default"


def choose_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, MirroredStrategy with GPUs,
    the default strategy otherwise."""
    import tensorflow as tf

    kind = strategy_kind()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# ------------------------------------------------------------------------------------------- data


def load_split(uri: str, what: str):
    """Reads a Dataset CSV and checks it: every model feature and the label present, labelled rows.

    Rows without a label (tips or fare missing) are dropped.

    Raises:
        TrainError: the file is missing, lacks a column, or has no labelled rows.
    """
    try:
        frame = datasets.read_dataset(uri)
    except FileNotFoundError:
        raise TrainError(f"{what} data {uri!r} does not exist") from None
    except ValueError as e:
        raise TrainError(f"{what} data {uri!r}: {e}") from None
    need = [f.name for f in F.MODEL_FEATURES] + [F.LABEL.name]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise TrainError(f"{what} data {uri!r} lacks column(s): {', '.join(missing)}")
    label = frame[F.LABEL.name]
    bad = label.notna() & ~label.isin([0, 1])
    if bad.any():
        raise TrainError(f"{what} data {uri!r}: column {F.LABEL.name!r} has a value other than 0/1")
    frame = frame[label.notna()].reset_index(drop=True)
    if frame.empty:
        raise TrainError(f"{what} data {uri!r} has no labelled rows")
    return frame


def feature_stats(train, hp: HParams) -> dict:
    """Preprocessing statistics from the training split (JSON-ready): per numeric feature the
    imputation value, clip bounds, mean and std after clipping; per categorical feature its vocabulary."""
    import numpy as np

    enc = datasets.encode(train)
    stats = {}
    for f in F.MODEL_FEATURES:
        x = enc[f.name]
        if f.kind == F.Kind.NUMERIC:
            present = x[~np.isnan(x)].astype(np.float64)
            if present.size == 0:
                stats[f.name] = {"fill": 0.0, "lo": 0.0, "hi": 0.0, "mean": 0.0, "std": 1.0}
                continue
            lo, hi = np.quantile(present, [hp.clip_quantile, 1.0 - hp.clip_quantile])
            median = float(np.median(present))
            clipped = np.clip(present, lo, hi)
            std = float(clipped.std())
            stats[f.name] = {
                "fill": median,
                "lo": float(lo),
                "hi": float(hi),
                "mean": float(clipped.mean()),
                "std": std if std > 1e-6 else 1.0,
            }
        else:
            values, counts = np.unique(
                x[x != f.missing] if x.dtype != object else x[x != ""], return_counts=True
            )
            keep = counts >= hp.min_category_count
            order = np.lexsort((values[keep].astype(str), -counts[keep]))  # by count, then value
            vocab = values[keep][order]
            stats[f.name] = {"vocabulary": [v.item() if hasattr(v, "item") else str(v) for v in vocab]}
    return stats


def make_dataset(frame, hp: HParams, training: bool, batch_size: int | None = None):
    """A ``tf.data`` pipeline of ``({feature: tensor}, label)`` batches; shuffled (seeded) when training.

    The rows stay in memory as one tensor per column; the pipeline shuffles row *indices* and gathers
    whole batches (one vectorised gather per column), which is much cheaper than shuffling 17-field
    elements one by one. Batches are prefetched.
    """
    import numpy as np
    import tensorflow as tf

    columns = {k: tf.constant(v) for k, v in datasets.encode(frame).items()}
    labels = tf.constant(frame[F.LABEL.name].astype("int64").to_numpy(dtype=np.float32))
    ds = tf.data.Dataset.range(len(frame))
    if training:
        ds = ds.shuffle(min(hp.shuffle_buffer, len(frame)), seed=hp.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size or hp.batch_size)
    ds = ds.map(
        lambda idx: ({k: tf.gather(v, idx) for k, v in columns.items()}, tf.gather(labels, idx)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------ model


def _tf_dtype(f: F.Feature):
    import tensorflow as tf

    return {"float32": tf.float32, "int64": tf.int64, "string": tf.string}[f.dtype]


def build_model(stats: dict, hp: HParams):
    """The Keras functional model: raw feature inputs (one per feature) -> P(big_tipper)."""
    import keras
    from keras import layers, ops

    inputs = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in F.MODEL_FEATURES}
    parts = []
    numeric = []
    for f in F.features_of(F.Kind.NUMERIC):
        s = stats[f.name]
        x = inputs[f.name]
        missing = ops.isnan(x)
        x = ops.where(missing, s["fill"], x)
        x = ops.clip(x, s["lo"], s["hi"])
        x = (x - s["mean"]) / s["std"]
        numeric += [x, ops.cast(missing, "float32")]
    parts.append(ops.stack(numeric, axis=-1))
    for f in F.MODEL_FEATURES:
        if f.kind == F.Kind.NUMERIC:
            continue
        vocab = stats[f.name]["vocabulary"]
        if not vocab:  # no category is frequent enough (e.g. an all-missing column): presence only
            parts.append(ops.expand_dims(ops.cast(ops.not_equal(inputs[f.name], f.missing), "float32"), -1))
            continue
        if f.kind == F.Kind.CATEGORICAL_STR:
            lookup = layers.StringLookup(vocabulary=vocab, num_oov_indices=1, name=f"{f.name}_lookup")
        else:
            lookup = layers.IntegerLookup(
                vocabulary=vocab, num_oov_indices=1, oov_token=-1, name=f"{f.name}_lookup"
            )
        idx = lookup(inputs[f.name])
        size = len(vocab) + 1
        if size <= hp.embedding_dim:
            parts.append(ops.one_hot(idx, size))
        else:
            parts.append(layers.Embedding(size, hp.embedding_dim, name=f"{f.name}_embedding")(idx))
    x = layers.Concatenate(name="features")(parts)
    for i, units in enumerate(hp.hidden_units):
        x = layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        if hp.dropout:
            x = layers.Dropout(hp.dropout, seed=hp.seed + i, name=f"dropout_{i}")(x)
    out = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(inputs=inputs, outputs=out, name="taxi_big_tipper")


# ----------------------------------------------------------------------------------------- export


def export_saved_model(model, export_dir: str) -> None:
    """Saves ``model`` with the ``serving_default`` (tf.Example) and ``predict_raw`` signatures."""
    import tensorflow as tf

    raw_spec = {f.name: tf.TensorSpec([None], _tf_dtype(f), name=f.name) for f in F.MODEL_FEATURES}
    parse_spec = {
        f.name: tf.io.FixedLenFeature([], _tf_dtype(f), default_value=f.missing) for f in F.MODEL_FEATURES
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
        prob = model(features, training=False)
        return {OUTPUT_KEY: tf.reshape(tf.cast(prob, tf.float32), [-1])}

    # Calls predict_raw, so the model's graph is saved (and loaded) once, not once per signature: a
    # 30% smaller saved_model.pb, and loads of 0.27-0.35 s instead of 0.35-0.54 s here.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return predict_raw(tf.io.parse_example(examples, parse_spec))

    module.predict_raw = predict_raw
    module.serve_examples = serve_examples
    tf.saved_model.save(
        module,
        export_dir,
        signatures={
            EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
            RAW_SIGNATURE: predict_raw.get_concrete_function(),
        },
    )


def _publish_dir(staging: Path, model_dir: str) -> None:
    """Moves a finished export into ``model_dir`` (local: rename; gs://: upload, metadata last)."""
    if fs.is_gcs(model_dir):
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == METADATA_FILE)  # metadata last: its presence = complete
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


def library_versions() -> dict:
    """Versions of the libraries that shape the model."""
    import platform

    import keras
    import numpy
    import pandas
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }


# ----------------------------------------------------------------------------------------- train


def _iso(epoch_seconds) -> str | None:
    import pandas as pd

    if epoch_seconds is None or pd.isna(epoch_seconds):
        return None
    return pd.Timestamp(int(epoch_seconds), unit="s", tz="UTC").isoformat()


def _window(frame) -> dict:
    if F.EVENT_TIME.name not in frame.columns:
        return {"start": None, "end": None}
    t = frame[F.EVENT_TIME.name]
    return {"start": _iso(t.min()), "end": _iso(t.max())}


def _prebuild(model, strategy, dataset) -> None:
    """Builds metric / loss state from one local batch, then skips Keras' own distributed pre-build.

    Keras 3 (``TensorFlowTrainer._maybe_symbolic_build``) MEAN-reduces one distributed input batch across
    replicas just to learn its shapes, which fails for string features (``payment_type``, ``company``)
    under MirroredStrategy with several replicas and under MultiWorkerMirroredStrategy. Shapes and
    dtypes are all it needs, and the undistributed dataset has them.
    """
    batch = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    _patch_multi_worker_log_reduction()


def _patch_multi_worker_log_reduction() -> None:
    """Works around tensorflow/tensorflow#72388 (Keras 3 + MultiWorkerMirroredStrategy).

    Keras 3 reduces each train/test step's logs with ``strategy.reduce("MEAN", v, axis=0)`` under a
    multi-worker strategy, which fails for the scalar loss / metric values ("Invalid reduction dimension
    0 for input with 0 dimensions"). Those values are already synchronised across workers (metric
    state is all-reduced), so the first local replica's value is the right one, as Keras does on TPUs.
    Only the ``"auto"`` reduction of a multi-worker strategy changes; idempotent.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_kfloop_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and tf_trainer._collective_all_reduce_multi_worker(strategy):
            reduction = "first"
        return original(values, strategy, reduction)

    reduce_per_replica._kfloop_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


class _EpochRecorder:
    """Keras callback (built lazily so this module imports without keras) noting each epoch run."""

    @staticmethod
    def make(epochs: list[int]):
        import keras

        class Recorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                epochs.append(int(epoch))

        return Recorder()


def train(
    train_uri: str,
    eval_uri: str,
    model_dir: str,
    hparams: HParams = HParams(),
    checkpoint_dir: str | None = None,
    *,
    callbacks: list | tuple = (),
    verbose: int = 0,
) -> TrainResult:
    """Trains the taxi model on ``train_uri``, early-stops on ``eval_uri`` AUC, exports to ``model_dir``.

    Args:
        train_uri: Training Dataset CSV (local path or ``gs://``).
        eval_uri: Evaluation Dataset CSV.
        model_dir: Where the SavedModel goes (local or ``gs://``; must not exist or be empty).
        hparams: Hyperparameters.
        checkpoint_dir: ``BackupAndRestore`` directory: a run preempted after epoch k resumes there
            at epoch k + 1. The backup is deleted when training completes. ``None``: no backup.
        callbacks: Extra Keras callbacks (tests use one to simulate a preemption).
        verbose: Keras ``fit`` verbosity.

    Returns:
        The :class:`TrainResult`.

    Raises:
        TrainError: bad hyperparameters, missing/invalid data, or a non-empty ``model_dir``.
    """
    if not isinstance(hparams, HParams):
        raise TrainError(f"hparams must be an HParams, got {type(hparams).__name__}")
    if not fs.is_gcs(model_dir):
        target = Path(model_dir)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise TrainError(f"model_dir {model_dir!r} already exists and is not empty")
    train_df = load_split(train_uri, "train")
    eval_df = load_split(eval_uri, "eval")

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(hparams.seed)
    tf.config.experimental.enable_op_determinism()
    strategy = choose_strategy()
    gpus = len(tf.config.list_physical_devices("GPU"))
    device = "GPU" if gpus else "CPU"
    use_mp = hparams.mixed_precision and gpus > 0
    if hparams.mixed_precision and not use_mp:
        log.info("mixed_precision requested but no GPU is visible: training in float32")
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mp else "float32")
    try:
        stats = feature_stats(train_df, hparams)
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            model = build_model(stats, hparams)
            model.compile(
                optimizer=keras.optimizers.Adam(hparams.learning_rate),
                loss=keras.losses.BinaryCrossentropy(),
                metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
            )
        train_ds = make_dataset(train_df, hparams, training=True)
        eval_ds = make_dataset(eval_df, hparams, training=False, batch_size=max(hparams.batch_size, 1024))
        if replicas > 1 or strategy_kind() == "multi_worker":
            _prebuild(model, strategy, train_ds)

        run_epochs: list[int] = []
        cbs = [_EpochRecorder.make(run_epochs)]
        if hparams.early_stopping_patience:
            cbs.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_auc",
                    mode="max",
                    patience=hparams.early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        if checkpoint_dir:
            cbs.append(keras.callbacks.BackupAndRestore(worker_checkpoint_dir(checkpoint_dir)))
        cbs += list(callbacks)

        start = time.perf_counter()
        hist = model.fit(
            train_ds, validation_data=eval_ds, epochs=hparams.epochs, callbacks=cbs, verbose=verbose
        )
        seconds = time.perf_counter() - start
        history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}

        final = model.evaluate(eval_ds, return_dict=True, verbose=0)
        val_auc = history.get("val_auc") or [float("nan")]
        best = max(range(len(val_auc)), key=lambda i: val_auc[i]) if hparams.early_stopping_patience else -1
        metrics = {
            "auc": float(final["auc"]),
            "loss": float(final["loss"]),
            "accuracy": float(final["accuracy"]),
            "train_auc": history["auc"][best] if history.get("auc") else float("nan"),
            "train_loss": history["loss"][best] if history.get("loss") else float("nan"),
            "best_epoch": int(run_epochs[best]) if run_epochs else -1,
            "epochs_run": len(run_epochs),
        }
        metadata = {
            "model": model.name,
            "label": F.LABEL.name,
            "features": F.spec(),
            "signatures": {
                EXAMPLES_SIGNATURE: {"inputs": {"examples": "string"}, "outputs": {OUTPUT_KEY: "float32"}},
                RAW_SIGNATURE: {
                    "inputs": {f.name: f.dtype for f in F.MODEL_FEATURES},
                    "outputs": {OUTPUT_KEY: "float32"},
                },
            },
            "missing_values": {
                f.name: (None if f.kind == F.Kind.NUMERIC else f.missing) for f in F.MODEL_FEATURES
            },
            "data": {
                "train_uri": train_uri,
                "eval_uri": eval_uri,
                "train_window": _window(train_df),
                "eval_window": _window(eval_df),
                "train_rows": len(train_df),
                "eval_rows": len(eval_df),
                "train_label_rate": float(train_df[F.LABEL.name].astype(float).mean()),
            },
            "hyperparameters": hparams.to_dict(),
            "preprocessing": stats,
            "training": {
                "device": device,
                "strategy": type(strategy).__name__,
                "replicas": replicas,
                "mixed_precision": use_mp,
                "epochs": run_epochs,
                "seconds": round(seconds, 3),
            },
            "libraries": library_versions(),
            "metrics": metrics,
            "history": history,
            "created_at": _iso(time.time()),
        }

        # Only the chief writes the model; other workers of a TFJob export to a scratch dir (the
        # export is collective under MultiWorkerMirroredStrategy, so every worker must run it).
        chief = is_chief()
        parent = None if fs.is_gcs(model_dir) or not chief else Path(model_dir).parent
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".kfloop-export-", dir=parent))
        try:
            export_saved_model(model, str(staging / "model"))
            (staging / "model" / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str))
            if chief:
                _publish_dir(staging / "model", model_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    return TrainResult(
        model_dir=model_dir,
        metrics=metrics,
        history=history,
        epochs=run_epochs,
        metadata=metadata,
        device=device,
        strategy=type(strategy).__name__,
        train_seconds=seconds,
        examples_per_second=len(train_df) * len(run_epochs) / seconds if seconds > 0 else 0.0,
    )


def read_metadata(model_dir: str) -> dict:
    """Reads ``kfloop_metadata.json`` of an exported model."""
    return json.loads(fs.read_text(fs.join(model_dir, METADATA_FILE)))


# ------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the trainer's options (data, model dir, one flag per :class:`HParams` field) to a parser."""
    defaults = HParams()
    p.add_argument("--train-data", required=True, help="training Dataset CSV (path or gs://)")
    p.add_argument("--eval-data", required=True, help="eval Dataset CSV (path or gs://)")
    p.add_argument("--model-dir", required=True, help="where the SavedModel goes (path or gs://)")
    p.add_argument(
        "--checkpoint-dir", default=None, help="BackupAndRestore directory (resume after preemption)"
    )
    p.add_argument("--metrics-out", default=None, help="also write the final metrics as JSON here")
    for f in dataclasses.fields(HParams):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.name == "mixed_precision":
            p.add_argument(flag, action="store_true", help="use mixed_float16 on GPUs")
        elif f.name == "hidden_units":
            p.add_argument(
                flag, default=",".join(map(str, default)), help=f"comma-separated (default {default})"
            )
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"(default {default})")
    p.add_argument("-v", "--verbose", type=int, default=2, help="Keras fit verbosity (0, 1, 2)")


def run_from_args(args: argparse.Namespace) -> dict:
    """Trains as the parsed options say; returns the summary printed as JSON.

    Raises:
        TrainError: bad hyperparameters or data (the message names the field or column).
    """
    hp = HParams.from_dict({f.name: getattr(args, f.name) for f in dataclasses.fields(HParams)})
    result = train(
        args.train_data, args.eval_data, args.model_dir, hp, args.checkpoint_dir, verbose=args.verbose
    )
    summary = {
        "model_dir": result.model_dir,
        "device": result.device,
        "strategy": result.strategy,
        **result.metrics,
    }
    if args.metrics_out:
        fs.write_text(args.metrics_out, json.dumps(summary, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training_image.trainer", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: bad input gives one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        summary = run_from_args(args)
    except TrainError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
