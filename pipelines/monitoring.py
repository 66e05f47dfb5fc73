"""The monitoring pipeline: monitor a window → judge the canary → decide → trigger the training pipeline.

No spec parameter: every step reads the dataset spec (features, label, per-feature drift thresholds and
modes) and the schema stored with the model version it handles (:mod:`kfloop.contract`). ``now`` is the
monitoring clock (:mod:`kfloop.clock`): set by the replay to the data's time; on a
schedule it is left empty and the steps use KFP's scheduled time (``{{$.pipeline_job_schedule_time_utc}}``).
"""

from kfp import dsl

from components.canary.component import canary_op
from components.decide.component import decide_op
from components.monitor.component import monitor_op
from components.trigger.component import trigger_op
from kfloop import config
from pipelines import settings

PIPELINE_NAME = "kfloop-monitoring"
_M = config.MonitoringConfig()
_C = config.ComparisonConfig()
_K = config.CanaryConfig()
_A = config.ApprovalConfig()


def create_pipeline(name: str = PIPELINE_NAME, *, local: bool = False):
    """Builds the monitoring pipeline function.

    Args:
        name: Pipeline name (KFP display name and local run-directory prefix).
        local: For kfp.local, whose runner cannot fill KFP's scheduled-time placeholder (kfp 2.13 fails on
            it): the steps then get ``scheduled_time=""`` and use ``now`` (or, unset, the wall clock, see
            :func:`kfloop.clock.resolve`). Everything else is the same pipeline.

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
        model_name: str,
        window_start: str = "",
        window_end: str = "",
        reference_train: str = "",
        reference_eval: str = "",
        trigger_mode: str = "cluster",
        retrain_cutoff: str = "",
        training_window_days: float = _M.training_window_days,
        retrain_pipeline_root: str = "",
        retrain_arguments: dict = {},  # noqa: B006 - KFP reads the default, it is never mutated
        kfp_host: str = "",
        namespace: str = "",
        training_pipeline: str = "",
        min_examples: int = _M.min_examples,
        min_live_auc: float = _M.min_live_auc,
        cooldown_hours: float = _M.cooldown_hours,
        now: str = "",
        deploy_mode: str = "cluster",
        deploy_namespace: str = "",
        canary_margin: float = _C.margin,
        canary_confidence: float = _C.confidence,
        canary_max_rows: int = _K.max_rows,
        canary_max_checks: int = _K.max_checks,
        beam_pipeline_args: list = [],  # noqa: B006 - KFP reads the default, it is never mutated
        promotion_policy: str = _A.policy,
        approval_expiry_hours: float = _A.expiry_hours,
        approval_on_expiry: str = _A.on_expiry,
        notify_config: str = "",
        pushgateway: str = "",
        stale_after_hours: float = _M.stale_after_hours,
        close_after_seconds: float = _M.close_after_seconds,
    ):
        scheduled = "" if local else dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
        mon = monitor_op(
            store_uri=store_uri,
            model_name=model_name,
            source=source,
            window_start=window_start,
            window_end=window_end,
            reference_train=reference_train,
            reference_eval=reference_eval,
            min_examples=min_examples,
            close_after_seconds=close_after_seconds,
            now=now,
            scheduled_time=scheduled,
            beam_pipeline_args=beam_pipeline_args,
        )
        settings.configure(
            mon, network_io=True, deterministic=False, cpu="1", memory="4Gi", display_name="monitor"
        )
        can = canary_op(
            store_uri=store_uri,
            model_name=model_name,
            now=now,
            scheduled_time=scheduled,
            window_end=window_end,
            mode=deploy_mode,
            namespace=deploy_namespace,
            margin=canary_margin,
            confidence=canary_confidence,
            max_rows=canary_max_rows,
            max_checks=canary_max_checks,
            serving_image=config.SERVING_IMAGE,  # `kfloop compile` embeds the compiled predictor image
            promotion_policy=promotion_policy,
            approval_expiry_hours=approval_expiry_hours,
            approval_on_expiry=approval_on_expiry,
            notify_config=notify_config,
        )
        can.after(mon)  # the canary is judged on the same window, after the monitor has read it
        settings.configure(
            can, network_io=True, deterministic=False, cpu="500m", memory="1Gi", display_name="canary verdict"
        )
        settings.notify_access(can)  # the notification config Secret (optional)
        dec = decide_op(
            summary=mon.outputs["summary"],
            canary=can.outputs["verdict"],
            store_uri=store_uri,
            model_name=model_name,
            now=now,
            scheduled_time=scheduled,
            min_live_auc=min_live_auc,
            cooldown_hours=cooldown_hours,
            stale_after_hours=stale_after_hours,
            notify_config=notify_config,
            pushgateway=pushgateway,
        )
        settings.configure(
            dec, network_io=True, deterministic=False, cpu="250m", memory="512Mi", display_name="decide"
        )
        settings.notify_access(dec)  # the notification config Secret (optional)
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
            # the compiled / uploaded training pipeline the retrain runs (`kfloop schedule` passes it)
            training_pipeline=training_pipeline,
        )
        # On a cluster it only calls the KFP API; locally it records the request for the loop driver.
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
