"""KFP wrapper of :func:`components.push.push.push`."""

from kfp.dsl import Artifact, Input, Markdown, Model, Output

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

    Returns:
        pushed: JSON ``{"pushed", "version", "alias", "model_uri", "reasons", "champion"}``.
        report: Human-readable summary.
    """
    import json

    from components.push.push import push

    metadata = {
        "data_window": {"start": data_window_start, "end": data_window_end},
        "run_id": run_id,
        "code_version": code_version,
        "model_artifact": {"uri": model.uri, "metadata": dict(model.metadata)},
    }
    result = push(
        model.path,
        blessing.path,
        store_uri,
        model_name,
        metadata,
        reference_dir=reference.path,
    )
    with open(pushed.path, "w") as f:
        json.dump(result.to_dict(), f, indent=2)
    pushed.metadata.update({k: v for k, v in result.to_dict().items() if k != "reasons"})
    with open(report.path, "w") as f:
        f.write(result.markdown(model_name, store_uri))
