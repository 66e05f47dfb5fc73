"""``kfloop submit``: run a compiled pipeline on a Kubeflow Pipelines cluster."""

from __future__ import annotations

import argparse
import os

from kfloop import config
from kfloop.app.compile import PIPELINES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a compiled pipeline to a KFP cluster (kfp.Client)")
    p.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API URL (default $KFP_HOST)")
    p.add_argument("--namespace", help="Kubernetes namespace (multi-user Kubeflow)")
    p.add_argument("--experiment", default="kfloop", help="experiment name (created if missing)")
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline parameter (repeatable)"
    )
    p.add_argument(
        "--spec",
        metavar="SPEC",
        help="dataset spec file (or gs://): its text becomes the run's spec parameter and its name the "
        "model_name, where the pipeline takes them and no --param sets them",
    )
    p.add_argument("--pipeline", choices=tuple(PIPELINES), default="training")
    p.add_argument("--package", help="compiled YAML (default <--compiled-dir>/<pipeline>.yaml)")
    p.add_argument("--compiled-dir", default="build/pipelines", help="where `kfloop compile` wrote")
    p.add_argument("--pipeline-root", help="override the compiled pipeline root (gs://bucket/prefix)")
    p.add_argument("--run-name", help="display name of the run")
    p.add_argument(
        "--service-account",
        default=config.ClusterConfig().service_account,
        help="service account of the run's pods (default: %(default)s, which manifests/ grants the deploy "
        "rights; '' = the cluster's default runner)",
    )
    p.add_argument(
        "--schedule",
        metavar="CRON",
        help="(re)create a recurring run instead (6-field KFP cron, e.g. '0 0 * * * *' = hourly)",
    )
    p.add_argument("--schedule-name", help="recurring run name (default kfloop-<pipeline>)")
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for the run; non-zero unless it succeeds",
    )
    p.set_defaults(func=_submit)


def check_package(package: str) -> None:
    """Refuses a local package that is not a compiled pipeline (a directory, empty, binary, not YAML).

    Raises:
        SystemExit: one line naming the file.
    """
    from kfloop.app.checks import check_input_file

    if package.startswith("gs://"):
        return
    check_input_file(package, "kfloop submit: --package", must_exist=False)
    if not os.path.exists(package):
        return  # kfloop.app.submit says how to make it
    try:
        with open(package, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise SystemExit(f"kfloop submit: --package {package}: not UTF-8 text (a binary file?)") from None
    import yaml

    try:
        doc = next(iter(yaml.safe_load_all(text)), None)
    except yaml.YAMLError as e:
        raise SystemExit(
            f"kfloop submit: --package {package}: not YAML ({' '.join(str(e).split())[:200]})"
        ) from None
    if not isinstance(doc, dict):
        raise SystemExit(f"kfloop submit: --package {package}: not a compiled pipeline (no YAML mapping)")


def _submit(args: argparse.Namespace) -> int:
    from kfloop.app import submit as ks

    package = args.package or os.path.join(args.compiled_dir, f"{args.pipeline}.yaml")
    check_package(package)
    try:
        params = ks.parse_params(args.param)
        if args.spec:
            params = ks.with_spec(package, params, args.spec)
        if args.schedule:
            if args.wait is not None:
                raise ks.SubmitError("--wait applies to single runs, not to --schedule")
            made = ks.schedule(
                package,
                host=args.host,
                cron=args.schedule,
                name=args.schedule_name or f"kfloop-{args.pipeline}",
                arguments=params,
                namespace=args.namespace or None,
                experiment=args.experiment,
                pipeline_root=args.pipeline_root or None,
                service_account=args.service_account or None,
            )
            print(f"recurring run {made.run_id}: {made.url}")
            return 0
        made = ks.submit(
            package,
            host=args.host,
            arguments=params,
            namespace=args.namespace or None,
            experiment=args.experiment,
            run_name=args.run_name,
            pipeline_root=args.pipeline_root or None,
            service_account=args.service_account or None,
        )
        print(f"run {made.run_id}: {made.url}")
        if args.wait is not None:
            state = ks.wait(args.host, made.run_id, timeout_s=args.wait, namespace=args.namespace or None)
            print(f"run {made.run_id}: {state}")
            if state != "SUCCEEDED":
                raise ks.SubmitError(f"run {made.run_id} finished {state}: {made.url}")
    except ks.SubmitError as e:
        raise SystemExit(f"kfloop submit: {e}") from None
    return 0
