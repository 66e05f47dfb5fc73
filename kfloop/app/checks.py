"""What every ``kfloop`` command checks before it reads or writes: input and output paths, the dataset
spec, blocked data; each failure is one line on stderr and an exit code (the roof's shared checks, below
the CLI entry point and its commands)."""

from __future__ import annotations

import argparse
import os
import re
import sys

#: Exit code of every command when the data gate blocks the data (``validate``, ``ingest``, ``predict``).
EXIT_BLOCKING = 3


class Blocked(SystemExit):
    """Blocked data: exit code :data:`EXIT_BLOCKING` with one line on stderr (``str()`` is the line)."""

    def __init__(self, message: str):
        super().__init__(EXIT_BLOCKING)
        self.message = " ".join(strip_ansi(str(message)).split())

    def __str__(self) -> str:
        return self.message


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI.sub("", text)


#: Exit code of a bad command line, a bad dataset spec included (argparse's own code).
EXIT_USAGE = 2


def load_spec(source: str, what: str):
    """The dataset spec at ``source`` (a path, ``gs://`` / ``file://`` URI or YAML text), for a command.

    A spec that is missing or not valid ends the command: ONE line on stderr, ``<what>: <origin>:<line>:
    <key path>: <problem>`` (the :class:`kfloop.spec.SpecError` message), exit code :data:`EXIT_USAGE`
    (2), before anything is read or written.

    Args:
        source: The ``--spec`` value.
        what: The command and option, e.g. ``"kfloop validate: --spec"``.
    """
    from kfloop import spec as S

    if os.path.isdir(source):
        print(f"{what} {source}: is a directory, expected a file", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    try:
        return S.load(source)
    except S.SpecError as e:
        message = str(e)
    except FileNotFoundError:
        message = f"{source}: does not exist"
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        message = f"{source}: {getattr(e, 'strerror', None) or type(e).__name__}"
    print(f"{what} {' '.join(strip_ansi(message).split())}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def spec_misfit(problems: list[str], what: str) -> None:
    """Ends the command with exit :data:`EXIT_USAGE` and one line when ``problems`` (from
    :func:`kfloop.clean.spec_problems`: the spec does not fit the data) is not empty."""
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"{what} the spec does not fit the data: {problems[0]}{more}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def check_input_file(
    path: str | None, what: str, *, allow_empty: bool = False, must_exist: bool = True
) -> None:
    """Raises ``SystemExit`` (one line naming ``path``) unless a local ``path`` is a readable file.

    ``gs://`` URIs and None pass (the reader reports those); with ``must_exist=False`` so does a missing
    file (the command's own reader names it).
    """
    if not path or str(path).startswith("gs://"):
        return
    if os.path.isdir(path):
        raise SystemExit(f"{what} {path}: is a directory, expected a file")
    if not os.path.exists(path):
        if not must_exist:
            return
        raise SystemExit(f"{what} {path}: does not exist")
    if not allow_empty and os.path.getsize(path) == 0:
        raise SystemExit(f"{what} {path}: is empty")


def check_output_dir(path: str | None, what: str) -> None:
    """Raises ``SystemExit`` (one line) when a local ``path`` (or a parent of it) exists as a file."""
    if not path or str(path).startswith("gs://"):
        return
    p = os.path.abspath(path)
    while p and p != os.path.dirname(p):
        if os.path.exists(p) and not os.path.isdir(p):
            raise SystemExit(f"{what} {path}: {p} is a file, expected a directory")
        p = os.path.dirname(p)


def check_not_in_store(path: str | None, what: str, store_uri: str | None = None) -> None:
    """Raises ``SystemExit`` (one line) when ``path`` lies inside a model store (``store_uri``, or any
    store found above a local path): commands write there only through the store's API."""
    if not path:
        return
    from kfloop import store

    root = store.containing_store(path, store_uri)
    if root is not None:
        raise SystemExit(
            f"{what} {path}: is inside the model store {root}; only the store's own commands write there "
            "(choose a path outside it)"
        )


def same_file(a: str, b: str) -> bool:
    """Whether two paths (or ``gs://`` URIs) name the same file."""
    if not a or not b:
        return False
    if fs_is_gcs(a) or fs_is_gcs(b):
        return a.rstrip("/") == b.rstrip("/")
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def fs_is_gcs(uri: str) -> bool:
    return str(uri).startswith("gs://")


def check_output_file(
    path: str,
    what: str,
    *,
    overwrite: bool = False,
    inputs: dict[str, str] | None = None,
    store_uri: str | None = None,
) -> None:
    """Raises ``SystemExit`` (one line naming ``path``) unless a command may write its output file there.

    Refused: a path inside a model store (:func:`check_not_in_store`); a path that is one of ``inputs``
    (``{option: path}``); a directory; an existing file unless ``overwrite`` (``--overwrite``). A ``gs://``
    output is checked against the inputs and the store by name, and for existence in the bucket.
    """
    check_not_in_store(path, what, store_uri)
    for option, inp in (inputs or {}).items():
        if same_file(path, inp):
            raise SystemExit(f"{what} {path}: is the same file as {option}; write the output elsewhere")
    if fs_is_gcs(path):
        from kfloop import fs

        exists = fs.exists(path)
    else:
        if os.path.isdir(path):
            raise SystemExit(f"{what} {path}: is a directory, expected a file")
        check_output_dir(os.path.dirname(os.path.abspath(path)), what)
        exists = os.path.lexists(path)
    if exists and not overwrite:
        raise SystemExit(f"{what} {path}: already exists (pass --overwrite to replace it)")


def store_arg(p: argparse.ArgumentParser) -> None:
    """Adds ``--store`` (default ``$KFLOOP_STORE_URI``) and ``--name``."""
    p.add_argument(
        "--store",
        default=os.environ.get("KFLOOP_STORE_URI"),
        help="model store root (local dir or gs://bucket/prefix; default $KFLOOP_STORE_URI)",
    )
    p.add_argument(
        "--name", default=None, help="model name (the dataset spec's name; default: the store's only model)"
    )


def open_store(args: argparse.Namespace, cmd: str):
    """The ModelStore of ``--store``; a readable exit when it is missing or invalid."""
    from kfloop import store

    if not args.store:
        raise SystemExit(f"kfloop {cmd}: no model store: pass --store URI or set KFLOOP_STORE_URI")
    from kfloop import fs

    if not fs.is_gcs(args.store) and not os.path.isdir(args.store.removeprefix("file://")):
        raise SystemExit(f"kfloop {cmd}: model store {args.store!r} does not exist (a typo in --store?)")
    if not args.name:
        try:
            models = store.ModelStore(args.store).models()
        except (store.StoreError, OSError):
            models = []
        if not models:
            raise SystemExit(
                f"kfloop {cmd}: model store {args.store!r} holds no model (no committed version, no champion, "
                "no canary): publish one, or pass --name NAME (the spec's name)"
            )
        if len(models) > 1:
            raise SystemExit(
                f"kfloop {cmd}: no model name: pass --name NAME (the spec's name; the store holds: "
                f"{', '.join(models)})"
            )
        args.name = models[0]
    try:
        store.check_model_name(args.name)
        return store.ModelStore(args.store)
    except (store.StoreError, ValueError) as e:
        raise SystemExit(f"kfloop {cmd}: {e}") from None
