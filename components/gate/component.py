"""KFP wrapper of :func:`components.gate.gate.check`."""

from kfp.dsl import Artifact, Input, Markdown, Output

from components._kfp import component


@component
def gate_op(
    anomalies: Input[Artifact],
    store_uri: str,
    model_name: str,
    window: str,
    notify_config: str,
    report: Output[Markdown],
):
    """Stops the pipeline before training when validation found blocking anomalies.

    Validation itself succeeds (so its HTML report and statistics stay visible in the KFP dashboard);
    this step fails the run, listing each blocking anomaly: feature, anomaly type, description.

    Args:
        anomalies: validate's anomalies folder (``anomalies.pbtxt`` + ``summary.json``).
        store_uri: Model store root (the ``data.blocked`` event is recorded there; "" = not sent).
        model_name: Model name.
        window: The training data's cutoff, for the event ("" = none).
        notify_config: Notification channels (:mod:`kfloop.notify`).

    Returns:
        report: That the data passed, and which non-blocking anomalies were let through.
    """
    from components.gate.gate import check, notify_blocked
    from kfloop.tfdv.ops import BlockingAnomaliesError

    try:
        text = check(anomalies.path)
    except BlockingAnomaliesError as e:
        notify_blocked(store_uri, model_name, e, window=window, config=notify_config)
        raise
    with open(report.path, "w") as f:
        f.write(text)
