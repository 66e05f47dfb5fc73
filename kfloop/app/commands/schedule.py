"""``kfloop schedule``: a KFP recurring run (cron) of the monitoring pipeline."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule",
        help="create (or replace) a KFP recurring run of the monitoring pipeline on a cron",
        description="Compiles the monitoring pipeline and creates a recurring run with kfp.Client. Each run "
        "monitors the window since the previous run and, on drift, creates a run of the training pipeline "
        "given by --training-pipeline. Features, label and drift thresholds are those of the dataset spec "
        "stored with the champion.",
    )
    p.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API URL (default $KFP_HOST)")
    p.add_argument("--cron", default="0 0 * * * *", help="6-field KFP cron (sec min hour day month weekday)")
    p.add_argument("--store-uri", required=True, help="model store root, gs://bucket/prefix")
    p.add_argument(
        "--source", required=True, help="raw CSV of the data, gs:// (reference rebuild and retraining)"
    )
    p.add_argument("--model-name", required=True, help="the model (its dataset spec's name)")
    p.add_argument(
        "--training-pipeline",
        default="",
        help="what a retrain runs: the compiled training pipeline (gs://.../training.yaml, `kfloop compile`) "
        "or its uploaded version pipelines/<id>/versions/<id>; without it a retrain decision is recorded and "
        "its trigger fails naming this flag",
    )
    p.add_argument("--name", default="kfloop-monitoring", help="recurring run name (replaced if it exists)")
    p.add_argument("--namespace", help="Kubernetes namespace (multi-user Kubeflow)")
    p.add_argument("--experiment", default="kfloop")
    p.add_argument("--pipeline-root", help="gs://bucket/prefix for the runs' artifacts")
    p.add_argument("--registry", help="image registry override (default kfloop.config)")
    p.add_argument("--tag", help="image tag override")
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="more pipeline parameters"
    )
    p.set_defaults(func=_schedule)


def _schedule(args: argparse.Namespace) -> int:
    import tempfile

    from kfloop import store
    from kfloop.app import compile as kc
    from kfloop.app import submit as ks

    try:
        store.check_model_name(args.model_name)
    except store.StoreError as e:
        raise SystemExit(f"kfloop schedule: --model-name: {e}") from None
    try:
        params = ks.parse_params(args.param)
        params.update(store_uri=args.store_uri, source=args.source, model_name=args.model_name)
        if args.training_pipeline:
            params["training_pipeline"] = args.training_pipeline
        with tempfile.TemporaryDirectory(prefix="kfloop-schedule-") as tmp:
            paths = kc.compile_all(tmp, registry=args.registry, tag=args.tag, names=["monitoring"])
            made = ks.schedule(
                paths["monitoring"],
                host=args.host,
                cron=args.cron,
                name=args.name,
                arguments=params,
                namespace=args.namespace,
                experiment=args.experiment,
                pipeline_root=args.pipeline_root,
            )
    except (ks.SubmitError, kc.CompileError) as e:
        raise SystemExit(f"kfloop schedule: {e}") from None
    print(f"recurring run {made.run_id} ({args.cron}): {made.url}")
    return 0
