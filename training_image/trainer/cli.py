"""The trainer's command line (``python -m training_image.trainer`` and ``kfloop train``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from training_image.trainer.hparams import HParams, TrainError

PROG = "python -m training_image.trainer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the trainer's options (spec, data, schema, model dir, one flag per :class:`HParams` field).

    A hyperparameter flag given on the command line overrides the spec's ``hyperparameters``.
    """
    p.add_argument("--spec", required=True, help="dataset spec (path, gs:// URI or YAML text)")
    p.add_argument("--train-data", required=True, help="training Dataset CSV (path or gs://)")
    p.add_argument("--eval-data", required=True, help="eval Dataset CSV (path or gs://)")
    p.add_argument("--model-dir", required=True, help="where the model directory goes (path or gs://)")
    p.add_argument("--schema", default=None, help="TFDV schema of the training data, stored with the model")
    p.add_argument(
        "--checkpoint-dir", default=None, help="BackupAndRestore directory (resume after preemption)"
    )
    p.add_argument("--metrics-out", default=None, help="also write the final metrics as JSON here")
    defaults = HParams()
    for f in dataclasses.fields(HParams):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.name == "mixed_precision":
            p.add_argument(flag, action="store_true", default=None, help="use mixed_float16 on GPUs")
        elif f.name == "hidden_units":
            p.add_argument(
                flag, default=None, help=f"comma-separated (default {','.join(map(str, default))})"
            )
        elif f.name == "loss":
            p.add_argument(
                flag, default=None, help="training loss (default: the task's; regression: mse|huber)"
            )
        elif f.name == "huber_delta":
            p.add_argument(
                flag, type=float, default=None, help="Huber delta, standardised units (default 1.0)"
            )
        else:
            p.add_argument(flag, type=type(default), default=None, help=f"(default {default})")
    p.add_argument("-v", "--verbose", type=int, default=2, help="Keras fit verbosity (0, 1, 2)")


def run_from_args(args: argparse.Namespace) -> dict:
    """Trains as the parsed options say; returns the summary printed as JSON.

    Raises:
        TrainError: bad spec, hyperparameters or data (the message names the field or column).
    """
    from kfloop import fs
    from training_image.trainer.fit import _load_spec, train

    spec = _load_spec(args.spec)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(HParams)}
    given = {k: v for k, v in given.items() if v is not None}
    hp = None
    if spec.trainer == "keras":
        hp = HParams.from_dict({**dict(spec.hyperparameters), **given})
    elif given:
        raise TrainError(
            f"hyperparameter flag(s) {', '.join(sorted(given))} apply to the keras trainer only; "
            f"trainer {spec.trainer!r} reads the spec's hyperparameters"
        )
    result = train(
        args.train_data,
        args.eval_data,
        args.model_dir,
        hp,
        args.checkpoint_dir,
        spec=spec,
        schema_uri=args.schema,
        verbose=args.verbose,
    )
    summary = {
        "model_dir": result.model_dir,
        "device": result.device,
        "strategy": result.strategy,
        **result.metrics,
    }
    if args.metrics_out:
        fs.write_text(args.metrics_out, json.dumps(summary, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The trainer's argument parser."""
    p = argparse.ArgumentParser(prog=PROG, description="Train a kfloop model on Dataset CSVs.")
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: bad input gives one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        summary = run_from_args(args)
    except TrainError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0
