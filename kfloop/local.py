"""Running pipelines with kfp.local (the embedded default: no cluster)."""

from __future__ import annotations

import dataclasses
import os
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
