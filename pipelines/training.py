"""The training pipeline: ingest → validate (gate) → train → evaluate vs champion → push → deploy.

One compiled pipeline serves every dataset: the dataset spec is a parameter (``spec``: the YAML text or a
URI, :func:`kfloop.spec.load`), passed to every step that reads data or writes the model.
"""

from kfp import dsl

import kfloop
from components.champion.component import champion_op
from components.deploy.component import deploy_op
from components.evaluate.component import evaluate_op
from components.gate.component import gate_op
from components.ingest.component import ingest_op
from components.monitor.component import reference_op
from components.push.component import push_op
from components.train.component import train_op
from components.validate.component import validate_op
from kfloop import config
from pipelines import settings

PIPELINE_NAME = "kfloop-training"


def create_pipeline(name: str = PIPELINE_NAME):
    """Builds the training pipeline function.

    Bad data stops the run at the data gate (blocking anomalies), before training; ``validate`` itself
    succeeds so that its report shows why in the dashboard. The evaluation always
    writes a blessing with reasons; ``push`` publishes only a blessed model (gating inside the component,
    TFX-Pusher style, since kfp.local has no ``dsl.If``) and ``deploy`` rolls it out (local: aliases;
    cluster: a KServe InferenceService, canary for a new version).

    Args:
        name: Pipeline name (KFP display name and local run-directory prefix).

    Returns:
        A ``@dsl.pipeline`` function; call it under ``kfp.local`` or compile it.
    """
    ev = config.EvaluationConfig()
    val = config.ValidationConfig()
    dep = config.DeployConfig()

    @dsl.pipeline(
        name=name,
        description="kfloop training: ingest the data described by the dataset spec by time, validate with "
        "TFDV, train, evaluate against the champion with TFMA, push a blessed model (with its spec and schema) "
        "to the store and deploy it to KServe.",
    )
    def training_pipeline(
        spec: str,
        source: str,
        store_uri: str,
        model_name: str,
        schema: str = "",
        cutoff: str = "",
        window_start: str = "",
        live_end: str = "",
        eval_fraction: float = config.DEFAULT_EVAL_FRACTION,
        epochs: int = 20,
        learning_rate: float = 0.003,
        batch_size: int = 256,
        auc_floor: float = ev.auc_floor,
        max_auc_regression: float = ev.max_auc_regression,
        min_r2: float = ev.min_r2,
        max_log_loss_ratio: float = ev.max_log_loss_ratio,
        min_slice_examples: int = ev.min_slice_examples,
        deploy_mode: str = "cluster",
        namespace: str = dep.namespace,
        canary_percent: int = dep.canary_percent,
        trigger_id: str = "",
        notify_config: str = "",
    ):
        ingest = ingest_op(
            spec=spec,
            source=source,
            cutoff=cutoff,
            window_start=window_start,
            live_end=live_end,
            eval_fraction=eval_fraction,
        )
        settings.configure(
            ingest, network_io=True, deterministic=True, cpu="1", memory="2Gi", display_name="ingest"
        )

        validate = validate_op(
            spec=spec,
            data=ingest.outputs["train_data"],
            skew_data=ingest.outputs["eval_data"],
            environment="TRAINING",
            schema_uri=schema,
            skew_linf=val.skew_linf,
            skew_jsd=val.skew_jsd,
            block_on_skew=val.block_on_skew,
            fail_on_blocking=False,  # the gate below stops the run; validate's report stays visible
        )
        settings.configure(
            validate, network_io=False, deterministic=True, cpu="1", memory="4Gi", display_name="validate"
        )
        gate = gate_op(
            anomalies=validate.outputs["anomalies"],
            store_uri=store_uri,
            model_name=model_name,
            window=cutoff,
            notify_config=notify_config,
        )
        settings.configure(
            gate, network_io=False, deterministic=True, cpu="100m", memory="256Mi", display_name="data gate"
        )
        settings.notify_access(gate)  # the notification config Secret (optional)

        train = train_op(
            spec=spec,
            train_data=ingest.outputs["train_data"],
            eval_data=ingest.outputs["eval_data"],
            schema_uri=schema,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
        ).after(gate)
        settings.configure(
            train, network_io=False, deterministic=True, cpu="2", memory="8Gi", display_name="train"
        )
        settings.configure_gpu(train)

        champion = champion_op(store_uri=store_uri, model_name=model_name)
        settings.configure(
            champion,
            network_io=True,
            deterministic=False,
            cpu="250m",
            memory="256Mi",
            display_name="current champion",
        )

        evaluate = evaluate_op(
            spec=spec,
            eval_data=ingest.outputs["eval_data"],
            model=train.outputs["model"],
            champion_uri=champion.outputs["model_uri"],
            auc_floor=auc_floor,
            max_auc_regression=max_auc_regression,
            min_r2=min_r2,
            max_log_loss_ratio=max_log_loss_ratio,
            min_slice_examples=min_slice_examples,
        )
        settings.configure(
            evaluate, network_io=True, deterministic=False, cpu="2", memory="4Gi", display_name="evaluate"
        )

        # The monitoring reference (statistics of the clipped train / eval splits), kept with the version.
        reference = reference_op(
            spec=spec,
            train_data=ingest.outputs["train_data"],
            eval_data=ingest.outputs["eval_data"],
            model=train.outputs["model"],
        ).after(gate)
        settings.configure(
            reference, network_io=False, deterministic=True, cpu="1", memory="4Gi", display_name="reference"
        )

        push = push_op(
            model=train.outputs["model"],
            blessing=evaluate.outputs["blessing"],
            store_uri=store_uri,
            model_name=model_name,
            data_window_start=window_start,
            data_window_end=cutoff,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            code_version=kfloop.__version__,
            reference=reference.outputs["reference"],
            train_data=ingest.outputs["train_data"],
            eval_data=ingest.outputs["eval_data"],
            trigger_id=trigger_id,
            notify_config=notify_config,
        )
        settings.configure(
            push, network_io=True, deterministic=False, cpu="500m", memory="1Gi", display_name="push"
        )
        settings.notify_access(push)  # the notification config Secret (optional)

        deploy = deploy_op(
            pushed=push.outputs["pushed"],
            store_uri=store_uri,
            model_name=model_name,
            mode=deploy_mode,
            namespace=namespace,
            canary_percent=canary_percent,
            serving_image=config.SERVING_IMAGE,  # `kfloop compile` embeds the compiled predictor image
            notify_config=notify_config,
        )
        settings.configure(
            deploy, network_io=True, deterministic=False, cpu="250m", memory="256Mi", display_name="deploy"
        )
        settings.notify_access(deploy)  # the notification config Secret (optional)

    return training_pipeline
