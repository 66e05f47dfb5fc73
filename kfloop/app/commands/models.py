"""``kfloop models list|history|check|publish|push``: the model store's versions and alias history, and
bringing a model trained elsewhere in.

- ``check DIR --spec SPEC``: does a SavedModel follow the model contract for a spec (one line per problem,
  exit 1 if any)?
- ``publish DIR --spec SPEC [--schema FILE] [--store URI] [--model NAME]``: a checked model becomes a new
  store version (with ``spec.yaml``, the schema and ``source: published`` metadata) and no alias.
- ``push VERSION --blessing FILE``: a published version becomes canary (or the first champion) only with
  a blessing of that version (``kfloop evaluate --store URI --version VERSION``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from kfloop.app.checks import open_store, store_arg
from kfloop.app.loop_summary import HEADLINE

__all__ = ["open_store", "register", "store_arg"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="model store versions and alias history; check, publish and push your own model"
    )
    msub = p.add_subparsers(
        dest="models_cmd", required=True, metavar="{list,history,show,compare,check,publish,push}"
    )
    ls = msub.add_parser("list", help="committed versions with their aliases and metrics")
    store_arg(ls)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument(
        "--no-verify",
        action="store_true",
        help="skip reading every model file against its sha256 (still checks every JSON file of the model)",
    )
    ls.set_defaults(func=_list)
    hi = msub.add_parser("history", help="every publish, rejection and alias attempt (with outcome)")
    store_arg(hi)
    hi.add_argument("--json", action="store_true", help="print JSON lines")
    hi.set_defaults(func=_history)

    ck = msub.add_parser("check", help="check a SavedModel against the model contract for a spec")
    ck.add_argument("model_dir", metavar="DIR", help="the SavedModel directory")
    ck.add_argument("--spec", required=True, help="dataset spec (path, gs:// URI or YAML text)")
    ck.set_defaults(func=_check)

    pu = msub.add_parser("publish", help="put a model trained elsewhere into the store (a version, no alias)")
    pu.add_argument("model_dir", metavar="DIR", help="the SavedModel directory")
    pu.add_argument("--spec", required=True, help="dataset spec the model serves (stored with it)")
    pu.add_argument("--schema", default=None, help="TFDV schema of its training data (stored with it)")
    pu.add_argument(
        "--store",
        default=os.environ.get("KFLOOP_STORE_URI"),
        help="model store root (local dir or gs://bucket/prefix; default $KFLOOP_STORE_URI)",
    )
    pu.add_argument(
        "--model", dest="name", default=None, help="model name in the store (default: the spec's)"
    )
    pu.add_argument(
        "--train",
        metavar="CSV",
        help="the training split it learned from (Dataset form): its monitoring reference (TFDV statistics, "
        "clip bounds) is built and published with the version, so the monitor can judge drift against it",
    )
    pu.add_argument(
        "--eval", metavar="CSV", help="the eval split (Dataset form), for the reference (optional)"
    )
    pu.add_argument("--json", action="store_true", help="print the result as JSON")
    pu.set_defaults(func=_publish)

    ps = msub.add_parser("push", help="make a published version canary/champion with its blessing")
    ps.add_argument("version", metavar="VERSION")
    ps.add_argument("--blessing", required=True, help="blessing JSON of that version (kfloop evaluate)")
    store_arg(ps)
    ps.set_defaults(func=_push)
    from kfloop.app.commands.lineage_cmds import register_models

    register_models(msub, store_arg)


def _list(args: argparse.Namespace) -> int:
    from kfloop import store

    ms = open_store(args, "models list")
    try:
        versions = ms.versions(args.name)
        aliases = ms.aliases(args.name)
        rows = []
        for v in versions:
            meta = ms.metadata(args.name, v)
            metric = HEADLINE.get(meta.get("task") or "binary", HEADLINE["binary"])[0]
            rows.append(
                {
                    "version": v,
                    "aliases": sorted(a for a, av in aliases.items() if av == v),
                    "published_at": meta.get("published_at"),
                    "task": meta.get("task") or "binary",
                    "auc": (meta.get("metrics") or {}).get("auc"),
                    # the task's headline metric (binary: AUC; regression: RMSE; multiclass: accuracy)
                    "metric": metric,
                    "value": (meta.get("metrics") or {}).get(metric),
                    "run_id": meta.get("run_id"),
                }
            )
        problems = ms.check(args.name, deep=not args.no_verify)
    except store.StoreError as e:
        raise SystemExit(f"kfloop models list: {e}") from None
    if problems:  # one line per damaged file; a damaged store is never listed as if it were fine
        for p in problems:
            print(f"kfloop models list: {p}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no committed versions of {args.name!r} in {ms.root}")
        return 0
    metrics = {r["metric"] for r in rows}
    title = metrics.pop().upper() if len(metrics) == 1 else "METRIC"
    title = {"ACCURACY": "ACC"}.get(title, title)
    print(f"{'VERSION':<8} {'ALIASES':<18} {'PUBLISHED':<28} {title:<7} RUN")
    for r in rows:
        value = "-"
        if isinstance(r["value"], int | float):
            value = f"{r['value']:.4g}" if r["metric"] == "rmse" else f"{r['value']:.4f}"
        print(
            f"{r['version']:<8} {','.join(r['aliases']) or '-':<18} {r['published_at'] or '-':<28} {value:<7} "
            f"{r['run_id'] or '-'}"
        )
    return 0


def _history(args: argparse.Namespace) -> int:
    from kfloop import store

    ms = open_store(args, "models history")
    try:
        records = ms.history(args.name)
    except store.StoreError as e:
        raise SystemExit(f"kfloop models history: {e}") from None
    for r in records:
        if args.json:
            print(json.dumps(r, sort_keys=True))
        elif r.get("event") == "alias":
            print(
                f"{r['time']}  {r.get('action', 'set'):<9} {r['alias']:<9} {r.get('from') or '-'} -> "
                f"{r.get('to') or '-'}  {r.get('outcome')}  by {r.get('actor')}  {r.get('reason') or ''}"
            )
        elif r.get("event") == "publish":
            print(f"{r['time']}  publish   {r.get('version')}  by {r.get('actor')}")
        else:
            reasons = "; ".join(r.get("reasons") or [])
            print(f"{r['time']}  {r.get('event'):<9} by {r.get('actor')}  {reasons}")
    if not records and not args.json:
        print(f"no history for {args.name!r} in {ms.root}")
    return 0


def _load_spec(source: str, cmd: str):
    """The spec of ``--spec``; a one-line exit 2 when it is missing or invalid."""
    from kfloop import spec as kspec

    try:
        return kspec.load(source)
    except (kspec.SpecError, FileNotFoundError) as e:
        print(f"kfloop models {cmd}: --spec: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _check(args: argparse.Namespace) -> int:
    from kfloop import contract

    spec = _load_spec(args.spec, "check")
    problems = contract.check_model(args.model_dir, spec)
    for p in problems:
        print(f"kfloop models check: {p}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"{args.model_dir}: follows the model contract for spec {spec.name!r} ({len(spec.model_features)} inputs)"
    )
    return 0


def _publish(args: argparse.Namespace) -> int:
    import datetime
    import shutil
    import tempfile
    from pathlib import Path

    from kfloop import contract, fs, store

    spec = _load_spec(args.spec, "publish")
    args.name = args.name or spec.name
    open_store(args, "models publish")
    if args.schema and not fs.exists(args.schema):
        print(f"kfloop models publish: --schema {args.schema}: does not exist", file=sys.stderr)
        return 2
    for flag, uri in (("--train", args.train), ("--eval", args.eval)):
        if uri and not fs.exists(uri):
            print(f"kfloop models publish: {flag} {uri}: does not exist", file=sys.stderr)
            return 2
    if args.eval and not args.train:
        print(
            "kfloop models publish: --eval needs --train (the reference is the training data's)",
            file=sys.stderr,
        )
        return 2
    problems = contract.check_model(args.model_dir, spec)
    for p in problems:
        print(f"kfloop models publish: {p}", file=sys.stderr)
    if problems:
        print(
            "kfloop models publish: nothing published (fix the model: kfloop models check)", file=sys.stderr
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="kfloop-publish-") as tmp:
        staging = Path(tmp) / "model"
        shutil.copytree(fs.local_copy(args.model_dir, str(Path(tmp) / "src")), staging)
        (staging / contract.METADATA_FILE).unlink(missing_ok=True)  # ours is written last, below
        schema = args.schema
        if not schema and (staging / contract.SCHEMA_FILE).is_file():
            schema = str(Path(tmp) / "kept-schema.pbtxt")  # the directory's own schema is kept
            shutil.move(str(staging / contract.SCHEMA_FILE), schema)
        hashes = contract.write_spec_and_schema(str(staging), spec, schema)
        metadata = {
            "source": "published",
            "published_from": args.model_dir,
            "trainer": "external",
            "model": args.name,
            "spec_name": spec.name,
            "spec_digest": spec.digest(),
            "label": spec.label.name,
            "features": spec.describe(),
            "signatures": contract.signature_description(spec),
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **hashes,
        }
        fs.write_text(str(staging / contract.METADATA_FILE), json.dumps(metadata, indent=2))
        artifacts = None
        if args.train:
            from kfloop import layout
            from kfloop.reference import build_reference

            ref_dir = str(Path(tmp) / "reference")
            build_reference(args.train, args.eval or "", ref_dir, spec=spec, schema_path=schema or None)
            artifacts = {layout.REFERENCE: ref_dir}
        try:
            ms = store.ModelStore(args.store)
            version = ms.publish(
                args.name,
                str(staging),
                {"source": "published", "metrics": {}, **hashes},
                artifacts=artifacts,
            )
        except store.StoreError as e:
            raise SystemExit(f"kfloop models publish: {e}") from None
    result = {"version": version, "model_uri": ms.model_uri(args.name, version), "aliases": [], **hashes}
    result["reference"] = bool(artifacts)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"published {args.name} {version} (no alias): {result['model_uri']}\n"
            f"next: kfloop evaluate --store {args.store} --name {args.name} --version {version} --data EVAL_CSV "
            f"[--baseline CHAMPION_DIR] --blessing B.json, then kfloop models push {version} --blessing B.json"
        )
        if not artifacts:
            print(
                "note: no monitoring reference (pass --train [--eval]): as champion, the scheduled monitor "
                "cannot judge drift for this version"
            )
    return 0


def _push(args: argparse.Namespace) -> int:
    from components.push.push import PushError, push_version
    from kfloop import store

    open_store(args, "models push")
    try:
        result = push_version(args.store, args.name, args.version, args.blessing)
    except (PushError, store.StoreError) as e:
        raise SystemExit(f"kfloop models push: {e}") from None
    if not result.pushed:
        for r in result.reasons:
            print(f"kfloop models push: not blessed: {r}", file=sys.stderr)
        return 3
    print(f"{args.name} {result.version} is now {result.alias} (champion: {result.champion})")
    return 0
