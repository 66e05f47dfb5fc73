"""Run in the serving env by tests/test_store_corruption.py: ``python -m serving``'s real start-up, once per
damaged store, in one process (TF is imported once). ``kserve.ModelServer`` is replaced by a stand-in that
stops right where the server would bind, so a start-up that gets that far reports ``STARTED`` and the
version it loaded. Prints one JSON line per case: ``{"case", "exit", "loaded"}``.
"""

from __future__ import annotations

import json
import sys
import traceback


class _WouldBind(Exception):
    pass


def main() -> None:
    cases = json.loads(sys.stdin.read())
    import kserve

    import serving.__main__ as entry
    from serving import model as smodel

    loaded: list[str] = []
    real_load = smodel.ModelSource.load

    def load(self, version):
        m = real_load(self, version)
        loaded.append(version)
        return m

    smodel.ModelSource.load = load

    class FakeServer:
        def __init__(self, *a, **kw):
            raise _WouldBind()

    kserve.ModelServer = FakeServer
    for case in cases:
        loaded.clear()
        try:
            entry.main(case["argv"])
            result = "returned"
        except _WouldBind:
            result = "STARTED"
        except SystemExit as e:
            result = str(e.code)
        except BaseException:
            result = "TRACEBACK " + traceback.format_exc()
        print(json.dumps({"case": case["id"], "exit": result, "loaded": list(loaded)}), flush=True)


if __name__ == "__main__":
    main()
