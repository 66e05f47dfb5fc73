"""``kfloop run``: the whole local loop on the taxi data (what ``make run`` runs)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the whole local loop: train → serve → replay → monitor → drift → retrain → canary → report",
    )
    p.add_argument(
        "--workdir", help="fresh directory for store, runs, logs, report (default runs/loop-<UTC time>)"
    )
    p.add_argument("--source", help="raw taxi CSV (default: the fetched data/chicago_taxi.csv)")
    p.add_argument("--model-name", help="model name (default taxi-tips)")
    p.set_defaults(func=_run)


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

    from kfloop import config
    from kfloop.app import loop
    from kfloop.app.cli import check_input_file, check_output_dir

    check_input_file(args.source, "kfloop run: --source")
    check_output_dir(args.workdir, "kfloop run: --workdir")
    if args.model_name:
        from kfloop import store

        try:
            store.check_model_name(args.model_name)
        except store.StoreError as e:
            raise SystemExit(f"kfloop run: {e}") from None

    workdir = args.workdir or f"runs/loop-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    try:
        record = loop.run_loop(
            workdir,
            source=args.source,
            model_name=args.model_name or config.MODEL_NAME,
            progress=lambda line: print(line, flush=True),
        )
    except loop.LoopError as e:
        raise SystemExit(f"kfloop run: {e}") from None
    print(f"\nloop finished in {record['seconds']:.0f} s: {record['outcome']}", file=sys.stderr)
    print(f"champion: {record['champion']}")
    print(f"report: {record['report']}")
    return 0
