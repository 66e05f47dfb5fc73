"""``kfloop run --spec SPEC --data CSV``: the whole local loop on any dataset (``make run``: the taxi example)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kfloop import config

    rc = config.ReplayConfig()
    p = sub.add_parser(
        "run",
        help="run the whole local loop: train → serve → replay → monitor → drift → retrain → canary → report",
        description="Runs the whole loop on one machine on the data a dataset spec describes. With a time "
        "column the replay windows come from the data's time range (a control window from the history the "
        "champion trains on, then equal windows); without one the rows are replayed in file order.",
    )
    p.add_argument("--spec", required=True, help="the dataset spec (YAML file, e.g. examples/taxi/spec.yaml)")
    p.add_argument("--data", required=True, help="the raw CSV the spec describes")
    p.add_argument(
        "--schema",
        help="the reviewed TFDV schema (e.g. the schema.pbtxt kfloop init wrote) that validates the first "
        "training data and travels with the model; default: the schema the spec alone implies",
    )
    p.add_argument(
        "--workdir", help="fresh directory for store, runs, logs, report (default runs/loop-<UTC time>)"
    )
    p.add_argument(
        "--cutoff",
        help="end of the champion's history (ISO date/time; a row position without a time column); "
        f"default: {rc.history_fraction:g} of the data's time range (or rows)",
    )
    p.add_argument(
        "--windows",
        help="explicit replay windows as boundaries B0,B1,...,Bn (ISO dates/times, or row positions); "
        "default: --window-count equal windows after the cutoff",
    )
    p.add_argument(
        "--window-count",
        type=int,
        default=rc.windows,
        help=f"equal windows after the history (default {rc.windows})",
    )
    p.add_argument(
        "--history-fraction",
        type=float,
        default=rc.history_fraction,
        help=f"share of the data the champion trains on without --cutoff (default {rc.history_fraction:g})",
    )
    p.add_argument(
        "--control-rows",
        type=int,
        default=rc.control_rows,
        help=f"rows of the control window, a sample of the history (default {rc.control_rows})",
    )
    p.add_argument(
        "--batch-size", type=int, default=rc.batch_size, help=f"rows per request (default {rc.batch_size})"
    )
    p.add_argument(
        "--epochs", type=int, default=rc.epochs, help=f"epochs of every training run (default {rc.epochs})"
    )
    p.add_argument(
        "--promotion-policy",
        choices=("auto", "approval"),
        default="auto",
        help="auto: the canary step promotes on the evidence; approval: it records a pending approval and "
        "notifies (kfloop approve|reject, then kfloop monitor applies it)",
    )
    p.add_argument(
        "--notify-config",
        default="",
        help="notification channels (YAML of apprise URLs: Slack, e-mail, webhooks); every event also goes "
        "to <workdir>/notifications.jsonl",
    )
    p.set_defaults(func=_run)


def _config(args: argparse.Namespace):
    """The :class:`kfloop.app.plan.LoopConfig` of the flags.

    Raises:
        SystemExit: a flag is out of range or ``--windows`` does not parse (one line naming the flag).
    """
    from kfloop.app import plan

    try:
        windows = plan.parse_windows(args.windows) if args.windows else None
        if args.epochs < 1:
            raise plan.PlanError(f"--epochs must be >= 1, got {args.epochs}")
        return plan.LoopConfig(
            history_cutoff=args.cutoff or None,
            windows=windows,
            window_count=args.window_count,
            history_fraction=args.history_fraction,
            control_rows=args.control_rows,
            batch_size=args.batch_size,
            hparams=(("epochs", args.epochs),),
            promotion_policy=args.promotion_policy,
            notify_config=args.notify_config,
        )
    except plan.PlanError as e:
        raise SystemExit(f"kfloop run: {e}") from None


def _run(args: argparse.Namespace) -> int:
    import datetime as dt
    import logging
    import os
    import sys
    import warnings

    # Progress lines, not library chatter: TF / Beam / TFMA warnings off here and in every pipeline task.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.simplefilter("ignore")
    for name in ("absl", "tensorflow", "apache_beam", "kfp"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from kfloop import spec as kspec
    from kfloop.app import loop
    from kfloop.app.checks import check_input_file, check_output_dir, spec_misfit

    check_input_file(args.spec, "kfloop run: --spec")
    check_input_file(args.data, "kfloop run: --data")
    if args.schema:
        check_input_file(args.schema, "kfloop run: --schema")
    check_output_dir(args.workdir, "kfloop run: --workdir")
    try:
        spec = kspec.load(args.spec)
    except kspec.SpecError as e:
        raise SystemExit(f"kfloop run: {e}") from None
    spec_misfit(_sample_problems(args.data, spec), "kfloop run: --spec")  # before anything runs
    cfg = _config(args)
    workdir = args.workdir or f"runs/loop-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    try:
        record = loop.run_loop(
            workdir,
            spec=spec,
            source=args.data,
            schema=args.schema or "",
            cfg=cfg,
            progress=lambda line: print(line, flush=True),
        )
    except loop.LoopError as e:
        raise SystemExit(f"kfloop run: {e}") from None
    print(f"\nloop finished in {record['seconds']:.0f} s: {record['outcome']}", file=sys.stderr)
    print(f"champion: {record['champion']}")
    n = record["notifications"]
    print(f"notifications: {n['events']} events ({n['by_type']}) -> {', '.join(n['channels'])}")
    print(f"report: {record['report']}")
    return 0


#: Rows of the data checked against the spec before the loop starts.
CHECK_ROWS = 10_000


def _sample_problems(uri: str, spec) -> list[str]:
    """What in the first :data:`CHECK_ROWS` rows of ``uri`` does not fit ``spec`` (:meth:`check_data`)."""
    import pandas as pd

    try:
        frame = pd.read_csv(uri, dtype=str, keep_default_na=False, nrows=CHECK_ROWS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        return [f"the data is not a readable CSV ({' '.join(str(e).split())[:200]})"]
    return spec.check_data(frame.apply(lambda c: c.str.strip()))
