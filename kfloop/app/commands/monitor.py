"""``kfloop monitor``: one run of the monitoring pipeline, locally (kfp.local) or on a KFP cluster."""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import sys

from kfloop import config

_A = config.ApprovalConfig()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="run the monitoring pipeline once (monitor → decide → trigger), locally or on a cluster",
        description="Without --host: under kfp.local on this machine. With --host: a run through the KFP API.",
    )
    p.add_argument("--store-uri", required=True, help="model store root (predictions/, feedback/, models/)")
    p.add_argument(
        "--source",
        default="",
        help="raw CSV of the data (retraining; and the reference of a champion pushed without a stored one)",
    )
    p.add_argument(
        "--model-name",
        help="the model (its dataset spec's name; default: the store's only model). Its features, label and "
        "drift thresholds are those of the spec stored with its champion",
    )
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
    p.add_argument(
        "--training-pipeline",
        default="",
        help="with --host: what a retrain runs, the compiled training pipeline (gs://.../training.yaml) or its "
        "uploaded version pipelines/<id>/versions/<id>",
    )
    p.add_argument("--now", default="", help="the monitoring clock, ISO UTC (default: the wall clock)")
    p.add_argument(
        "--promotion-policy",
        choices=config.APPROVAL_POLICIES,
        default=_A.policy,
        help="auto: the canary step promotes on the evidence; approval: it records a pending approval and "
        "notifies (kfloop approve|reject decides, the next run applies it)",
    )
    p.add_argument(
        "--approval-expiry-hours",
        type=float,
        default=_A.expiry_hours,
        help="a pending approval expires after",
    )
    p.add_argument(
        "--approval-on-expiry",
        choices=config.APPROVAL_ON_EXPIRY,
        default=_A.on_expiry,
        help="keep: the champion stays (the canary is rolled back); promote: the canary is promoted",
    )
    p.add_argument(
        "--canary-margin",
        type=float,
        default=config.ComparisonConfig().margin,
        help="non-inferiority margin of the canary comparison (binary: AUC)",
    )
    p.add_argument(
        "--notify-config",
        default="",
        help="notification channels (YAML of apprise URLs, kfloop.notify; default $KFLOOP_NOTIFY_CONFIG)",
    )
    p.add_argument(
        "--pushgateway",
        default="",
        help="Prometheus Pushgateway URL for the run's metrics (default $KFLOOP_PUSHGATEWAY)",
    )
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
        "training_pipeline": getattr(args, "training_pipeline", "") or "",
        "beam_pipeline_args": list(args.beam_arg),
        "now": args.now,
        "promotion_policy": args.promotion_policy,
        "approval_expiry_hours": args.approval_expiry_hours,
        "approval_on_expiry": args.approval_on_expiry,
        "canary_margin": args.canary_margin,
        "notify_config": args.notify_config,
        "pushgateway": args.pushgateway,
    }


def _monitor(args: argparse.Namespace) -> int:
    import json

    from kfloop.clock import ClockError, parse_instant

    try:
        bounds = {
            name: parse_instant(getattr(args, name), name)
            for name in ("window_start", "window_end")
            if getattr(args, name)
        }
    except ClockError as e:
        raise SystemExit(f"kfloop monitor: {e}") from None
    if len(bounds) == 2 and bounds["window_end"] <= bounds["window_start"]:
        raise SystemExit(
            f"kfloop monitor: --window-end {args.window_end} is not after --window-start {args.window_start}"
        )
    if args.host:
        _check_name(args)  # the store is read by the run on the cluster, with the cluster's credentials
        return _on_cluster(args)
    preflight(args)
    from kfloop.app.checks import check_not_in_store

    check_not_in_store(args.pipeline_root, "kfloop monitor: --pipeline-root", args.store_uri)
    trigger = args.trigger or "off"
    if trigger == "local" and not args.source:
        raise SystemExit("kfloop monitor: --trigger local needs --source (the data to retrain on)")
    from kfloop.app.local import run_pipeline
    from pipelines import monitoring

    arguments = _arguments(args, trigger)
    arguments["deploy_mode"] = "local"  # a canary verdict moves aliases; the local server follows
    # a sibling, not a child: kfloop.app.local finds its run as the newest directory under the root
    arguments["retrain_pipeline_root"] = os.path.abspath(args.pipeline_root.rstrip("/") + "-retrain")
    log_path = os.path.join(args.pipeline_root, "logs", f"monitor-{os.getpid()}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", errors="replace") as log:
        tee = _Tee(log, echo=sys.stdout)  # the tasks' logs go to the file; task lines to the terminal
        try:
            with contextlib.redirect_stdout(tee):
                run = run_pipeline(monitoring.create_pipeline(local=True), args.pipeline_root, **arguments)
        except RuntimeError as e:
            line = failure_line(str(e), tee.lines)
            raise SystemExit(f"kfloop monitor: {line} (log {log_path})") from None
    summary = json.loads(run.output("monitor-op", "summary").read_text())
    decision = json.loads(run.output("decide-op", "decision").read_text())
    print(
        f"window {summary['window_start']} .. {summary['window_end']}: {summary['rows']} predictions ({summary['status']})"
    )
    verdict = json.loads(run.output("canary-op", "verdict").read_text())
    if verdict.get("action") != "none":
        print(f"canary: {verdict['summary']}")
    print(f"decision: {decision['summary']}")
    print(f"report: {run.output('decide-op', 'report')}")
    return 0


def preflight(args: argparse.Namespace) -> None:
    """Checks the inputs before any pipeline starts: one line naming the file and the problem.

    The model name, ``--store-uri`` (an existing directory or ``gs://``), ``--source`` and the reference
    files (files), and the model in the store: every JSON file it has, and the champion's files against
    their manifest (the monitor compares live data with the champion's).
    """
    from kfloop import fs, store
    from kfloop.app.checks import check_input_file

    if args.model_name:
        _check_name(args)
    if not fs.is_gcs(args.store_uri):
        root = args.store_uri.removeprefix("file://")
        if not os.path.isdir(root):
            what = "is a file, expected a directory" if os.path.exists(root) else "does not exist"
            raise SystemExit(f"kfloop monitor: --store-uri {args.store_uri}: {what}")
    _check_name(args)  # without --model-name: the store's only model
    for flag in ("source", "reference_train", "reference_eval"):
        check_input_file(getattr(args, flag), f"kfloop monitor: --{flag.replace('_', '-')}")
    try:
        ms = store.ModelStore(args.store_uri)
        problems = ms.check(args.model_name, deep=False)
        champion = None if problems else ms.get_alias(args.model_name, store.CHAMPION)
        if champion:  # (no champion: the pipeline says so, or uses the given reference data)
            ms.verify(args.model_name, champion)
    except store.StoreError as e:
        problems = [str(e)]
    if problems:
        more = (
            f" (and {len(problems) - 1} more problems: see `kfloop models list`)" if len(problems) > 1 else ""
        )
        raise SystemExit(f"kfloop monitor: {problems[0]}{more}")


def _check_name(args: argparse.Namespace) -> None:
    """Checks ``--model-name``; without one, takes the store's only model (a local store only)."""
    from kfloop import store

    if not args.model_name:
        if args.host:  # the store is the cluster's: not read from here
            raise SystemExit("kfloop monitor: --model-name is required: the dataset spec's name")
        try:
            args.model_name = store.only_model(args.store_uri)
        except store.StoreError as e:
            raise SystemExit(f"kfloop monitor: {e}") from None
    try:
        store.check_model_name(args.model_name)
    except store.StoreError as e:
        raise SystemExit(f"kfloop monitor: --model-name: {e}") from None


class _Tee(io.TextIOBase):
    """Passes writes through and keeps the last lines (kfp.local prints each task's log to stdout);
    with ``echo``, the task start / end lines (without colour codes) are also written there."""

    def __init__(self, inner, echo=None):
        self.inner, self.echo = inner, echo
        self.lines: collections.deque[str] = collections.deque(maxlen=2000)
        self._partial = ""

    def write(self, s: str) -> int:
        self.inner.write(s)
        *done, self._partial = (self._partial + s).split("\n")
        self.lines.extend(done)
        if self.echo is not None:
            from kfloop.app.checks import strip_ansi

            for line in done:
                text = strip_ansi(line).strip()
                if "Executing task" in text or "finished with status" in text:
                    self.echo.write("  " + text.split(" - INFO - ", 1)[-1] + "\n")
        return len(s)

    def flush(self) -> None:
        self.inner.flush()
        if self.echo is not None:
            self.echo.flush()


def failure_line(message: str, lines) -> str:
    """One line for a failed local pipeline run: the failed task and the exception that stopped it
    (:func:`kfloop.app.local.failure_cause`: kfp.local's own error names only the task, with colour codes)."""
    from kfloop.app.local import failure_cause

    task, name, cause = failure_cause(message, lines)
    where = f" in {task}" if task else ""
    head = f"the monitoring pipeline failed{where}"
    said = (f"{name}: {cause}" if cause else name) if name else cause
    return " ".join(f"{head}: {said or head}".split())


def _on_cluster(args: argparse.Namespace) -> int:
    """Compiles the monitoring pipeline and creates one run of it (:func:`kfloop.app.submit.submit`, the one
    run-creation path)."""
    import json
    import tempfile

    from kfloop.app import compile as kc
    from kfloop.app import submit as ks

    trigger = args.trigger or "cluster"
    arguments = {
        k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in _arguments(args, trigger).items()
    }
    try:
        with tempfile.TemporaryDirectory(prefix="kfloop-monitor-") as tmp:
            package = kc.compile_all(tmp, names=["monitoring"])["monitoring"]
            made = ks.submit(
                package,
                host=args.host,
                arguments=arguments,
                namespace=args.namespace,
                experiment=args.experiment,
            )
    except (ks.SubmitError, kc.CompileError) as e:
        raise SystemExit(f"kfloop monitor: {e}") from None
    print(f"run {made.run_id}: {made.url}")
    return 0
