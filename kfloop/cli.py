"""The ``kfloop`` command line. Sub-commands live in :mod:`kfloop.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys

from kfloop import __version__, commands


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one readable line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every module of :mod:`kfloop.commands` registered (sorted by name)."""
    parser = _Parser(prog="kfloop", description="A Kubernetes-native MLOps loop on Kubeflow.")
    parser.add_argument("--version", action="version", version=f"kfloop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"kfloop.commands.{mod.name}").register(sub)
    return parser


_SUBCOMMANDS = ("models_cmd", "data_cmd", "schema_cmd")


def command_name(args: argparse.Namespace) -> str:
    """``models list``, ``deploy``, ...: the sub-command of parsed arguments, for error lines."""
    parts = [str(args.command)] + [str(getattr(args, a)) for a in _SUBCOMMANDS if getattr(args, a, None)]
    return " ".join(parts)


def describe_error(e: BaseException) -> str:
    """One line saying what failed and on which file: the CLI's message for an exception it did not expect.

    ``OSError`` names its file (``/x/y: Is a directory``); kfloop's own errors carry their message; anything
    else is ``<ExceptionType>: <first line of its message>``. Set ``KFLOOP_TRACEBACK=1`` for the traceback.
    """
    if isinstance(e, OSError) and e.filename is not None:
        where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
        text = f"{where}: {e.strerror or type(e).__name__}"
    elif type(e).__module__.split(".")[0] in ("kfloop", "components", "training_image", "pipelines"):
        text = str(e) or type(e).__name__
    else:
        first = next((line for line in str(e).splitlines() if line.strip()), "")
        text = f"{type(e).__name__}: {first}" if first else type(e).__name__
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= 500 else text[:497] + "..."


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI.sub("", text)


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kfloop`` console script.

    Any error a command does not turn into its own message ends as ONE line on stderr,
    ``kfloop <command>: <what failed, naming the file>``, and exit code 1 (:func:`describe_error`).
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("kfloop: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if isinstance(e.code, str) and "\n" in e.code.strip():  # a command's own message: one line
            raise SystemExit(" ".join(strip_ansi(e.code).split())) from None
        raise
    except Exception as e:
        if os.environ.get("KFLOOP_TRACEBACK") == "1":
            raise
        print(f"kfloop {command_name(args)}: {describe_error(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
