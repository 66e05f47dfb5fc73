"""The training pipeline: ingest → (later issues: validate → train → evaluate → push)."""

from kfp import dsl

from components.ingest.component import ingest_op
from kfloop import config

PIPELINE_NAME = "kfloop-training"


def create_pipeline(name: str = PIPELINE_NAME):
    """Builds the training pipeline function.

    Args:
        name: Pipeline name (KFP display name and local run-directory prefix).

    Returns:
        A ``@dsl.pipeline`` function; call it under ``kfp.local`` or compile it.
    """

    @dsl.pipeline(name=name, description="kfloop training loop: ingest the taxi data, split by time.")
    def training_pipeline(
        source: str,
        cutoff: str = config.DEFAULT_CUTOFF,
        window_start: str = "",
        live_end: str = "",
        eval_fraction: float = config.DEFAULT_EVAL_FRACTION,
    ):
        ingest = ingest_op(
            source=source,
            cutoff=cutoff,
            window_start=window_start,
            live_end=live_end,
            eval_fraction=eval_fraction,
        )
        ingest.set_display_name("ingest")

    return training_pipeline
