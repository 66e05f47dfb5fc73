"""``kfloop schema infer``: bootstrap or refresh a dataset's TFDV schema from its spec and data, diff first."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="the TFDV schema kept next to a dataset spec (kfloop/tfdv/schema.py)")
    ssub = p.add_subparsers(dest="schema_cmd", required=True, metavar="{infer}")
    i = ssub.add_parser(
        "infer",
        help="infer a schema from a spec and a CSV and print its diff against the schema file",
        description="Cleans the CSV per the dataset spec (raw data is typed and labelled as ingest does; a "
        "Dataset CSV is read as it is), infers a TFDV schema from its statistics, applies the spec (types, "
        "ranges, domains, presence, drift comparators: kfloop/tfdv/schema.py) and prints a unified diff "
        "against the schema file. Nothing is written unless --write is given. Exit 2: the spec is not "
        "valid or does not fit the data (one line naming the key).",
    )
    i.add_argument("--spec", required=True, help="dataset spec (YAML file or gs:// URI)")
    i.add_argument("--data", required=True, help="training data, raw or Dataset CSV (local path or gs://)")
    i.add_argument(
        "--schema", help="schema file to compare with / write (default: schema.pbtxt next to the spec)"
    )
    i.add_argument("--write", action="store_true", help="write the inferred schema to the schema file")
    i.set_defaults(func=_infer)


def infer_text(data: str, spec, what: str = "kfloop schema infer") -> str:
    """The inferred schema of ``data`` with the spec applied, as committed text.

    Args:
        data: CSV path or URI, raw or Dataset form.
        spec: The :class:`kfloop.spec.DatasetSpec`.
        what: The command, for error lines.

    Raises:
        SystemExit: unreadable data or data that cannot be cleaned (one line naming the problem); a spec
            that does not fit the data (exit 2).
    """
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-* libraries on import
    from kfloop.app.checks import spec_misfit
    from kfloop.clean import IngestError, clean, is_raw, spec_problems
    from kfloop.tfdv import ops
    from kfloop.tfdv import schema as kschema

    try:
        frame = ops.read_frame(data)
        raw = is_raw(frame, spec)
        if raw:
            spec_misfit(spec_problems(frame, spec), f"{what}: --spec")
        frame = clean(frame, spec, form="raw" if raw else "dataset")
        stats = ops.compute_statistics(frame, spec=spec)
    except (ops.ValidationError, ops.StatisticsCountError, IngestError) as e:
        raise SystemExit(f"{what}: {e}") from None
    return kschema.to_text(kschema.infer_schema(stats, spec), spec)


def schema_file(schema: str | None, spec_source: str, what: str):
    """The schema file: ``--schema``, else ``schema.pbtxt`` next to a local spec file.

    Raises:
        SystemExit: neither (a spec given by URI or as text needs ``--schema``).
    """
    import os
    from pathlib import Path

    from kfloop.tfdv import schema as kschema

    if schema:
        return Path(schema)
    if not os.path.isfile(spec_source):
        raise SystemExit(f"{what}: --schema is required when --spec is not a local file")
    return kschema.default_path(spec_source)


def _infer(args: argparse.Namespace) -> int:
    import difflib

    from kfloop import fs
    from kfloop.app.checks import check_input_file, load_spec

    spec = load_spec(args.spec, "kfloop schema infer: --spec")
    path = schema_file(args.schema, args.spec, "kfloop schema infer")
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
    new = infer_text(args.data, spec)
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
