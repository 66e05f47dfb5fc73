"""The blessing the evaluation writes and push reads: ``blessing.json`` and its contract.

A blessing is a JSON object with ``blessed`` (bool), ``reasons`` (list), ``champion_version`` and
``metrics``; the evaluate component writes it, the push component reads it with :func:`read_blessing`.
"""

from __future__ import annotations

import json
from pathlib import Path

from kfloop import fs

BLESSING_FILE = "blessing.json"


class BlessingError(ValueError):
    """A blessing is missing, unreadable or breaks the contract; the message names the file and key."""


def read_blessing(path: str) -> dict:
    """Reads a blessing JSON (a file, or a directory / KFP artifact holding ``blessing.json``).

    Raises:
        BlessingError: missing, unreadable, or without the contract's keys.
    """
    uri = str(path)
    if not fs.is_gcs(uri) and Path(uri).is_dir():
        uri = str(Path(uri) / BLESSING_FILE)
    try:
        data = json.loads(fs.read_text(uri))
    except FileNotFoundError:
        raise BlessingError(f"blessing {path!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise BlessingError(f"blessing {path!r} is not JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("blessed"), bool):
        raise BlessingError(f"blessing {path!r}: 'blessed' must be true or false")
    for key in ("reasons", "champion_version", "metrics"):
        if key not in data:
            raise BlessingError(f"blessing {path!r} lacks key {key!r}")
    if not isinstance(data["reasons"], list):
        raise BlessingError(f"blessing {path!r}: 'reasons' must be a list")
    return data
