"""KFP wrapper of :func:`training_image.trainer.train`."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components._kfp import gpu_component


@gpu_component
def train_op(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
    learning_rate: float = 0.003,
    epochs: int = 20,
    batch_size: int = 256,
    hidden_units: str = "64,32",
    dropout: float = 0.1,
    early_stopping_patience: int = 3,
    seed: int = 42,
    mixed_precision: bool = False,
    checkpoint_dir: str = "",
):
    """Trains the taxi ``big_tipper`` model and exports the SavedModel (raw-feature + tf.Example signatures).

    Args:
        train_data: Training split (CSV) from ingest.
        eval_data: Evaluation split (CSV); early stopping watches its AUC.
        learning_rate: Adam learning rate (> 0).
        epochs: Maximum epochs (>= 1).
        batch_size: Rows per batch (>= 1).
        hidden_units: Comma-separated hidden layer sizes ("" = linear model).
        dropout: Dropout rate in [0, 1).
        early_stopping_patience: Epochs without eval-AUC gain before stopping (0 = off).
        seed: Random seed (weights, dropout, shuffling).
        mixed_precision: mixed_float16 on GPUs (ignored on CPU).
        checkpoint_dir: BackupAndRestore directory; "" = next to the model artifact under the pipeline
            root (``<model uri>.backup``), so a retried (preempted) task resumes from its last epoch.

    Returns:
        model: The SavedModel directory (with ``kfloop_metadata.json``).
        metrics: Final eval ``auc``, ``loss``, ``accuracy`` and run facts.
        report: Self-contained HTML training curves.
    """
    from pathlib import Path

    from components.train.train_report import render_report
    from training_image.trainer import HParams, parse_hidden_units, train

    hp = HParams(
        learning_rate=learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        hidden_units=parse_hidden_units(hidden_units),
        dropout=dropout,
        early_stopping_patience=early_stopping_patience,
        seed=seed,
        mixed_precision=mixed_precision,
    )
    # On a cluster model.path is a local staging path (uploaded when the task ends) but model.uri is the
    # artifact's place under the pipeline root, stable across retries of this task: checkpoints there
    # survive a preempted node, so the retried task resumes from its last finished epoch.
    remote = model.uri.startswith(("gs://", "s3://"))
    backup = checkpoint_dir or (f"{model.uri.rstrip('/')}.backup" if remote else f"{model.path}.backup")
    result = train(train_data.path, eval_data.path, model.path, hp, backup)
    data = result.metadata["data"]
    for name in ("auc", "loss", "accuracy", "train_auc", "train_loss", "best_epoch", "epochs_run"):
        metrics.log_metric(name, result.metrics[name])
    metrics.log_metric("train_rows", data["train_rows"])
    metrics.log_metric("eval_rows", data["eval_rows"])
    model.metadata.update(
        {
            "framework": "tensorflow",
            "format": "saved_model",
            "signatures": ["serving_default", "predict_raw"],
            "auc": result.metrics["auc"],
            "loss": result.metrics["loss"],
            "train_window_start": data["train_window"]["start"],
            "train_window_end": data["train_window"]["end"],
            "device": result.device,
        }
    )
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(render_report(result.history, result.metrics, result.metadata))
