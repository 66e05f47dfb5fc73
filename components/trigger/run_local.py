"""``python -m components.trigger.run_local JOB_JSON``: start the training pipeline from a fresh interpreter.

The trigger runs this as a subprocess (see :func:`components.trigger.trigger.start_in_fresh_interpreter`).
Prints one JSON line ``{"arguments": {...}, "run": {...}}`` last.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit("usage: python -m components.trigger.run_local JOB_JSON")
    from components.trigger.trigger import start

    print(json.dumps(start(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
