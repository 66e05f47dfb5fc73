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
from training_image.trainer.hparams import DEFAULT_HUBER_DELTA, HParams, TrainError

log = logging.getLogger("kfloop.trainer")

#: Per task, the eval metrics whose train-split value the result also reports as ``train_<name>``.
TRAIN_METRICS = {
    "binary": ("auc", "loss"),
    "regression": ("rmse", "mae"),
    "multiclass": ("accuracy", "log_loss"),
}


def early_stopping_monitor(task) -> tuple[str, str]:
    """What early stopping watches for a task (``spec.task`` or its value): ``(Keras log key, mode)``.

    binary ``("val_auc", "max")``; regression ``("val_rmse", "min")`` (the RMSE of the standardised
    label, so the same epoch as the RMSE in label units, whatever the loss); multiclass
    ``("val_loss", "min")`` (the sparse categorical cross-entropy: the eval log loss).
    """
    task = getattr(task, "value", task)
    return {
        "binary": ("val_auc", "max"),
        "regression": ("val_rmse", "min"),
        "multiclass": ("val_loss", "min"),
    }[task]


@dataclasses.dataclass
class TrainResult:
    """What one training run produced.

    Attributes:
        model_dir: The SavedModel directory (with spec, schema and ``kfloop_metadata.json``).
        metrics: Final eval metrics of the exported model, per task: binary ``auc``, ``loss``, ``accuracy``;
            regression ``rmse``, ``mae``, ``r2`` (label units); multiclass ``accuracy``, ``log_loss``,
            ``loss``; plus ``train_<name>`` of :data:`TRAIN_METRICS`, ``best_epoch``, ``epochs_run`` (-1 / 0
            for a user trainer).
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
        eval_uri: Evaluation Dataset CSV (early stopping watches the task's metric on it:
            :func:`early_stopping_monitor`).
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
        TrainError: bad spec, hyperparameters (e.g. a loss that is not one of the task's), data or trainer,
            an export that breaks the contract, or a non-empty ``model_dir``.
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
    if not user:
        hparams.loss_for(spec.task)
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
            "task": spec.task.value,
            "classes": list(spec.classes),
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
                **_label_summary(train_df, spec),
            },
            "label_scaling": run.get("label_scaling"),
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


def _label_summary(train_df, spec) -> dict:
    """What the metadata says about the training labels: binary ``train_label_rate``; regression
    ``train_label_mean`` / ``train_label_std``; multiclass ``train_class_rates`` (in class order)."""
    y = train_df[spec.label.name]
    task = spec.task.value
    if task == "regression":
        y = y.astype(float)
        return {"train_label_mean": float(y.mean()), "train_label_std": float(y.std(ddof=0))}
    if task == "multiclass":
        counts = y.astype(int).value_counts()
        return {"train_class_rates": [float(counts.get(i, 0)) / len(y) for i in range(spec.n_classes)]}
    return {"train_label_rate": float(y.astype(float).mean())}


def _train_metrics(task: str, values: dict) -> dict:
    return {f"train_{k}": values[k] for k in TRAIN_METRICS[task]}


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
    task = spec.task.value
    cast = float if task == "regression" else int
    ev = byo.metrics_of(eval_df[spec.label.name].astype(cast), byo.scores(out, eval_df, spec), task)
    tr = byo.metrics_of(train_df[spec.label.name].astype(cast), byo.scores(out, train_df, spec), task)
    gpus = len(tf.config.list_physical_devices("GPU"))
    return {
        "model": spec.trainer,
        "hyperparameters": hyperparameters,
        "metrics": {**ev, **_train_metrics(task, tr), "best_epoch": -1, "epochs_run": 0},
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
    task = spec.task.value
    loss_name = hparams.loss_for(task)
    try:
        stats = data.feature_stats(train_df, spec, hparams)
        scaling = data.label_scaling(train_df, spec)
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            model = build_model(spec, stats, hparams)
            loss, metric_objs = _loss_and_metrics(task, loss_name, hparams)
            model.compile(
                optimizer=keras.optimizers.Adam(hparams.learning_rate), loss=loss, metrics=metric_objs
            )
        train_ds = data.make_dataset(train_df, spec, hparams, training=True, scaling=scaling)
        eval_ds = data.make_dataset(
            eval_df, spec, hparams, training=False, batch_size=max(hparams.batch_size, 1024), scaling=scaling
        )
        if replicas > 1 or distribute.strategy_kind() == "multi_worker":
            distribute.prebuild(model, strategy, train_ds)

        run_epochs: list[int] = []
        cbs = [_EpochRecorder.make(run_epochs)]
        monitor, mode = early_stopping_monitor(task)
        if hparams.early_stopping_patience:
            cbs.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    mode=mode,
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
        if scaling is not None:  # RMSE / MAE of the standardised label -> label units
            for k in ("rmse", "val_rmse", "mae", "val_mae"):
                if k in history:
                    history[k] = [v * scaling["std"] for v in history[k]]

        final = model.evaluate(eval_ds, return_dict=True, verbose=0)
        watched = history.get(monitor) or [float("nan")]
        pick = max if mode == "max" else min
        best = pick(range(len(watched)), key=lambda i: watched[i]) if hparams.early_stopping_patience else -1
        metrics = {
            **_final_metrics(task, final, scaling, eval_df, spec),
            **{
                f"train_{k}": history[hist_key][best] if history.get(hist_key) else float("nan")
                for k, hist_key in _TRAIN_HISTORY_KEYS[task].items()
            },
            "best_epoch": int(run_epochs[best]) if run_epochs else -1,
            "epochs_run": len(run_epochs),
        }
        export.export_saved_model(model, spec, out, label_scaling=scaling)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    hyperparameters = {**hparams.to_dict(), "loss": loss_name}
    if loss_name == "huber":
        hyperparameters["huber_delta"] = hparams.huber_delta or DEFAULT_HUBER_DELTA
    return {
        "model": model.name,
        "hyperparameters": hyperparameters,
        "preprocessing": stats,
        "label_scaling": scaling,
        "metrics": metrics,
        "history": history,
        "training": {
            "device": "GPU" if gpus else "CPU",
            "strategy": type(strategy).__name__,
            "replicas": replicas,
            "mixed_precision": use_mp,
            "epochs": run_epochs,
            "seconds": round(seconds, 3),
            "early_stopping": (
                {"monitor": monitor, "mode": mode, "patience": hparams.early_stopping_patience}
                if hparams.early_stopping_patience
                else None
            ),
        },
    }


#: Per task, ``train_<name>`` metric -> the Keras history key it is read from (at the best epoch).
_TRAIN_HISTORY_KEYS = {
    "binary": {"auc": "auc", "loss": "loss"},
    "regression": {"rmse": "rmse", "mae": "mae"},
    "multiclass": {"accuracy": "accuracy", "log_loss": "loss"},
}


def _loss_and_metrics(task: str, loss_name: str, hparams: HParams):
    """The Keras loss and metrics of a task (call under the strategy's scope)."""
    import keras

    if task == "regression":
        if loss_name == "huber":
            loss = keras.losses.Huber(delta=hparams.huber_delta or DEFAULT_HUBER_DELTA)
        else:
            loss = keras.losses.MeanSquaredError()
        return loss, [
            keras.metrics.RootMeanSquaredError(name="rmse"),
            keras.metrics.MeanAbsoluteError(name="mae"),
        ]
    if task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(), [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        ]
    return keras.losses.BinaryCrossentropy(), [
        keras.metrics.AUC(name="auc"),
        keras.metrics.BinaryAccuracy(name="accuracy"),
    ]


def _final_metrics(task: str, final: dict, scaling: dict | None, eval_df, spec) -> dict:
    """The eval metrics of the final (best) weights from ``model.evaluate``'s dict, in label units."""
    if task == "regression":
        rmse = float(final["rmse"]) * scaling["std"]
        var = float(eval_df[spec.label.name].astype(float).var(ddof=0))
        return {
            "rmse": rmse,
            "mae": float(final["mae"]) * scaling["std"],
            "r2": 1.0 - rmse**2 / var if var > 0 else float("nan"),
        }
    if task == "multiclass":
        return {
            "accuracy": float(final["accuracy"]),
            "log_loss": float(final["loss"]),
            "loss": float(final["loss"]),
        }
    return {"auc": float(final["auc"]), "loss": float(final["loss"]), "accuracy": float(final["accuracy"])}
