"""The ``kfloop`` command line. Sub-commands live in :mod:`kfloop.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kfloop`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("kfloop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
