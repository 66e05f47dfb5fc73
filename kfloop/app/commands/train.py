"""``kfloop train``: train the spec's model on Dataset CSVs (the same code as the pipeline's train task)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train the spec's model on train/eval Dataset CSVs and export a model directory"
    )
    from training_image.trainer import add_arguments  # stdlib-only at module level

    add_arguments(p)
    p.set_defaults(func=_train, verbose=0)


def _train(args: argparse.Namespace) -> int:
    import json

    from kfloop.app.checks import check_not_in_store
    from training_image.trainer import TrainError, run_from_args

    check_not_in_store(args.model_dir, "kfloop train: --model-dir")  # a store takes models via push
    check_not_in_store(args.metrics_out, "kfloop train: --metrics-out")
    try:
        summary = run_from_args(args)
    except TrainError as e:
        raise SystemExit(f"kfloop train: {e}") from None
    print(json.dumps(summary))
    return 0
