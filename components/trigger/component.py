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
    training_window_days: float,
    pipeline_root: str,
    kfp_host: str,
    namespace: str,
    extra_arguments: dict,
    triggered: Output[Artifact],
    report: Output[Markdown],
    training_pipeline: str = "",
):
    """Asks for the training pipeline on a fresh window when the decision is ``retrain`` (else nothing).

    Args:
        decision: The decision JSON of ``decide_op``.
        mode: ``local`` (record the request; the local loop driver starts the run), ``cluster`` (a run
            of the compiled / uploaded training pipeline through the KFP API) or ``off`` (record only).
        source: Raw CSV the training pipeline ingests.
        store_uri: Model store root.
        model_name: Model name.
        cutoff: End of the fresh training window ("" = the decision's time, the monitoring clock).
        training_window_days: Days of data before ``cutoff`` to train on (the data's own time).
        pipeline_root: kfp.local root (local) or pipeline-root override (cluster, "" = compiled default).
        kfp_host: KFP API URL ("" = ``ClusterConfig.kfp_host``, the in-cluster API service).
        namespace: Namespace of the run ("" = this pod's namespace, its Kubeflow profile).
        extra_arguments: More training-pipeline arguments (e.g. ``{"epochs": 8}``).
        training_pipeline: Cluster mode: the compiled training pipeline (path / ``gs://`` URI of the
            package ``kfloop compile`` wrote with the same images) or its uploaded version
            ``pipelines/<id>/versions/<id>`` (``kfloop schedule`` uploads it).

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
        training_pipeline=training_pipeline,
    )
    with open(triggered.path, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    triggered.metadata.update({"started": record["started"], "mode": mode, "decision": record["decision"]})
    state = "started" if record["started"] else record.get("state") or "not started"
    lines = [f"# Retraining {state} ({mode})", ""]
    lines += [f"- decision: `{record['decision']}`"]
    lines += [f"- {k}: `{v}`" for k, v in sorted(record.items()) if k not in ("decision", "started")]
    with open(report.path, "w") as f:
        f.write("\n".join(lines) + "\n")
