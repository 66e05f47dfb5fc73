"""KFP wrapper of :func:`kfloop.tfdv.ops.run_validation`: the data-validation gate."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components._kfp import component


@component
def validate_op(
    data: Input[Dataset],
    spec: str,
    statistics: Output[Artifact],
    anomalies: Output[Artifact],
    report: Output[HTML],
    summary: Output[Metrics],
    skew_data: Input[Dataset] = None,
    environment: str = "TRAINING",
    schema_uri: str = "",
    reference_statistics_uri: str = "",
    beam_pipeline_args: list = [],  # noqa: B006 (KFP list parameter default)
    drift_linf: float = 0.15,
    drift_jsd: float = 0.1,
    skew_linf: float = 0.1,
    skew_jsd: float = 0.1,
    block_on_drift: bool = False,
    block_on_skew: bool = True,
    fail_on_blocking: bool = True,
):
    """Computes TFDV statistics of a Dataset, validates them against the schema and gates the pipeline.

    Writes every output first, then raises when there are blocking anomalies, so the task fails (and the
    pipeline stops before training) with one line per blocking anomaly: feature, anomaly type, description.

    Args:
        data: Dataset CSV to validate (e.g. the train split).
        spec: The dataset spec: its YAML text, or a path / ``gs://`` URI of it.
        skew_data: Optional second Dataset (e.g. the eval split) for the train/eval skew check.
        environment: Schema environment, ``TRAINING`` (label required) or ``SERVING`` (label absent).
        schema_uri: Schema text proto (path, ``gs://`` URI, or the text itself; the schema kept next to the
            spec); "" = the schema the spec alone implies (:func:`kfloop.tfdv.schema.spec_schema`).
        reference_statistics_uri: Statistics to measure drift against (e.g. the champion's training
            statistics); "" = no drift check.
        beam_pipeline_args: Apache Beam options, e.g. ``["--runner=DataflowRunner", ...]`` or
            ``["--direct_running_mode=multi_processing", "--direct_num_workers=2"]``.
        drift_linf: L-infinity drift threshold (categorical).
        drift_jsd: Jensen-Shannon drift threshold (numeric).
        skew_linf: L-infinity skew threshold (categorical).
        skew_jsd: Jensen-Shannon skew threshold (numeric).
        block_on_drift: Whether drift above threshold blocks.
        block_on_skew: Whether skew above threshold blocks.
        fail_on_blocking: Fail this task on blocking anomalies. ``False``: record them and succeed, so a
            cluster keeps this task's report and statistics (KFP does not upload a failed task's outputs),
            and let ``gate_op`` stop the run before training.

    Returns:
        statistics: Binary TFDV ``DatasetFeatureStatisticsList`` of ``data``.
        anomalies: Folder with ``anomalies.pbtxt`` (TFDV ``Anomalies`` text proto) and ``summary.json``.
        report: Self-contained HTML report (no network needed).
        summary: Counts: rows, anomalies, blocking anomalies, drift / skew features above threshold.
    """
    import dataclasses

    from kfloop import config
    from kfloop import spec as S
    from kfloop.tfdv import ops
    from kfloop.tfdv import schema as kschema

    cfg = dataclasses.replace(
        config.ValidationConfig(),
        drift_linf=drift_linf,
        drift_jsd=drift_jsd,
        skew_linf=skew_linf,
        skew_jsd=skew_jsd,
        block_on_drift=block_on_drift,
        block_on_skew=block_on_skew,
    )
    dataset_spec = S.load(spec)
    schema = kschema.load_schema(schema_uri) if schema_uri else kschema.spec_schema(dataset_spec)
    reference = ops.load_statistics(reference_statistics_uri) if reference_statistics_uri else None
    result = ops.run_validation(
        data.path,
        spec=dataset_spec,
        schema=schema,
        environment=environment,
        reference_stats=reference,
        skew_data=skew_data.path if skew_data is not None else None,
        cfg=cfg,
        beam_pipeline_args=list(beam_pipeline_args),
    )
    ops.write_artifacts(
        result,
        statistics_uri=statistics.path,
        anomalies_dir=anomalies.path,
        report_uri=report.path,
        title=f"Data validation ({environment})",
    )
    statistics.metadata.update({"format": "DatasetFeatureStatisticsList", "num_examples": result.rows})
    anomalies.metadata.update({"blocking": bool(result.blocking), "num_anomalies": len(result.findings)})
    summary.log_metric("rows", result.rows)
    summary.log_metric("num_anomalies", len(result.findings))
    summary.log_metric("num_blocking", len(result.blocking))
    summary.log_metric("drift_crossed", sum(s["crossed"] for s in result.drift))
    summary.log_metric("skew_crossed", sum(s["crossed"] for s in result.skew))
    if result.blocking and fail_on_blocking:
        raise ops.BlockingAnomaliesError(ops.blocking_message(result.findings), result.findings)
