"""``kfloop deploy|promote|rollback``: roll a model version out (canary), promote it, or roll back."""

from __future__ import annotations

import argparse
import re
import sys

from kfloop.app.commands.models import open_store, store_arg

_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 label


def _common(p: argparse.ArgumentParser) -> None:
    store_arg(p)
    p.add_argument(
        "--mode",
        choices=("local", "cluster"),
        default="local",
        help="local: move aliases (the local server hot-reloads); cluster: also apply the InferenceService",
    )
    p.add_argument("--namespace", help="Kubernetes namespace (default: kfloop.config.DeployConfig.namespace)")
    p.add_argument(
        "--raw-deployment",
        action="store_true",
        help="the cluster serves in KServe RawDeployment mode (canaries are refused there)",
    )
    p.add_argument("--image", help="predictor image (default kfloop.config.SERVING_IMAGE)")
    p.add_argument("--reason", default="", help="why (kept in the alias history)")
    p.add_argument(
        "--dry-run", action="store_true", help="print what would happen (and the YAML); change nothing"
    )


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("deploy", help="roll out a model version (canary when a champion exists)")
    _common(d)
    d.add_argument("--version", help="version or alias to roll out (default: canary alias, else latest)")
    d.add_argument(
        "--canary-percent",
        type=int,
        help="canary traffic share 0..100 (default DeployConfig.canary_percent; 0 = full rollout)",
    )
    d.set_defaults(func=_run, action="deploy")
    p = sub.add_parser("promote", help="move the canary to 100%% of traffic and to champion")
    _common(p)
    p.set_defaults(func=_run, action="promote")
    r = sub.add_parser("rollback", help="restore the previous champion from the alias history")
    _common(r)
    r.set_defaults(func=_run, action="rollback")


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from kfloop import config, deploy, store

    open_store(args, args.action)  # validates --store and --name
    if args.namespace is not None and not _NAMESPACE_RE.fullmatch(args.namespace):
        raise SystemExit(
            f"kfloop {args.action}: --namespace {args.namespace!r} is not a Kubernetes namespace "
            "(1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)"
        )
    cfg = config.DeployConfig()
    if args.raw_deployment:
        cfg = dataclasses.replace(cfg, deployment_mode=deploy.RAW)
    kwargs = dict(
        mode=args.mode,
        namespace=args.namespace,
        cfg=cfg,
        dry_run=args.dry_run,
        reason=args.reason,
        image=args.image or config.SERVING_IMAGE,
    )
    try:
        if args.action == "deploy":
            out = deploy.deploy(
                args.store, args.name, version=args.version, canary_percent=args.canary_percent, **kwargs
            )
        elif args.action == "promote":
            out = deploy.promote(args.store, args.name, **kwargs)
        else:
            out = deploy.rollback(args.store, args.name, **kwargs)
    except (deploy.DeployError, store.StoreError) as e:
        raise SystemExit(f"kfloop {args.action}: {e}") from None
    if args.dry_run and out.manifest is not None:
        print(deploy.to_yaml(out.manifest), end="")  # YAML alone on stdout (pipe it to kubectl)
        print(out.summary(), file=sys.stderr)
    else:
        print(out.summary())
    return 0
