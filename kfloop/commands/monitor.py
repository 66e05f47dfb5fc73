"""``kfloop monitor``: one run of the monitoring pipeline, locally (kfp.local) or on a KFP cluster."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    from kfloop import config

    p = sub.add_parser(
        "monitor",
        help="run the monitoring pipeline once (monitor → decide → trigger), locally or on a cluster",
        description="Without --host: under kfp.local on this machine. With --host: a run through the KFP API.",
    )
    p.add_argument("--store-uri", required=True, help="model store root (predictions/, feedback/, models/)")
    p.add_argument(
        "--source",
        default="",
        help="raw taxi CSV (retraining; and the reference of a champion pushed without a stored one)",
    )
    p.add_argument("--model-name", default=config.MODEL_NAME)
    p.add_argument(
        "--window-start", default="", help="ISO UTC (default: end of the previous run, else 24 h back)"
    )
    p.add_argument("--window-end", default="", help="ISO UTC, exclusive (default: now)")
    p.add_argument(
        "--reference-train", default="", help="champion's training CSV (default: rebuilt from the store)"
    )
    p.add_argument(
        "--reference-eval", default="", help="champion's eval CSV (default: rebuilt from the store)"
    )
    p.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="OPTION",
        help="Beam option of the statistics pipeline, repeatable (e.g. --beam-arg=--runner=DataflowRunner)",
    )
    p.add_argument(
        "--trigger",
        choices=("off", "local", "cluster"),
        default=None,
        help="what a retrain decision does (default: off locally, cluster with --host)",
    )
    p.add_argument("--retrain-cutoff", default="", help="end of the fresh training window (default: today)")
    p.add_argument("--pipeline-root", default="runs/monitoring", help="kfp.local root (local mode)")
    p.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API URL: run on the cluster")
    p.add_argument("--namespace", help="Kubernetes namespace (multi-user Kubeflow)")
    p.add_argument("--experiment", default="kfloop")
    p.set_defaults(func=_monitor)


def _arguments(args: argparse.Namespace, trigger: str) -> dict:
    return {
        "store_uri": args.store_uri,
        "source": args.source,
        "model_name": args.model_name,
        "window_start": args.window_start,
        "window_end": args.window_end,
        "reference_train": args.reference_train,
        "reference_eval": args.reference_eval,
        "trigger_mode": trigger,
        "retrain_cutoff": args.retrain_cutoff,
        "kfp_host": "",  # inside the cluster the trigger uses in-cluster credentials
        "beam_pipeline_args": list(args.beam_arg),
    }


def _monitor(args: argparse.Namespace) -> int:
    import json

    from components.monitor.monitor import MonitorError, parse_instant

    try:
        for name in ("window_start", "window_end"):
            if getattr(args, name):
                parse_instant(getattr(args, name), name)
    except MonitorError as e:
        raise SystemExit(f"kfloop monitor: {e}") from None
    if args.host:
        return _on_cluster(args)
    trigger = args.trigger or "off"
    if trigger == "local" and not args.source:
        raise SystemExit("kfloop monitor: --trigger local needs --source (the data to retrain on)")
    from kfloop.local import run_pipeline
    from pipelines import monitoring

    arguments = _arguments(args, trigger)
    # a sibling, not a child: kfloop.local finds its run as the newest directory under the root
    arguments["retrain_pipeline_root"] = os.path.abspath(args.pipeline_root.rstrip("/") + "-retrain")
    try:
        run = run_pipeline(monitoring.create_pipeline(), args.pipeline_root, **arguments)
    except RuntimeError as e:
        raise SystemExit(
            f"kfloop monitor: the monitoring pipeline failed: {str(e).splitlines()[0]}"
        ) from None
    summary = json.loads(run.output("monitor-op", "summary").read_text())
    decision = json.loads(run.output("decide-op", "decision").read_text())
    print(
        f"window {summary['window_start']} .. {summary['window_end']}: {summary['rows']} predictions ({summary['status']})"
    )
    print(f"decision: {decision['summary']}")
    print(f"report: {run.output('decide-op', 'report')}")
    return 0


def _on_cluster(args: argparse.Namespace) -> int:
    from kfloop import submit as ks
    from pipelines import monitoring

    trigger = args.trigger or "cluster"
    try:
        ks.check_host(args.host)
        client = ks.client(args.host, namespace=args.namespace)
        result = client.create_run_from_pipeline_func(
            monitoring.create_pipeline(),
            arguments=_arguments(args, trigger),
            experiment_name=args.experiment,
            namespace=args.namespace,
        )
    except ks.SubmitError as e:
        raise SystemExit(f"kfloop monitor: {e}") from None
    print(f"run {result.run_id}: {ks.normalize_host(args.host)}/#/runs/details/{result.run_id}")
    return 0
