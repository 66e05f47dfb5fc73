"""Running pipelines with kfp.local (the embedded default: no cluster)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """Where a local pipeline run left its outputs."""

    root: Path

    def output(self, task: str, name: str) -> Path:
        """Path of output ``name`` of task ``task`` (the component function's name, e.g. ``ingest-op``)."""
        path = self.root / task / name
        if not path.exists():
            have = sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []
            raise FileNotFoundError(f"no output {name!r} of task {task!r} under {self.root} (tasks: {have})")
        return path


def init(pipeline_root: str | os.PathLike) -> None:
    """Initialises kfp.local with the subprocess runner in this Python env (no venv, no Docker)."""
    from kfp import local

    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))


def run_pipeline(pipeline_func, pipeline_root: str | os.PathLike, **arguments) -> LocalRun:
    """Runs a pipeline function under kfp.local and returns its run directory.

    Raises:
        RuntimeError: a task failed (kfp.local's own error, re-raised with the run directory).
    """
    init(pipeline_root)
    root = Path(pipeline_root)
    before = set(root.iterdir()) if root.is_dir() else set()
    with warnings.catch_warnings():
        # kfp.local warns that our components name a custom base image; this env IS that image's env
        # (both are built from requirements/pipeline.lock), so the warning does not apply here.
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        pipeline_func(**arguments)
    new = sorted((p for p in root.iterdir() if p not in before and p.is_dir()), key=os.path.getmtime)
    if not new:
        raise RuntimeError(f"kfp.local left no run directory under {root}")
    return LocalRun(new[-1])


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXC_LINE = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(?::\s*(.*))?$")
_FAILED_TASK = re.compile(r"Inner task failed: '([^']+)'")


def failure_cause(message: str, lines) -> tuple[str, str, str]:
    """What stopped a failed kfp.local run: ``(task, exception name, exception message)``.

    kfp.local's own error (``message``) names only the failed task, with colour codes; the cause is the
    last exception line of a traceback in the task's streamed log (``lines``; its message may be "").
    Without one, the exception name is "" and the message is kfp.local's, without colour codes (task ""
    when it names none).
    """
    text = " ".join(_ANSI.sub("", message or "").split())
    task = _FAILED_TASK.search(text)
    name, cause = "", ""
    indent = None  # inside a traceback: the indentation of its "Traceback" line
    for raw in lines:
        line = _ANSI.sub("", raw).rstrip()
        stripped = line.lstrip()
        depth = len(line) - len(stripped)
        if stripped.startswith("Traceback (most recent call last):"):
            indent = depth
        elif indent is not None and depth <= indent and stripped:
            m = _EXC_LINE.match(stripped)  # the exception line that ends the traceback
            if m and not stripped.startswith("During handling"):
                name = m.group(1).rsplit(".", 1)[-1]
                cause = " ".join((m.group(2) or "").split())
            indent = None
    if not name:
        return (task.group(1) if task else "", "", text)
    return (task.group(1) if task else "", name, cause)


def stop_children(timeout: float = 10.0) -> int:
    """Stops every descendant process of this one (kfp.local's task subprocesses): SIGTERM, then SIGKILL
    after ``timeout`` seconds for any still running. Returns how many were signalled (Linux ``/proc``;
    elsewhere 0)."""
    import signal
    import time

    me = os.getpid()
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [me]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += kids
        frontier = kids
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_running(pid) for pid in found):
        for pid in found:  # reap our own children (others are reaped by their parents)
            with contextlib.suppress(OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(found)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False
