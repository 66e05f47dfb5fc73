"""What the local loop ran, as records: the training runs' results, the models, the loop record.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import json
from pathlib import Path


def _find(root: Path, task_prefix: str, name: str) -> Path | None:
    for task in sorted(root.iterdir()) if root.is_dir() else []:
        if task.name.startswith(task_prefix) and (task / name).exists():
            return task / name
    return None


def json_file(path: Path | None) -> dict:
    """A JSON artifact of a kfp.local run (a file, or the first ``*.json`` of a folder); {} if unreadable."""
    if path is None:
        return {}
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        path = files[0] if files else None
        if path is None:
            return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def training_run_result(run_root: Path) -> dict:
    """What a training-pipeline run under kfp.local produced: splits, blessing, push result."""
    train = _find(run_root, "ingest", "train_data")
    evals = _find(run_root, "ingest", "eval_data")
    blessing = json_file(_find(run_root, "evaluate", "blessing"))
    pushed = json_file(_find(run_root, "push", "pushed"))
    return {
        "run_root": str(run_root),
        "train": str(train) if train else None,
        "eval": str(evals) if evals else None,
        "blessing": blessing,
        "pushed": pushed,
    }


def model_record(result: dict, cutoff: str, window_start: str, champion_before) -> dict:
    """One trained model of the loop: its version, eval AUC (binary) or the task's ``eval_metrics``, blessing
    reasons and fate.

    Args:
        result: :func:`training_run_result` of its training run.
        cutoff: The run's cutoff; window_start: its training window's start ("" = first row).
        champion_before: The champion when it was trained.
    """
    blessing, pushed = result.get("blessing") or {}, result.get("pushed") or {}
    failed = [r.get("message", "") for r in blessing.get("reasons", []) if not r.get("passed", True)]
    passed = [r.get("message", "") for r in blessing.get("reasons", []) if r.get("passed", True)]
    return {
        "version": pushed.get("version"),
        "trained_on": f"{window_start or 'first row'} .. {cutoff}",
        "eval_auc": (blessing.get("metrics") or {}).get("auc"),
        "champion_eval_auc": (blessing.get("champion_metrics") or {}).get("auc"),
        "champion_before": champion_before,
        "blessed": bool(blessing.get("blessed")),
        "reasons": failed or passed,
        "alias": pushed.get("alias"),
        "fate": (
            f"pushed as {pushed.get('alias')}"
            if pushed.get("pushed")
            else "rejected by evaluation: " + "; ".join(pushed.get("reasons") or failed)
        ),
        "run_root": result.get("run_root"),
        "eval_comparison": next(
            (
                r.get("message")
                for r in blessing.get("reasons", [])
                if r.get("kind") == "change" and r.get("slice") == "Overall"
            ),
            None,
        ),
        "failed_reasons": failed,
        # the task's metrics (binary keeps eval_auc above): the blessing's eval_metrics (issue 26)
        "task": blessing.get("task") or "binary",
        "eval_metrics": blessing.get("eval_metrics") or blessing.get("metrics") or {},
        "champion_eval_metrics": blessing.get("champion_eval_metrics")
        or blessing.get("champion_metrics")
        or {},
    }


#: The headline eval metric of a model record per task: (key in ``eval_metrics``, its name).
HEADLINE = {"binary": ("auc", "AUC"), "regression": ("rmse", "RMSE"), "multiclass": ("accuracy", "accuracy")}


def headline(model: dict) -> str:
    """``eval <metric> <value>`` of a model record (:func:`model_record`): binary its AUC (4 places as
    before), regression its RMSE in label units, multiclass its accuracy; ``eval <metric> -`` when absent."""
    task = model.get("task") or "binary"
    key, name = HEADLINE.get(task, HEADLINE["binary"])
    value = model.get("eval_auc") if task == "binary" else (model.get("eval_metrics") or {}).get(key)
    if not isinstance(value, int | float):
        return f"eval {name} -"
    return f"eval {name} {value:.4f}" if task != "regression" else f"eval {name} {value:.4g}"


def spec_record(spec) -> dict:
    """What the loop record says of its dataset spec: name, description, digest, task (and classes)."""
    out = {
        "name": spec.name,
        "description": spec.description,
        "sha256": spec.digest(),
        "task": spec.task.value,
    }
    return {**out, "classes": list(spec.classes)} if spec.classes else out


def apply_canary(models: list[dict], verdict: dict) -> str | None:
    """Notes a canary verdict on the model it judged; returns the fate it gives ("promote" / "reject"), if
    any."""
    fate = {
        "promote": "promoted to champion by the canary step",
        "reject": "rolled back by the canary step",
    }.get(verdict.get("action"))
    for mod in models:
        if mod["version"] == verdict.get("canary_version"):
            mod["canary"] = verdict["summary"]
            if fate:
                mod["fate"] = f"{fate}: {verdict['summary']}"
    return fate
