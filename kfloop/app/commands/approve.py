"""``kfloop approve|reject MODEL VERSION --by WHO --reason TEXT`` and ``kfloop approvals MODEL``.

Under the ``approval`` promotion policy the canary step records a pending approval instead of promoting
(:mod:`kfloop.approvals`). These commands record the human decision; the next monitoring run applies it
through the same deploy path, with the approver and reason in the alias history. ``kfloop approvals``
lists every request with its evidence and state.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _store(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=os.environ.get("KFLOOP_STORE_URI"),
        help="model store root (local dir or gs://bucket/prefix; default $KFLOOP_STORE_URI)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    for verb, approve in (("approve", True), ("reject", False)):
        p = sub.add_parser(
            verb,
            help=f"{verb} a pending promotion (the next monitoring run "
            + ("promotes the canary)" if approve else "rolls the canary back)"),
        )
        p.add_argument("model", help="model name")
        p.add_argument("version", help="the canary version awaiting approval (kfloop approvals MODEL)")
        p.add_argument("--by", required=True, help="who decides (kept in the alias history)")
        p.add_argument("--reason", required=True, help="why (kept in the alias history)")
        _store(p)
        p.set_defaults(func=_decide, approve=approve, verb=verb)
    ls = sub.add_parser("approvals", help="promotion approvals of a model: pending, decided, expired")
    ls.add_argument("model", help="model name")
    ls.add_argument("--json", action="store_true", help="print JSON")
    _store(ls)
    ls.set_defaults(func=_list)


def _decide(args: argparse.Namespace) -> int:
    from kfloop import approvals
    from kfloop.app.checks import open_store

    args.name = args.model
    open_store(args, args.verb)
    try:
        rec = approvals.decide(
            args.store, args.model, args.version, approve=args.approve, by=args.by, reason=args.reason
        )
    except approvals.ApprovalError as e:
        raise SystemExit(f"kfloop {args.verb}: {e}") from None
    print(
        f"{args.model} {args.version}: {rec['decision']} by {rec['by']} ({rec['uri']}); the next monitoring "
        "run applies it"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    from kfloop import approvals
    from kfloop.app.checks import open_store

    args.name = args.model
    open_store(args, "approvals")
    reqs = approvals.list_requests(args.store, args.model)
    if args.json:
        json.dump(reqs, sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    if not reqs:
        print(f"{args.model}: no approval requests")
    for r in reqs:
        c = (r.get("evidence") or {}).get("comparison") or {}
        interval = (
            f"{c['metric']} diff {c['diff']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] on {c['rows']} rows"
            if c.get("diff") is not None
            else "no comparison"
        )
        state = r["state"]
        if r.get("decision"):
            state += f" by {r['decision']['by']}: {r['decision']['reason']}"
        print(
            f"{r['version']} over {r.get('champion_version')}: {state}; requested {r['requested_at']}, "
            f"expires {r['expires_at']} ({r['on_expiry']}); {interval}"
        )
    return 0
