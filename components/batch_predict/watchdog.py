"""Stops a batch scoring task with the ``kfloop predict`` that started it (:func:`stop_with_parent`)."""

from __future__ import annotations

import threading
import time

#: Set by ``kfloop predict`` to its process id: a scoring task started under it stops when that process
#: is gone (killed, even with SIGKILL), so no orphaned task goes on to commit a job its caller gave up.
PARENT_PID_ENV = "KFLOOP_STOP_WITH_PID"
#: Seconds between two looks of :func:`stop_with_parent`'s watchdog.
PARENT_POLL_S = 0.5


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def stop_with_parent(poll_s: float | None = None) -> bool:
    """Under ``kfloop predict`` (:data:`PARENT_PID_ENV` set): a daemon thread that kills this process
    (SIGKILL: nothing after it runs, so nothing is committed) as soon as that ``kfloop predict`` is gone.
    Returns whether the watchdog was started."""
    import os
    import signal

    value = os.environ.get(PARENT_PID_ENV, "")
    if not value.isdigit():
        return False
    pid, wait = int(value), PARENT_POLL_S if poll_s is None else poll_s

    def watch() -> None:
        while _process_alive(pid):
            time.sleep(wait)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="kfloop-stop-with-parent", daemon=True).start()
    return True
