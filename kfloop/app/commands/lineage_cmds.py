"""``kfloop why MODEL``, ``kfloop models show VERSION`` and ``kfloop models compare A B`` (:mod:`kfloop.lineage`).

- ``why MODEL [--at TIME] [--json]``: why the champion (at TIME) serves, as one chain of records: the alias
  move, the canary verdict or approval, the evaluation and blessing, the training run and its data, the
  trigger's decision and the drift scores behind it.
- ``models show VERSION``: what produced one version (data window and digest, spec / schema hashes, code,
  images, hyperparameters, metrics, run, trigger).
- ``models compare A B``: two versions' hyperparameters and metrics side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

_SHOW_KEYS = (
    "created_at",
    "source",
    "run_id",
    "trigger_id",
    "data_window",
    "train_window",
    "eval_window",
    "rows",
    "data_digest",
    "spec_sha256",
    "schema_sha256",
    "code_version",
    "git_commit",
    "images",
    "image_digest",
    "blessed",
    "blessing_reasons",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "why", help="why a version serves: the chain of records from the alias move back to the drift"
    )
    p.add_argument("model", help="model name")
    p.add_argument(
        "--at", default=None, help="the champion at this time (ISO UTC, store clock; default: now)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--store",
        default=os.environ.get("KFLOOP_STORE_URI"),
        help="model store root (local dir or gs://bucket/prefix; default $KFLOOP_STORE_URI)",
    )
    p.set_defaults(func=_why)


def register_models(msub, store_arg) -> None:
    """Adds ``show`` and ``compare`` to ``kfloop models``."""
    sh = msub.add_parser(
        "show", help="what produced one version: data, digests, code, hyperparameters, metrics"
    )
    sh.add_argument("version", metavar="VERSION", help="version or alias")
    store_arg(sh)
    sh.add_argument("--json", action="store_true", help="print JSON")
    sh.set_defaults(func=_show)
    cp = msub.add_parser("compare", help="two versions' hyperparameters and metrics side by side")
    cp.add_argument("a", metavar="A", help="version or alias")
    cp.add_argument("b", metavar="B", help="version or alias")
    store_arg(cp)
    cp.add_argument("--json", action="store_true", help="print JSON")
    cp.set_defaults(func=_compare)


def _why(args: argparse.Namespace) -> int:
    from kfloop import clock, lineage, store
    from kfloop.app.checks import open_store

    args.name = args.model
    open_store(args, "why")
    at = None
    if args.at:
        try:
            at = clock.parse(args.at)
        except ValueError as e:
            raise SystemExit(f"kfloop why: --at {args.at!r}: {e}") from None
    try:
        chain = lineage.why(args.store, args.model, at)
    except store.StoreError as e:
        raise SystemExit(f"kfloop why: {e}") from None
    if args.json:
        json.dump(chain, sys.stdout, indent=1, sort_keys=True, default=str)
        print()
    else:
        print(lineage.render(chain))
    return 0


def _facts(args, ref: str, cmd: str) -> dict:
    from kfloop import lineage, store

    try:
        version = args.ms.resolve(args.name, ref)
        return lineage.version_facts(args.store, args.name, version)
    except (store.StoreError, KeyError) as e:
        raise SystemExit(f"kfloop models {cmd}: {ref}: {e}") from None


def _show(args: argparse.Namespace) -> int:
    from kfloop.app.checks import open_store

    args.ms = open_store(args, "models show")
    facts = _facts(args, args.version, "show")
    if args.json:
        json.dump(facts, sys.stdout, indent=1, sort_keys=True, default=str)
        print()
        return 0
    print(f"{facts['model_name']} {facts['version']}")
    for k in _SHOW_KEYS:
        print(f"  {k}: {json.dumps(facts.get(k), sort_keys=True, default=str)}")
    for k in ("hyperparameters", "training_metrics", "evaluation_metrics"):
        print(f"  {k}:")
        for name, value in sorted((facts.get(k) or {}).items()):
            print(f"    {name}: {json.dumps(value, default=str)}")
    return 0


def _flat(d: dict | None) -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, int | float | str | bool) or v is None:
            out[k] = v
    return out


def _compare(args: argparse.Namespace) -> int:
    from kfloop.app.checks import open_store

    args.ms = open_store(args, "models compare")
    a, b = _facts(args, args.a, "compare"), _facts(args, args.b, "compare")
    rows = []
    for section in ("hyperparameters", "training_metrics", "evaluation_metrics"):
        fa, fb = _flat(a.get(section)), _flat(b.get(section))
        for k in sorted(set(fa) | set(fb)):
            rows.append(
                {
                    "section": section,
                    "name": k,
                    "a": fa.get(k),
                    "b": fb.get(k),
                    "same": fa.get(k) == fb.get(k),
                }
            )
    for k in ("train_window", "data_digest", "spec_sha256", "schema_sha256", "git_commit"):
        rows.append(
            {"section": "lineage", "name": k, "a": a.get(k), "b": b.get(k), "same": a.get(k) == b.get(k)}
        )
    if args.json:
        json.dump({"a": a["version"], "b": b["version"], "rows": rows}, sys.stdout, indent=1, default=str)
        print()
        return 0
    w = max([len(r["name"]) for r in rows] + [4])
    print(f"{'':{w + 20}} {a['version']:>20} {b['version']:>20}")
    for r in rows:
        fa, fb = (json.dumps(r[x], default=str) if not isinstance(r[x], str) else r[x] for x in ("a", "b"))
        mark = " " if r["same"] else "*"
        print(f"{mark} {r['section']:<18}{r['name']:<{w}} {fa[:40]:>20} {fb[:40]:>20}")
    return 0
