"""KFP wrapper of :func:`components.deploy.deploy.deploy_pushed`."""

from kfp.dsl import Artifact, Input, Markdown, Output

from components._kfp import component


@component
def deploy_op(
    pushed: Input[Artifact],
    store_uri: str,
    model_name: str,
    mode: str,
    namespace: str,
    canary_percent: int,
    report: Output[Markdown],
    serving_image: str = "",
    notify_config: str = "",
):
    """Rolls out the pushed version (cluster: InferenceService canary; local: aliases).

    Args:
        pushed: Push's JSON output.
        store_uri: Model store root.
        model_name: Model name.
        mode: ``local`` or ``cluster``.
        namespace: Kubernetes namespace ("" = default).
        canary_percent: Canary traffic share (-1 = default, 0 = full rollout).
        serving_image: Predictor image (``kfloop compile`` embeds the one it compiled for; "" = default).
        notify_config: Notification channels (:mod:`kfloop.notify`): an undone rollout sends ``deploy.undone``.

    Returns:
        report: What was done.
    """
    from components.deploy.deploy import deploy_pushed
    from kfloop import deploy

    out = deploy_pushed(
        pushed.path,
        store_uri,
        model_name,
        mode,
        namespace,
        canary_percent,
        serving_image=serving_image,
        notify_config=notify_config,
    )
    text = "# Deploy: nothing pushed, nothing deployed\n" if out is None else f"# Deploy\n\n{out.summary()}\n"
    if out is not None and out.manifest is not None:
        text += f"\n```yaml\n{deploy.to_yaml(out.manifest)}```\n"
    with open(report.path, "w") as f:
        f.write(text)
