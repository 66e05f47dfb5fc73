"""KFP wrapper of :func:`components.push.push.push`."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from components._kfp import component


@component
def push_op(
    model: Input[Model],
    blessing: Input[Artifact],
    store_uri: str,
    model_name: str,
    data_window_start: str,
    data_window_end: str,
    run_id: str,
    code_version: str,
    reference: Input[Artifact],
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    trigger_id: str,
    notify_config: str,
    pushed: Output[Artifact],
    report: Output[Markdown],
):
    """Publishes the model to the store when blessed (first → ``champion``, later → ``canary``).

    Args:
        model: The trained SavedModel directory.
        blessing: The evaluation's blessing JSON (``{"blessed": bool, "reasons": [...]}``).
        store_uri: Model store root (local directory or ``gs://bucket/prefix``).
        model_name: Name of the model in the store.
        data_window_start: Start of the training data window (kept with the version).
        data_window_end: End of the training data window.
        run_id: Pipeline run id.
        code_version: Version of the kfloop code.
        reference: The monitoring reference (statistics of the train / eval splits), stored with the version.
        train_data: The training split (its content digest is kept with the version: lineage).
        eval_data: The evaluation split (the same).
        trigger_id: The trigger record that started this run ("" = not a retrain: the first run or by hand).
        notify_config: Notification channels (:mod:`kfloop.notify`): blessed / refused becomes an event.

    Returns:
        pushed: JSON ``{"pushed", "version", "alias", "model_uri", "reasons", "champion"}``.
        report: Human-readable summary.
    """
    import json

    from components.push.push import notify_push, push
    from kfloop import config, lineage

    metadata = {
        "data_window": {"start": data_window_start, "end": data_window_end},
        "run_id": run_id,
        "trigger_id": trigger_id,
        "code_version": code_version,
        "model_artifact": {"uri": model.uri, "metadata": dict(model.metadata)},
        "provenance": lineage.provenance(
            train_path=train_data.path,
            eval_path=eval_data.path,
            images={"pipeline": config.PIPELINE_IMAGE, "training": config.TRAINING_IMAGE},
        ),
    }
    result = push(
        model.path,
        blessing.path,
        store_uri,
        model_name,
        metadata,
        reference_dir=reference.path,
    )
    notify_push(store_uri, model_name, result, run_id=run_id, config=notify_config)
    with open(pushed.path, "w") as f:
        json.dump(result.to_dict(), f, indent=2)
    pushed.metadata.update({k: v for k, v in result.to_dict().items() if k != "reasons"})
    with open(report.path, "w") as f:
        f.write(result.markdown(model_name, store_uri))
