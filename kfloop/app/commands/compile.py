"""``kfloop compile``: the pipelines as KFP IR YAML for a cluster."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile the training and monitoring pipelines to KFP IR YAML")
    p.add_argument("--output-dir", default="build/pipelines", help="where to write <name>.yaml")
    p.add_argument("--registry", help="image registry (default kfloop.config.IMAGE_REGISTRY)")
    p.add_argument("--tag", help="image tag (default kfloop.config.IMAGE_TAG)")
    p.add_argument("--pipeline-root", help="default pipeline root of the runs, gs://bucket/prefix")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="ROLE=REPO@sha256:DIGEST",
        help="pin one image (pipeline, training, serving) by digest instead of --tag (repeatable)",
    )
    p.add_argument(
        "--pipeline",
        action="append",
        dest="pipelines",
        metavar="NAME",
        help="compile only this pipeline (repeatable; default: all)",
    )
    p.add_argument(
        "--print-images",
        action="store_true",
        help="print 'pipeline=IMAGE', 'training=IMAGE' and 'serving=IMAGE' for these options and exit",
    )
    p.set_defaults(func=_compile)


def _compile(args: argparse.Namespace) -> int:
    from kfloop.app import compile as kc
    from kfloop.app.checks import check_not_in_store

    check_not_in_store(args.output_dir, "kfloop compile: --output-dir")
    try:
        digests = dict(item.partition("=")[::2] for item in args.image)
        if args.print_images:
            for role, image in kc.images(args.registry, args.tag, digests).as_dict().items():
                print(f"{role}={image}")
            return 0
        written = kc.compile_all(
            args.output_dir,
            registry=args.registry,
            tag=args.tag,
            pipeline_root=args.pipeline_root or None,
            names=args.pipelines,
            digests=digests,
        )
    except kc.CompileError as e:
        raise SystemExit(f"kfloop compile: {e}") from None
    for name, path in written.items():
        print(f"{name}: {path}", file=sys.stdout)
    return 0
