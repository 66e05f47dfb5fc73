"""``kfloop data fetch``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="get the Chicago taxi data")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{fetch}")
    f = dsub.add_parser("fetch", help="download the taxi CSV from the tfx wheel and verify its sha256")
    f.add_argument("--data-dir", help="cache directory (default $KFLOOP_DATA_DIR or ./data)")
    f.add_argument("--wheel", help="use this tfx wheel instead of downloading it")
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    f.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    from examples.taxi import fetch as data

    try:
        path = data.fetch(args.data_dir, wheel=args.wheel, force=args.force)
    except data.FetchError as e:
        raise SystemExit(f"kfloop data fetch: {e}") from None
    print(path)
    return 0
