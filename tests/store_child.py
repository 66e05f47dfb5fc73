"""A child process for the store's fault-injection tests (tests/test_store_faults.py).

``python -m tests.store_child '<json>'`` with ``{"mode": ..., "root": ..., ...}``:

- ``publish``: publishes ``model_dir`` (run id ``run``) and points ``alias`` at the new version; with
  ``kill_at=N`` it SIGKILLs itself just before (``when="before"``) or after (``"after"``) the N-th store write
  (:func:`kfloop.fs.write_bytes` / :func:`kfloop.fs.upload_file` call). Prints the number of writes made.
- ``loop``: publishes and moves aliases forever (the parent kills it at a random moment).
- ``churn``: ``ops`` random alias operations (canary moves, promotes, rollbacks; store-level and through
  :mod:`kfloop.deploy`), each with a unique reason; writes one JSON line per applied move to ``out``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

NAME = "taxi-tips"


def _install_killer(kill_at: int, when: str) -> list:
    from kfloop import fs

    count = [0]
    for fname in ("write_bytes", "upload_file"):
        real = getattr(fs, fname)

        def wrapped(*a, _real=real, **kw):
            count[0] += 1
            if count[0] == kill_at and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = _real(*a, **kw)
            if count[0] == kill_at and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        setattr(fs, fname, wrapped)
    return count


def _publish(ms, args, run: str) -> str:
    version = ms.publish(NAME, args["model_dir"], {"run_id": run}, actor="child")
    ms.set_alias(NAME, args.get("alias", "canary"), version, reason=f"publish {run}", actor="child")
    return version


def _churn(ms, args) -> None:
    from kfloop import deploy, store

    rng = random.Random(args["seed"])
    me = args["worker"]
    versions = ms.versions(NAME)
    while time.time() < args["start_at"]:
        time.sleep(0.005)
    with open(args["out"], "a") as out:

        def applied(kind, rec_or_reason):
            out.write(json.dumps({"worker": me, "kind": kind, "reason": rec_or_reason}) + "\n")
            out.flush()

        for i in range(args["ops"]):
            reason = f"w{me}-op{i}"
            op = rng.choice(["canary", "promote", "rollback", "deploy-promote", "deploy-rollback"])
            try:
                if op == "canary":
                    ms.set_alias(NAME, store.CANARY, rng.choice(versions), reason=reason, action="deploy")
                    applied(op, reason)
                elif op == "promote":
                    canary = ms.get_alias(NAME, store.CANARY)
                    champion = ms.get_alias(NAME, store.CHAMPION)
                    if canary and canary != champion:
                        ms.set_alias(
                            NAME, store.CHAMPION, canary, expected=champion, reason=reason, action="promote"
                        )
                        applied(op, reason)
                elif op == "rollback":
                    ms.rollback(NAME, reason=reason)
                    applied(op, reason)
                elif op == "deploy-promote":
                    out_ = deploy.promote(ms.root, NAME, reason=reason)
                    applied(op, reason) if out_.moves else None
                else:
                    out_ = deploy.rollback(ms.root, NAME, reason=reason)
                    applied(op, reason) if out_.moves else None
            except deploy.PartialApply as e:
                applied(op + "-partial", reason)
                print(f"partial: {e}", file=sys.stderr)
            except (store.AliasConflict, store.ModelNotFound, deploy.DeployError):
                pass  # lost a race or nothing to do: expected under contention


def main() -> None:
    args = json.loads(sys.argv[1])
    from kfloop import store

    ms = store.ModelStore(args["root"])
    if args["mode"] == "publish":
        count = _install_killer(int(args.get("kill_at", -1)), args.get("when", "before"))
        _publish(ms, args, args["run"])
        print(json.dumps({"writes": count[0]}))
    elif args["mode"] == "loop":
        i = 0
        while True:
            i += 1
            _publish(ms, args, f"{args['run']}-{i}")
    elif args["mode"] == "churn":
        _churn(ms, args)


if __name__ == "__main__":
    main()
