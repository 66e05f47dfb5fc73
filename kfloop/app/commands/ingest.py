"""``kfloop ingest``: a CSV → Dataset CSVs per a dataset spec (the same function as the pipeline's ingest task).

It writes the time split the training pipeline uses (``train.csv``, ``eval.csv``, ``live.csv``); with
``--no-split`` the whole file, cleaned and labelled, as one Dataset (``dataset.csv``), e.g. a new month to
validate or to score. A file already in Dataset form is read as it is (:func:`kfloop.clean.is_raw`).

Exit codes: 0 = written; 3 = blocked data (a value that cannot be cleaned: the message names the column
and CSV line; the same data exits 3 from ``kfloop validate`` and ``kfloop predict``); 1 = bad input
(missing / unreadable file, a cutoff outside the data, an output that exists without ``--overwrite``, is
the source or lies inside a model store); 2 = bad command line, or a spec that is not valid or does not fit
the data (one line naming the key).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kfloop import config

    p = sub.add_parser(
        "ingest",
        help="clean a CSV per its dataset spec and split it by time into Dataset CSVs",
        description="Reads a CSV as it comes (raw form), cleans it as the dataset spec says (missing "
        "tokens, time format, label derivation or positive class, booleans; excluded columns dropped) and "
        "writes Dataset CSVs: the train / eval / live time split of the training pipeline, or with "
        "--no-split one cleaned Dataset.",
        epilog="exit codes: 0 written; 3 blocked data (names the column and CSV line); 1 bad input; "
        "2 bad usage or a bad spec",
    )
    p.add_argument("--spec", required=True, help="dataset spec (YAML file or gs:// URI)")
    p.add_argument("--source", required=True, help="CSV, raw or Dataset form (local path or gs://)")
    p.add_argument("--output-dir", default="build/ingest", help="where to write (default build/ingest)")
    p.add_argument(
        "--cutoff",
        default="",
        help="start of the live window: ISO date (UTC) or epoch seconds; a row position or fraction "
        "without a time column (default: the middle row by time)",
    )
    p.add_argument("--window-start", default="", help="start of the training window (default: first row)")
    p.add_argument("--live-end", default="", help="end of the live window, exclusive (default: after last)")
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=config.DEFAULT_EVAL_FRACTION,
        help=f"share of the training window held out for eval (default {config.DEFAULT_EVAL_FRACTION})",
    )
    p.add_argument(
        "--no-split", action="store_true", help="write the whole extract as one Dataset (dataset.csv)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist")
    p.set_defaults(func=_ingest)


#: Exit code when the data cannot be cleaned (as ``kfloop validate`` blocks it).
EXIT_BLOCKING = 3


def _ingest(args: argparse.Namespace) -> int:
    import json

    from kfloop import clean as I
    from kfloop import datasets, fs
    from kfloop.app.checks import (
        Blocked,
        check_input_file,
        check_output_dir,
        check_output_file,
        load_spec,
        spec_misfit,
    )
    from kfloop.ingest import ingest

    spec = load_spec(args.spec, "kfloop ingest: --spec")
    check_input_file(args.source, "kfloop ingest: --source", must_exist=False)
    check_output_dir(args.output_dir, "kfloop ingest: --output-dir")
    out = args.output_dir
    names = ("dataset",) if args.no_split else ("train", "eval", "live")
    for name in names:
        check_output_file(
            fs.join(out, f"{name}.csv"),
            "kfloop ingest: --output-dir",
            overwrite=args.overwrite,
            inputs={"--source": args.source},
        )
    try:
        raw = I.read_raw(args.source)
    except I.IngestError as e:
        raise SystemExit(f"kfloop ingest: {e}") from None
    raw_form = I.is_raw(raw, spec)
    if raw_form:
        spec_misfit(I.spec_problems(raw, spec), "kfloop ingest: --spec")
    try:  # a value that cannot be cleaned blocks the data, as in `kfloop validate` (exit 3)
        frame = I.clean(raw, spec, form="raw" if raw_form else "dataset")
    except I.IngestError as e:
        raise Blocked(f"kfloop ingest: {e}") from None
    try:
        if args.no_split:
            uri = fs.join(out, "dataset.csv")
            datasets.write_dataset(frame, uri)
            print(json.dumps({"rows_read": len(frame), "dataset": uri}))
            return 0
        paths = {k: fs.join(out, f"{k}.csv") for k in ("train", "eval", "live")}
        result = ingest(
            args.source,
            spec,
            args.cutoff,
            paths["train"],
            paths["eval"],
            paths["live"],
            window_start=args.window_start,
            live_end=args.live_end,
            eval_fraction=args.eval_fraction,
        )
    except I.IngestError as e:
        raise SystemExit(f"kfloop ingest: {e}") from None
    print(
        json.dumps(
            {
                **result.metrics(),
                "train_window": result.train_window,
                "live_window": result.live_window,
                **paths,
            }
        )
    )
    return 0
