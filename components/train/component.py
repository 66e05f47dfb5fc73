"""KFP wrapper of :func:`training_image.trainer.train` (the spec's trainer: built-in Keras or a user function)."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components._kfp import gpu_component


@gpu_component
def train_op(
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
    spec: str,
    schema_uri: str = "",
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
    """Trains the spec's model and exports the model directory (SavedModel + spec, schema, metadata).

    Args:
        train_data: Training split (Dataset CSV) from ingest.
        eval_data: Evaluation split (Dataset CSV); early stopping watches the task's AUC / RMSE / log loss.
        spec: The dataset spec (YAML text or a URI): inputs, label and ``trainer``.
        schema_uri: The TFDV schema that validated the training data (path, ``gs://`` URI or the text
            proto), stored with the model; "" = the schema the spec alone implies
            (:func:`kfloop.tfdv.schema.spec_schema`), the one validate used then. Every version carries one.
            The hyperparameters below apply to the built-in ``keras`` trainer; one left at its default
            gives way to ``spec.hyperparameters`` (a user trainer reads only ``spec.hyperparameters``).
        learning_rate: Adam learning rate (> 0).
        epochs: Maximum epochs (>= 1).
        batch_size: Rows per batch (>= 1).
        hidden_units: Comma-separated hidden layer sizes ("" = linear model).
        dropout: Dropout rate in [0, 1).
        early_stopping_patience: Epochs without gain of the task's eval metric before stopping (0 = off).
        seed: Random seed (weights, dropout, shuffling).
        mixed_precision: mixed_float16 on GPUs (ignored on CPU).
        checkpoint_dir: BackupAndRestore directory; "" = next to the model artifact under the pipeline
            root (``<model uri>.backup``), so a retried (preempted) task resumes from its last epoch.

    Returns:
        model: The model directory (SavedModel, ``spec.yaml``, ``schema.pbtxt``, ``kfloop_metadata.json``).
        metrics: The task's final eval metrics (``auc`` / ``rmse`` / ``log_loss``, ...) and run facts.
        report: Self-contained HTML training curves.
    """
    from pathlib import Path

    from components.train.train_report import render_report
    from kfloop import contract
    from kfloop import spec as kspec
    from training_image.trainer import HParams, parse_hidden_units, train
    from training_image.trainer.fit import TRAIN_METRICS

    dataset_spec = kspec.load(spec)
    hp = None
    if dataset_spec.trainer == "keras":
        # A parameter left at its default gives way to the spec's ``hyperparameters``.
        params = {
            "learning_rate": learning_rate,
            "epochs": epochs,
            "batch_size": batch_size,
            "hidden_units": parse_hidden_units(hidden_units),
            "dropout": dropout,
            "early_stopping_patience": early_stopping_patience,
            "seed": seed,
            "mixed_precision": mixed_precision,
        }
        defaults = HParams()
        given = {k: v for k, v in params.items() if v != getattr(defaults, k)}
        hp = HParams.from_dict({**dict(dataset_spec.hyperparameters), **given})
    # On a cluster model.path is a local staging path (uploaded when the task ends) but model.uri is the
    # artifact's place under the pipeline root, stable across retries of this task: checkpoints there
    # survive a preempted node, so the retried task resumes from its last finished epoch.
    remote = model.uri.startswith(("gs://", "s3://"))
    backup = checkpoint_dir or (f"{model.uri.rstrip('/')}.backup" if remote else f"{model.path}.backup")
    import tempfile

    from kfloop.tfdv import schema as kschema

    schema = kschema.load_schema(schema_uri) if schema_uri else kschema.spec_schema(dataset_spec)
    schema_file = Path(tempfile.mkdtemp(prefix="kfloop-schema-")) / kschema.SCHEMA_FILE
    schema_file.write_text(kschema.to_text(schema, dataset_spec), encoding="utf-8")
    result = train(
        train_data.path,
        eval_data.path,
        model.path,
        hp,
        backup,
        spec=dataset_spec,
        schema_uri=str(schema_file),
    )
    # On the model artifact: the task's two headline metrics (binary auc, loss; regression rmse, mae;
    # multiclass accuracy, log_loss).
    headline = TRAIN_METRICS[dataset_spec.task.value]
    data = result.metadata["data"]
    # The task's metrics (binary auc/loss/accuracy, regression rmse/mae/r2, multiclass accuracy/log_loss),
    # their train_ values, best_epoch and epochs_run.
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    metrics.log_metric("train_rows", data["train_rows"])
    metrics.log_metric("eval_rows", data["eval_rows"])
    model.metadata.update(
        {
            "framework": "tensorflow",
            "format": "saved_model",
            "signatures": [contract.EXAMPLES_SIGNATURE, contract.RAW_SIGNATURE],
            "trainer": dataset_spec.trainer,
            "spec_sha256": result.metadata["spec_sha256"],
            "schema_sha256": result.metadata["schema_sha256"] or "",
            "task": dataset_spec.task.value,
            **{k: result.metrics[k] for k in headline},
            "train_window_start": data["train_window"]["start"],
            "train_window_end": data["train_window"]["end"],
            "device": result.device,
        }
    )
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(render_report(result.history, result.metrics, result.metadata))
