"""KFP wrapper of :func:`components.trigger.trigger.trigger`."""

from kfp.dsl import Artifact, Input, Markdown, Output

from components._kfp import component


@component
def trigger_op(
    decision: Input[Artifact],
    mode: str,
    source: str,
    store_uri: str,
    model_name: str,
    cutoff: str,
    training_window_days: int,
    pipeline_root: str,
    kfp_host: str,
    namespace: str,
    extra_arguments: dict,
    triggered: Output[Artifact],
    report: Output[Markdown],
    pipeline_image: str = "",
    training_image: str = "",
    serving_image: str = "",
):
    """Starts the training pipeline on a fresh window when the decision is ``retrain`` (else nothing).

    Args:
        decision: The decision JSON of ``decide_op``.
        mode: ``local`` (kfp.local in this task), ``cluster`` (KFP API) or ``off`` (record only).
        source: Raw taxi CSV the training pipeline ingests.
        store_uri: Model store root.
        model_name: Model name.
        cutoff: End of the fresh training window ("" = today, UTC).
        training_window_days: Days of data before ``cutoff`` to train on.
        pipeline_root: kfp.local root (local) or pipeline-root override (cluster, "" = compiled default).
        kfp_host: KFP API URL ("" = ``ClusterConfig.kfp_host``, the in-cluster API service).
        namespace: Namespace of the run ("" = this pod's namespace, its Kubeflow profile).
        extra_arguments: More training-pipeline arguments (e.g. ``{"epochs": 8}``).
        pipeline_image: CPU pipeline image of the training run (``kfloop compile`` embeds its own).
        training_image: GPU training image of the training run (likewise).
        serving_image: Predictor image of the training run's deploy (likewise).

    Returns:
        triggered: JSON record of what was started (run id / directory, arguments).
        report: The same for the KFP dashboard: started or not, why, and with which arguments.
    """
    import json

    from components.trigger.trigger import trigger

    with open(decision.path) as f:
        found = json.load(f)
    record = trigger(
        found,
        mode=mode,
        source=source,
        store_uri=store_uri,
        model_name=model_name,
        cutoff=cutoff,
        training_window_days=training_window_days,
        pipeline_root=pipeline_root,
        host=kfp_host,
        namespace=namespace,
        extra_arguments=extra_arguments,
        images={"pipeline": pipeline_image, "training": training_image, "serving": serving_image},
    )
    with open(triggered.path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    triggered.metadata.update({"started": record["started"], "mode": mode, "decision": record["decision"]})
    lines = [f"# Retraining {'started' if record['started'] else 'not started'} ({mode})", ""]
    lines += [f"- decision: `{record['decision']}`"]
    lines += [f"- {k}: `{v}`" for k, v in sorted(record.items()) if k not in ("decision", "started")]
    with open(report.path, "w") as f:
        f.write("\n".join(lines) + "\n")
