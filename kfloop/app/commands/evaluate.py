"""``kfloop evaluate``: TFMA champion-vs-challenger comparison and the blessing verdict, for any task of
the spec (binary, regression, multiclass: each with its own value floor, paired check and slice check).

The challenger is a model directory (``--model``) or a version of a model store (``--store``, ``--version``,
``--name``: e.g. one put there by ``kfloop models publish``, which must pass this before it may become
canary or champion). The spec (label, slices) is ``--spec`` or the one stored with the challenger.

Exit codes: 0 blessed, 3 not blessed (:data:`EXIT_NOT_BLESSED`), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys

#: Exit code when the evaluation ran but the model is not blessed.
EXIT_NOT_BLESSED = 3
#: Exit code for bad input (as argparse uses for bad arguments).
EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    from kfloop.config import EvaluationConfig

    d = EvaluationConfig()
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model with TFMA (optionally against a baseline) and print the blessing verdict",
        description="Exit 0: blessed; 3: not blessed; 2: bad input.",
    )
    p.add_argument("--model", default="", help="challenger model directory (local or gs://)")
    p.add_argument("--store", default=os.environ.get("KFLOOP_STORE_URI"), help="model store of --version")
    p.add_argument("--version", default="", help="challenger: this store version (instead of --model)")
    p.add_argument("--name", default="", help="model name in the store (default: the spec's name)")
    p.add_argument("--spec", default="", help="dataset spec (default: the one stored with the challenger)")
    p.add_argument("--data", required=True, help="eval Dataset CSV with the spec's label column")
    p.add_argument("--baseline", default="", help="champion SavedModel directory (default: none)")
    p.add_argument("--blessing", help="also write the blessing JSON here")
    p.add_argument("--report", help="also write the HTML report here")
    p.add_argument("--auc-floor", type=float, default=d.auc_floor, help=f"default {d.auc_floor}")
    p.add_argument(
        "--max-auc-regression",
        type=float,
        default=d.max_auc_regression,
        help=f"default {d.max_auc_regression}",
    )
    p.add_argument(
        "--max-slice-auc-regression",
        type=float,
        default=d.max_slice_auc_regression,
        help=f"default {d.max_slice_auc_regression}",
    )
    p.add_argument(
        "--min-slice-examples", type=int, default=d.min_slice_examples, help=f"default {d.min_slice_examples}"
    )
    for flag, name, what in (
        ("--min-r2", "min_r2", "regression: minimum overall R²"),
        (
            "--max-log-loss-ratio",
            "max_log_loss_ratio",
            "multiclass: log loss at most this x the class prior's",
        ),
        (
            "--max-slice-rmse-increase",
            "max_slice_rmse_increase",
            "regression: relative RMSE increase per slice",
        ),
        ("--max-slice-accuracy-drop", "max_slice_accuracy_drop", "multiclass: accuracy drop per slice"),
    ):
        p.add_argument(
            flag, type=float, default=getattr(d, name), help=f"{what} (default {getattr(d, name)})"
        )
    p.add_argument("--json", action="store_true", help="print the blessing JSON instead of the table")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from components.evaluate.evaluate import EvaluationError, comparison_table, evaluate
    from kfloop import fs
    from kfloop.config import EvaluationConfig

    if bool(args.model) == bool(args.version):
        print(
            "kfloop evaluate: pass the challenger as --model DIR or as --version V (with --store)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if args.version:
        try:
            args.model = _store_version_uri(args)
        except ValueError as e:
            print(f"kfloop evaluate: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    for flag, uri in (("--model", args.model), ("--baseline", args.baseline)):
        if uri and not fs.is_gcs(uri) and not os.path.isdir(uri):
            what = "is a file, expected a SavedModel directory" if os.path.exists(uri) else "does not exist"
            print(f"kfloop evaluate: {flag} {uri}: {what}", file=sys.stderr)
            return EXIT_BAD_INPUT
    from kfloop.app.checks import check_input_file

    check_input_file(args.data, "kfloop evaluate: --data")  # before the models are read
    try:
        config = dataclasses.replace(
            EvaluationConfig(),
            auc_floor=args.auc_floor,
            max_auc_regression=args.max_auc_regression,
            max_slice_auc_regression=args.max_slice_auc_regression,
            min_slice_examples=args.min_slice_examples,
            min_r2=args.min_r2,
            max_log_loss_ratio=args.max_log_loss_ratio,
            max_slice_rmse_increase=args.max_slice_rmse_increase,
            max_slice_accuracy_drop=args.max_slice_accuracy_drop,
        )
    except ValueError as e:  # EvaluationConfig names the field and its bounds
        print(f"kfloop evaluate: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = evaluate(
            args.data,
            args.model,
            args.baseline,
            config=config,
            spec=args.spec or None,
            blessing_path=args.blessing,
            report_path=args.report,
        )
    except EvaluationError as e:
        print(f"kfloop evaluate: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result.blessing, indent=2) if args.json else comparison_table(result))
    return 0 if result.blessed else EXIT_NOT_BLESSED


def _store_version_uri(args: argparse.Namespace) -> str:
    """The model URI of ``--version`` in ``--store`` (name: ``--name``, else the spec's name).

    Raises:
        ValueError: no store, no name, or the version is not committed there (one line naming it).
    """
    from kfloop import spec as kspec
    from kfloop import store

    if not args.store:
        raise ValueError("--version needs --store URI (or KFLOOP_STORE_URI)")
    name = args.name
    if not name:
        if not args.spec:
            raise ValueError("--version needs --name NAME or --spec SPEC (whose name is the model's)")
        try:
            name = kspec.load(args.spec).name
        except (kspec.SpecError, FileNotFoundError) as e:
            raise ValueError(f"--spec: {e}") from None
    try:
        ms = store.ModelStore(args.store)
        if args.version not in ms.versions(name):
            raise ValueError(f"--version {args.version}: no committed version of {name!r} in {args.store}")
        return ms.model_uri(name, args.version)
    except store.StoreError as e:
        raise ValueError(str(e)) from None
