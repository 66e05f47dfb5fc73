"""``kfloop serve``: run the KServe predictor locally (in the serving env).

The CLI runs in the pipeline env, which has no kserve; this command execs the serving env's Python
(``.venv-serving/bin/python``, or ``$KFLOOP_SERVING_PYTHON``) with ``-m serving`` and the arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the model locally with KServe (V1 + V2) from the model store or a SavedModel dir",
        description="Starts `python -m serving` in the serving env. Other kserve model-server options "
        "(e.g. --enable_docs_url true) can follow after `--`.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store-uri", help="model store root (local dir or gs://bucket/prefix)")
    src.add_argument("--model-dir", help="serve this SavedModel directory (no store, no hot reload)")
    p.add_argument(
        "--model-name",
        help="model name (store and URL; default: the dataset spec's name of --model-dir, or the store's "
        "only model)",
    )
    p.add_argument("--model-ref", default="champion", help="alias or pinned version (default champion)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--log-uri", help="prediction log root (default: the store root)")
    p.add_argument("--batch-wait-ms", type=float, help="micro-batch wait bound")
    p.add_argument("--max-body-bytes", type=int, help="413 above this many bytes")
    p.add_argument("--reload-interval", type=float, help="alias poll seconds (0: no hot reload)")
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="more `python -m serving` options after --")
    p.set_defaults(func=_serve)


def serving_python() -> str:
    """The serving env's interpreter: ``$KFLOOP_SERVING_PYTHON`` or ``.venv-serving/bin/python``."""
    return os.environ.get("KFLOOP_SERVING_PYTHON") or str(_ROOT / ".venv-serving" / "bin" / "python")


def build_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m serving ...`` argv for parsed ``kfloop serve`` arguments."""
    cmd = [serving_python(), "-m", "serving", "--http_port", str(args.port)]
    if args.model_name:
        cmd += ["--model-name", args.model_name]
    if args.store_uri:
        cmd += ["--store-uri", args.store_uri, "--model-ref", args.model_ref]
    else:
        cmd += ["--model-dir", args.model_dir]
    for flag, value in (
        ("--log-uri", args.log_uri),
        ("--batch-wait-ms", args.batch_wait_ms),
        ("--max-body-bytes", args.max_body_bytes),
        ("--reload-interval", args.reload_interval),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    extra = list(args.extra or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra


def preflight(args: argparse.Namespace) -> str | None:
    """Checks, before the server starts, what it would load; returns the version it would serve.

    The model name, the store's alias and version files, and the version's manifest (and, for a local
    store, every model file's sha256) - or that ``--model-dir`` is a SavedModel directory. Without
    ``--model-name`` it sets ``args.model_name``: the name in ``--model-dir``'s dataset spec, or the store's
    only model.

    Raises:
        SystemExit: one line naming the file and the problem.
    """
    from kfloop import fs, store

    try:
        if args.model_dir:
            local = str(args.model_dir).removeprefix("file://")
            if not fs.is_gcs(local):
                if not os.path.isdir(local):
                    what = "is not a directory" if os.path.exists(local) else "does not exist"
                    raise store.StoreError(f"--model-dir {local}: {what} (give a SavedModel directory)")
                if not os.path.isfile(os.path.join(local, "saved_model.pb")):
                    raise store.StoreError(f"--model-dir {local}: no saved_model.pb (not a SavedModel)")
        if not args.model_name:
            args.model_name = _default_name(args)
        store.check_model_name(args.model_name)
        if args.model_dir:
            return None
        ms = store.ModelStore(args.store_uri)
        version = ms.resolve(args.model_name, args.model_ref)
        if ms.is_gcs:
            ms.metadata(args.model_name, version)  # the server checks every file's sha256 as it downloads
        else:
            ms.verify(args.model_name, version)
        return version
    except store.StoreError as e:
        raise SystemExit(f"kfloop serve: {e}") from None


def _default_name(args: argparse.Namespace) -> str:
    """The model name when ``--model-name`` is not given (SystemExit when there is no single one)."""
    from kfloop import contract, spec, store

    if args.model_dir:
        try:
            return contract.read_spec(str(args.model_dir).removeprefix("file://")).name
        except (FileNotFoundError, spec.SpecError) as e:
            raise SystemExit(f"kfloop serve: --model-name is required: {e}") from None
    try:
        return store.only_model(args.store_uri)
    except store.StoreError as e:
        raise SystemExit(f"kfloop serve: {e}") from None


def _serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise SystemExit(f"kfloop serve: --port must be 1..65535, got {args.port}")
    cmd = build_command(args)
    python = cmd[0]
    if not (os.path.isfile(python) and os.access(python, os.X_OK)) and not shutil.which(python):
        raise SystemExit(
            f"kfloop serve: serving env python not found at {python} "
            "(run `make env`, or set KFLOOP_SERVING_PYTHON)"
        )
    preflight(args)  # after the cheap local check: the store may be remote
    cmd = build_command(args)  # with the model name preflight found
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
    os.execve(
        shutil.which(python) or python, cmd, env
    )  # replaces this process: signals go straight to the server
    return 0  # not reached
