"""The monitoring pipeline: monitor a window of prediction time → decide → trigger the training pipeline."""

from kfp import dsl

from components.decide.component import decide_op
from components.monitor.component import monitor_op
from components.trigger.component import trigger_op
from kfloop import config
from pipelines import settings

PIPELINE_NAME = "kfloop-monitoring"
_M = config.MonitoringConfig()


def create_pipeline(name: str = PIPELINE_NAME):
    """Builds the monitoring pipeline function.

    Args:
        name: Pipeline name (KFP display name and local run-directory prefix).

    Returns:
        A ``@dsl.pipeline`` function; call it under ``kfp.local`` or compile it (``kfloop schedule`` runs
        it on a cron).
    """

    @dsl.pipeline(
        name=name,
        description="kfloop monitoring: live statistics vs the champion's data, drift → decision → retrain.",
    )
    def monitoring_pipeline(
        store_uri: str,
        source: str,
        model_name: str = config.MODEL_NAME,
        window_start: str = "",
        window_end: str = "",
        reference_train: str = "",
        reference_eval: str = "",
        trigger_mode: str = "cluster",
        retrain_cutoff: str = "",
        training_window_days: int = _M.training_window_days,
        retrain_pipeline_root: str = "",
        retrain_arguments: dict = {},  # noqa: B006 - KFP reads the default, it is never mutated
        kfp_host: str = "",
        namespace: str = "",
        drift_linf: float = _M.drift_linf,
        drift_jsd: float = _M.drift_jsd,
        min_examples: int = _M.min_examples,
        min_live_auc: float = _M.min_live_auc,
        cooldown_hours: float = _M.cooldown_hours,
        beam_pipeline_args: list = [],  # noqa: B006 - KFP reads the default, it is never mutated
    ):
        mon = monitor_op(
            store_uri=store_uri,
            model_name=model_name,
            source=source,
            window_start=window_start,
            window_end=window_end,
            reference_train=reference_train,
            reference_eval=reference_eval,
            drift_linf=drift_linf,
            drift_jsd=drift_jsd,
            min_examples=min_examples,
            beam_pipeline_args=beam_pipeline_args,
        )
        settings.configure(
            mon, network_io=True, deterministic=False, cpu="1", memory="4Gi", display_name="monitor"
        )
        dec = decide_op(
            summary=mon.outputs["summary"],
            store_uri=store_uri,
            model_name=model_name,
            min_live_auc=min_live_auc,
            cooldown_hours=cooldown_hours,
        )
        settings.configure(
            dec, network_io=True, deterministic=False, cpu="250m", memory="512Mi", display_name="decide"
        )
        trig = trigger_op(
            decision=dec.outputs["decision"],
            mode=trigger_mode,
            source=source,
            store_uri=store_uri,
            model_name=model_name,
            cutoff=retrain_cutoff,
            training_window_days=training_window_days,
            pipeline_root=retrain_pipeline_root,
            extra_arguments=retrain_arguments,
            kfp_host=kfp_host,
            namespace=namespace,
            # `kfloop compile` embeds the images it compiled for: the retrain runs the same code.
            pipeline_image=config.PIPELINE_IMAGE,
            training_image=config.TRAINING_IMAGE,
            serving_image=config.SERVING_IMAGE,
        )
        # On a cluster it only compiles the training pipeline and calls the KFP API (kfp.local, which runs
        # the whole training pipeline in this task, ignores these requests).
        settings.configure(
            trig,
            network_io=True,
            deterministic=False,
            cpu="250m",
            memory="1Gi",
            display_name="trigger retraining",
        )
        settings.kfp_api_access(trig)  # the KFP API token of its pod (multi-user Kubeflow)

    return monitoring_pipeline
