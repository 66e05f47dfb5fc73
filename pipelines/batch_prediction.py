"""The batch prediction pipeline: read the rows → validate (SERVING, gate) → score (Beam RunInference) → log."""

from kfp import dsl

from components.batch_predict.component import batch_input_op, batch_score_op
from components.gate.component import gate_op
from pipelines import settings

PIPELINE_NAME = "kfloop-batch-prediction"


def create_pipeline(name: str = PIPELINE_NAME):
    """Builds the batch prediction pipeline function.

    Bad rows stop the run at the data gate (blocking anomalies against the schema's ``SERVING``
    environment), before anything is scored or logged; validate's report says why. Scored rows go to the
    prediction log in the online server's format (``source="batch"``), so monitoring sees batch and online
    traffic alike, and to the caller's output file.

    Args:
        name: Pipeline name (KFP display name and local run-directory prefix).

    Returns:
        A ``@dsl.pipeline`` function; call it under ``kfp.local`` (``kfloop predict``) or compile it.
    """

    @dsl.pipeline(
        name=name,
        description="kfloop batch prediction: validate the rows against the serving schema, score them with "
        "a model version from the store (Beam RunInference), log them for monitoring, write the output.",
    )
    def batch_prediction_pipeline(
        input_uri: str,
        store_uri: str,
        model_name: str,
        output_uri: str = "",
        model_ref: str = "champion",
        log_predictions: bool = True,
        request_id: str = "",
        chunk_rows: int = 16384,
        beam_pipeline_args: list = [],  # noqa: B006 - KFP reads the default, it is never mutated
        notify_config: str = "",
    ):
        rows = batch_input_op(
            input_uri=input_uri,
            store_uri=store_uri,
            model_name=model_name,
            model_ref=model_ref,
            beam_pipeline_args=beam_pipeline_args,
        )
        settings.configure(
            rows,
            network_io=True,
            deterministic=True,
            cpu="1",
            memory="4Gi",
            display_name="read and validate (SERVING)",
        )
        gate = gate_op(
            anomalies=rows.outputs["anomalies"],
            store_uri=store_uri,
            model_name=model_name,
            window="",
            notify_config=notify_config,
        )
        settings.configure(
            gate, network_io=False, deterministic=True, cpu="100m", memory="256Mi", display_name="data gate"
        )
        settings.notify_access(gate)  # the notification config Secret (optional)
        score = batch_score_op(
            data=rows.outputs["data"],
            store_uri=store_uri,
            model_name=model_name,
            model_ref=rows.outputs["model_version"],  # the version whose spec and schema read the rows
            output_uri=output_uri,
            log_predictions=log_predictions,
            request_id=request_id,
            chunk_rows=chunk_rows,
            beam_pipeline_args=beam_pipeline_args,
        ).after(gate)
        # Resolves an alias and writes the log: never cached.
        settings.configure(
            score, network_io=True, deterministic=False, cpu="2", memory="8Gi", display_name="score"
        )

    return batch_prediction_pipeline
