"""KFP wrappers of :mod:`components.batch_predict.batch_predict`: the input step and the scoring step."""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components._kfp import component


@component
def batch_input_op(
    input_uri: str,
    store_uri: str,
    model_name: str,
    model_ref: str,
    data: Output[Dataset],
    anomalies: Output[Artifact],
    report: Output[HTML],
    counts: Output[Metrics],
    beam_pipeline_args: list = [],  # noqa: B006 (KFP list parameter default)
) -> NamedTuple("Input", [("model_version", str)]):
    """Reads the rows to score and validates them against the schema's ``SERVING`` environment (TFDV).

    The columns, their kinds and the schema are those stored with the model version that will score
    (its ``spec.yaml`` and ``schema.pbtxt``; without a schema, the one the spec alone implies). The step
    succeeds with the anomalies recorded (so a cluster keeps the report); ``gate_op`` after it stops the run
    on blocking anomalies, before anything is scored or logged.

    Args:
        input_uri: CSV to score (local path or ``gs://``): Dataset form, the user's raw form (cleaned per
            the spec), or rows with the model features only.
        store_uri: Model store root.
        model_name: Model name in the store (the dataset spec's name).
        model_ref: Alias (``champion``), ``latest`` or version (``v0003``) of the model that will score.
        beam_pipeline_args: Apache Beam options for the statistics.

    Returns:
        data: The rows as a Dataset CSV without label (the ``SERVING`` form).
        anomalies: Folder with ``anomalies.pbtxt`` and ``summary.json`` (what ``gate_op`` reads).
        report: Self-contained HTML validation report.
        counts: Rows read, anomalies, blocking anomalies.
        model_version: The version ``model_ref`` named (the score step scores with exactly it).
    """
    from collections import namedtuple

    from components.batch_predict.batch_predict import prepare_input, version_spec
    from kfloop.tfdv import ops

    version, spec, schema_uri = version_spec(store_uri, model_name, model_ref)
    rows = prepare_input(input_uri, data.path, spec)
    data.metadata.update({"rows": rows, "format": "csv", "source": input_uri, "model_version": version})
    result = ops.run_validation(
        data.path,
        spec=spec,
        schema=ops.load_schema(schema_uri) if schema_uri else None,
        environment=ops.SERVING,
        beam_pipeline_args=list(beam_pipeline_args),
    )
    ops.write_artifacts(
        result,
        anomalies_dir=anomalies.path,
        report_uri=report.path,
        title=f"Batch prediction input: {input_uri} (SERVING, {model_name} {version})",
    )
    anomalies.metadata.update({"blocking": bool(result.blocking), "num_anomalies": len(result.findings)})
    counts.log_metric("rows", rows)
    counts.log_metric("num_anomalies", len(result.findings))
    counts.log_metric("num_blocking", len(result.blocking))
    return namedtuple("Input", ["model_version"])(version)


@component
def batch_score_op(
    data: Input[Dataset],
    store_uri: str,
    model_name: str,
    model_ref: str,
    output_uri: str,
    predictions: Output[Dataset],
    counts: Output[Metrics],
    log_predictions: bool = True,
    request_id: str = "",
    chunk_rows: int = 16384,
    beam_pipeline_args: list = [],  # noqa: B006 (KFP list parameter default)
) -> NamedTuple("Scored", [("model_version", str), ("request_id", str)]):
    """Scores the Dataset with the model of an alias or version (Beam RunInference over the SavedModel).

    Every row goes into the prediction log in the format the online server writes (``source="batch"``,
    request id = this job's, row = input row number), and into the caller's output file. The log rows
    are committed last, after the outputs: a failure at any step logs none, and a rerun with the same
    ``request_id`` replaces the rows of the earlier attempt.

    Args:
        data: Validated Dataset to score.
        store_uri: Model store root (and prediction log root).
        model_name: Model name in the store.
        model_ref: Alias (``champion``), ``latest`` or version (``v0003``).
        output_uri: Also write the predictions here (``.csv`` or Parquet; "" = only the artifact).
        log_predictions: Write the rows to the prediction log (monitoring reads it).
        request_id: Request id of the job ("" = ``batch-<time>-<random>``).
        chunk_rows: Rows per Beam element / model call.
        beam_pipeline_args: Apache Beam options, e.g. ``["--runner=DataflowRunner", ...]``.

    Returns:
        predictions: Parquet file of the prediction log's schema (request id, row, timestamp, model
            version, raw features, the task's output), in input order.
        counts: Rows, seconds, rows per second.
        model_version: The version that scored.
        request_id: The request id every row carries in the log.
    """
    from collections import namedtuple

    from components.batch_predict import batch_predict as B

    version = B.resolve(store_uri, model_name, model_ref)
    parts = predictions.uri.rstrip("/") + "-parts"
    # On a cluster the artifact's gs:// URI (Beam workers of a remote runner can read it); locally its path.
    source = data.uri if data.uri.startswith("gs://") else data.path
    B.stop_with_parent()  # under `kfloop predict`: its SIGTERM or death stops this task too
    # Staged, then the outputs, then the log rows committed (all of the job's rows or none).
    result = B.run_job(
        source,
        store_uri,
        model_name,
        version,
        parts,
        [predictions.path, *([output_uri] if output_uri else [])],
        log=log_predictions,
        request_id=request_id or None,
        chunk_rows=chunk_rows,
        beam_args=list(beam_pipeline_args),
    )
    predictions.metadata.update(
        {"rows": result.rows, "model_version": version, "request_id": result.request_id, "format": "parquet"}
    )
    for name, value in result.metrics().items():
        counts.log_metric(name, value)
    return namedtuple("Scored", ["model_version", "request_id"])(version, result.request_id)
