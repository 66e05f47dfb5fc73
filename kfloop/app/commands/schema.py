"""``kfloop schema infer``: bootstrap or refresh the TFDV schema from data, showing a diff first."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="the TFDV schema (reviewed code in kfloop/tfdv/schema.py)")
    ssub = p.add_subparsers(dest="schema_cmd", required=True, metavar="{infer}")
    i = ssub.add_parser(
        "infer",
        help="infer a schema from a CSV and print its diff against the committed one",
        description="Infers a TFDV schema from a Dataset CSV (or a raw taxi CSV: the label is derived as "
        "ingest does), applies kfloop's adjustments (kfloop/tfdv/schema.py) and prints a unified diff "
        "against the schema file. Nothing is written unless --write is given.",
    )
    i.add_argument("--data", required=True, help="Dataset CSV or raw taxi CSV (local path or gs://)")
    i.add_argument("--schema", help="schema file to compare with / write (default: the committed one)")
    i.add_argument("--write", action="store_true", help="write the inferred schema to the schema file")
    i.set_defaults(func=_infer)


def infer_text(data: str) -> str:
    """The adjusted, inferred schema of ``data`` as committed text.

    Raises:
        SystemExit: unreadable data (one line naming the problem).
    """
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-* libraries on import
    from kfloop import features as F
    from kfloop.clean import IngestError, clean
    from kfloop.tfdv import ops
    from kfloop.tfdv import schema as kschema

    try:
        frame = ops.read_frame(data)
        if F.LABEL.name not in frame.columns and F.TIPS in frame.columns:
            frame = clean(frame.fillna(""))
        unknown = [c for c in frame.columns if c not in F.DATASET_COLUMNS]
        if unknown:
            raise ops.ValidationError(
                f"{data!r} has column(s) that are not taxi features: {', '.join(unknown)}"
            )
        stats = ops.compute_statistics(frame)
    except (ops.ValidationError, ops.StatisticsCountError, IngestError) as e:
        raise SystemExit(f"kfloop schema infer: {e}") from None
    return kschema.to_text(ops.infer_schema(stats))


def _infer(args: argparse.Namespace) -> int:
    import difflib

    from kfloop import fs
    from kfloop.app.cli import check_input_file
    from kfloop.tfdv import schema as kschema

    path = kschema.schema_path(args.schema)
    check_input_file(args.data, "kfloop schema infer: --data", must_exist=False)
    if path.is_dir():
        raise SystemExit(f"kfloop schema infer: schema {path}: is a directory, expected a file")
    if not args.write:  # comparing with nothing is not a review: refuse, or create it with --write
        if not path.exists():
            raise SystemExit(
                f"kfloop schema infer: schema {path}: does not exist (pass --write to create it from the data)"
            )
        if not path.read_text().strip():
            raise SystemExit(f"kfloop schema infer: schema {path}: is empty (pass --write to fill it)")
    new = infer_text(args.data)
    old = path.read_text() if path.is_file() else ""
    if old == new:
        print(f"schema unchanged: {path} matches the schema inferred from {args.data}")
        return 0
    diff = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{path} (committed)" if old else f"{path} (missing)",
        tofile=f"inferred from {args.data}",
    )
    print("".join(diff), end="")
    if args.write:
        fs.write_text(str(path), new)
        print(f"wrote {path}; review the diff above and commit it")
    else:
        print(f"\n{path} NOT changed; re-run with --write to update it, then review and commit")
    return 0
