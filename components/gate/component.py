"""KFP wrapper of :func:`components.gate.gate.check`."""

from kfp.dsl import Artifact, Input, Markdown, Output

from components._kfp import component


@component
def gate_op(anomalies: Input[Artifact], report: Output[Markdown]):
    """Stops the pipeline before training when validation found blocking anomalies.

    Validation itself succeeds (so its HTML report and statistics stay visible in the KFP dashboard);
    this step fails the run, listing each blocking anomaly: feature, anomaly type, description.

    Args:
        anomalies: validate's anomalies folder (``anomalies.pbtxt`` + ``summary.json``).

    Returns:
        report: That the data passed, and which non-blocking anomalies were let through.
    """
    from components.gate.gate import check

    text = check(anomalies.path)
    with open(report.path, "w") as f:
        f.write(text)
