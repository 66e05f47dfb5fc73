"""``kfloop models list|history``: what the model store holds and who moved which alias when."""

from __future__ import annotations

import argparse
import json
import os
import sys


def store_arg(p: argparse.ArgumentParser) -> None:
    """Adds ``--store`` (default ``$KFLOOP_STORE_URI``) and ``--name``."""
    from kfloop import config

    p.add_argument(
        "--store",
        default=os.environ.get("KFLOOP_STORE_URI"),
        help="model store root (local dir or gs://bucket/prefix; default $KFLOOP_STORE_URI)",
    )
    p.add_argument("--name", default=config.MODEL_NAME, help=f"model name (default {config.MODEL_NAME})")


def open_store(args: argparse.Namespace, cmd: str):
    """The ModelStore of ``--store``; a readable exit when it is missing or invalid."""
    from kfloop import store

    if not args.store:
        raise SystemExit(f"kfloop {cmd}: no model store: pass --store URI or set KFLOOP_STORE_URI")
    from kfloop import fs

    if not fs.is_gcs(args.store) and not os.path.isdir(args.store.removeprefix("file://")):
        raise SystemExit(f"kfloop {cmd}: model store {args.store!r} does not exist (a typo in --store?)")
    try:
        store.check_model_name(args.name)
        return store.ModelStore(args.store)
    except (store.StoreError, ValueError) as e:
        raise SystemExit(f"kfloop {cmd}: {e}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model versions and the alias history of the model store")
    msub = p.add_subparsers(dest="models_cmd", required=True, metavar="{list,history}")
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


def _list(args: argparse.Namespace) -> int:
    from kfloop import store

    ms = open_store(args, "models list")
    try:
        versions = ms.versions(args.name)
        aliases = ms.aliases(args.name)
        rows = []
        for v in versions:
            meta = ms.metadata(args.name, v)
            rows.append(
                {
                    "version": v,
                    "aliases": sorted(a for a, av in aliases.items() if av == v),
                    "published_at": meta.get("published_at"),
                    "auc": (meta.get("metrics") or {}).get("auc"),
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
    print(f"{'VERSION':<8} {'ALIASES':<18} {'PUBLISHED':<28} {'AUC':<7} RUN")
    for r in rows:
        auc = f"{r['auc']:.4f}" if isinstance(r["auc"], int | float) else "-"
        print(
            f"{r['version']:<8} {','.join(r['aliases']) or '-':<18} {r['published_at'] or '-':<28} {auc:<7} "
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
