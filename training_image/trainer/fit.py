"""Training: :func:`train` reads the splits, runs the spec's trainer (the built-in Keras model or a user
function), checks the export against the model contract and publishes it with spec, schema and metadata."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from pathlib import Path

from kfloop import contract, fs
from training_image.trainer import byo, data, distribute, export
from training_image.trainer.hparams import HParams, TrainError

log = logging.getLogger("kfloop.trainer")


@dataclasses.dataclass
class TrainResult:
    """What one training run produced.

    Attributes:
        model_dir: The SavedModel directory (with spec, schema and ``kfloop_metadata.json``).
        metrics: Final eval metrics of the exported model: ``auc``, ``loss``, ``accuracy``, plus
            ``train_auc``, ``train_loss``, ``best_epoch``, ``epochs_run`` (-1 / 0 for a user trainer).
        history: Per-epoch Keras history of this run (empty for a user trainer).
        epochs: 0-based epoch indices this call ran (a resumed run starts after the checkpoint's epoch).
        metadata: The content of ``kfloop_metadata.json``.
        device: ``"GPU"`` or ``"CPU"``.
        strategy: Class name of the distribution strategy used (``"user"`` for a user trainer).
        train_seconds: Wall time of ``fit`` (of the user function).
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


class _EpochRecorder:
    """Keras callback (built lazily so this module imports without keras) noting each epoch run."""

    @staticmethod
    def make(epochs: list[int]):
        import keras

        class Recorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                epochs.append(int(epoch))

        return Recorder()


def _load_spec(spec):
    from kfloop import spec as kspec

    if isinstance(spec, kspec.DatasetSpec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise TrainError("spec is required: a DatasetSpec, a spec file / URI or its YAML text")
    try:
        return kspec.load(spec)
    except (kspec.SpecError, FileNotFoundError) as e:
        raise TrainError(f"spec: {e}") from None


def train(
    train_uri: str,
    eval_uri: str,
    model_dir: str,
    hparams: HParams | None = None,
    checkpoint_dir: str | None = None,
    *,
    spec,
    schema_uri: str | None = None,
    callbacks: list | tuple = (),
    verbose: int = 0,
) -> TrainResult:
    """Trains the spec's model on ``train_uri``, exports it to ``model_dir`` with the spec and schema.

    Args:
        train_uri: Training Dataset CSV (local path or ``gs://``).
        eval_uri: Evaluation Dataset CSV (early stopping watches its AUC).
        model_dir: Where the model directory goes (local or ``gs://``; must not exist or be empty).
        hparams: Hyperparameters of the Keras trainer; None: ``spec.hyperparameters`` (defaults for the
            rest). A user trainer gets ``spec.hyperparameters`` as its dict.
        checkpoint_dir: ``BackupAndRestore`` directory (Keras trainer): a run preempted after epoch k
            resumes there at epoch k + 1. The backup is deleted when training completes. None: no backup.
        spec: The :class:`kfloop.spec.DatasetSpec` (or a spec path / URI / YAML text).
        schema_uri: The training data's TFDV ``schema.pbtxt``, copied into the model directory.
        callbacks: Extra Keras callbacks (tests use one to simulate a preemption).
        verbose: Keras ``fit`` verbosity.

    Raises:
        TrainError: bad spec, hyperparameters, data or trainer, an export that breaks the contract, or a
            non-empty ``model_dir``.
    """
    spec = _load_spec(spec)
    if hparams is not None and not isinstance(hparams, HParams):
        raise TrainError(f"hparams must be an HParams, got {type(hparams).__name__}")
    if schema_uri and not fs.exists(schema_uri):
        raise TrainError(f"schema {schema_uri!r} does not exist")
    user = spec.trainer != byo.KERAS
    fn = byo.resolve(spec.trainer) if user else None
    if hparams is None and not user:
        hparams = HParams.from_dict(dict(spec.hyperparameters))
    export.check_target(model_dir)
    train_df = data.read_split(train_uri, spec, "train")
    eval_df = data.read_split(eval_uri, spec, "eval")

    # Only the chief writes the model; other workers of a TFJob export to a scratch dir (the export is
    # collective under MultiWorkerMirroredStrategy, so every worker must run it).
    chief = user or distribute.is_chief()
    parent = None if fs.is_gcs(model_dir) or not chief else Path(model_dir).parent
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kfloop-export-", dir=parent))
    try:
        out = str(staging / "model")
        if user:
            run = _fit_user(fn, train_df, eval_df, spec, out)
        else:
            run = _fit_keras(train_df, eval_df, spec, hparams, checkpoint_dir, out, callbacks, verbose)
        metadata = {
            "model": run["model"],
            "trainer": spec.trainer,
            "source": "trained",
            "spec_name": spec.name,
            "spec_digest": spec.digest(),
            "label": spec.label.name,
            "features": spec.describe(),
            "signatures": contract.signature_description(spec),
            "missing_values": {
                f.name: (None if f.dtype == "float32" else f.missing) for f in spec.model_features
            },
            "data": {
                "train_uri": train_uri,
                "eval_uri": eval_uri,
                "train_window": data.window(train_df, spec),
                "eval_window": data.window(eval_df, spec),
                "train_rows": len(train_df),
                "eval_rows": len(eval_df),
                "train_label_rate": float(train_df[spec.label.name].astype(float).mean()),
            },
            "hyperparameters": run["hyperparameters"],
            "preprocessing": run.get("preprocessing"),
            "training": run["training"],
            "libraries": library_versions(),
            "metrics": run["metrics"],
            "history": run["history"],
            "created_at": data.iso(time.time()),
        }
        metadata = export.finish(out, spec, schema_uri, metadata)
        if chief:
            export.publish_dir(staging / "model", model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds = run["training"]["seconds"]
    epochs = run["training"]["epochs"]
    return TrainResult(
        model_dir=model_dir,
        metrics=run["metrics"],
        history=run["history"],
        epochs=epochs,
        metadata=metadata,
        device=run["training"]["device"],
        strategy=run["training"]["strategy"],
        train_seconds=seconds,
        examples_per_second=len(train_df) * max(len(epochs), 1) / seconds if seconds > 0 else 0.0,
    )


def _fit_user(fn, train_df, eval_df, spec, out: str) -> dict:
    """Runs a user trainer into ``out``, checks the export against the contract, scores it."""
    import tensorflow as tf

    hyperparameters = dict(spec.hyperparameters)
    start = time.perf_counter()
    try:
        fn(train_df.copy(), eval_df.copy(), spec, dict(hyperparameters), out)
    except TrainError:
        raise
    except Exception as e:
        raise TrainError(f"trainer {spec.trainer!r} failed: {type(e).__name__}: {e}") from e
    seconds = time.perf_counter() - start
    problems = contract.check_model(out, spec)
    if problems:
        raise TrainError(
            f"trainer {spec.trainer!r}: the export breaks the model contract: {'; '.join(problems)}"
        )
    ev = byo.metrics_of(eval_df[spec.label.name].astype(int), byo.scores(out, eval_df, spec))
    tr = byo.metrics_of(train_df[spec.label.name].astype(int), byo.scores(out, train_df, spec))
    gpus = len(tf.config.list_physical_devices("GPU"))
    return {
        "model": spec.trainer,
        "hyperparameters": hyperparameters,
        "metrics": {
            **ev,
            "train_auc": tr["auc"],
            "train_loss": tr["loss"],
            "best_epoch": -1,
            "epochs_run": 0,
        },
        "history": {},
        "training": {
            "device": "GPU" if gpus else "CPU",
            "strategy": "user",
            "replicas": 1,
            "mixed_precision": False,
            "epochs": [],
            "seconds": round(seconds, 3),
        },
    }


def _fit_keras(train_df, eval_df, spec, hparams: HParams, checkpoint_dir, out, callbacks, verbose) -> dict:
    """Fits the built-in Keras model and exports it to ``out`` (collectively on every worker)."""
    import keras
    import tensorflow as tf

    from training_image.trainer.model import build_model

    keras.utils.set_random_seed(hparams.seed)
    tf.config.experimental.enable_op_determinism()
    strategy = distribute.choose_strategy()
    gpus = len(tf.config.list_physical_devices("GPU"))
    use_mp = hparams.mixed_precision and gpus > 0
    if hparams.mixed_precision and not use_mp:
        log.info("mixed_precision requested but no GPU is visible: training in float32")
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mp else "float32")
    try:
        stats = data.feature_stats(train_df, spec, hparams)
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            model = build_model(spec, stats, hparams)
            model.compile(
                optimizer=keras.optimizers.Adam(hparams.learning_rate),
                loss=keras.losses.BinaryCrossentropy(),
                metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
            )
        train_ds = data.make_dataset(train_df, spec, hparams, training=True)
        eval_ds = data.make_dataset(
            eval_df, spec, hparams, training=False, batch_size=max(hparams.batch_size, 1024)
        )
        if replicas > 1 or distribute.strategy_kind() == "multi_worker":
            distribute.prebuild(model, strategy, train_ds)

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
            cbs.append(keras.callbacks.BackupAndRestore(distribute.worker_checkpoint_dir(checkpoint_dir)))
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
        export.export_saved_model(model, spec, out)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return {
        "model": model.name,
        "hyperparameters": hparams.to_dict(),
        "preprocessing": stats,
        "metrics": metrics,
        "history": history,
        "training": {
            "device": "GPU" if gpus else "CPU",
            "strategy": type(strategy).__name__,
            "replicas": replicas,
            "mixed_precision": use_mp,
            "epochs": run_epochs,
            "seconds": round(seconds, 3),
        },
    }
