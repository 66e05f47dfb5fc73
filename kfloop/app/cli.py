"""The ``kfloop`` command line. Sub-commands live in :mod:`kfloop.app.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from kfloop import __version__
from kfloop.app import commands
from kfloop.app.checks import Blocked, strip_ansi


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one readable line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every module of :mod:`kfloop.app.commands` registered (sorted by name)."""
    parser = _Parser(prog="kfloop", description="A Kubernetes-native MLOps loop on Kubeflow.")
    parser.add_argument("--version", action="version", version=f"kfloop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"kfloop.app.commands.{mod.name}").register(sub)
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
    text = " ".join(strip_ansi(text).split())
    return text if len(text) <= 500 else text[:497] + "..."


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
    except Blocked as e:
        print(e.message, file=sys.stderr)
        raise
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
