"""The retrain trigger on a cluster: record first, so a KFP retry of the task never starts a second
training run (the submission itself is exercised against loopback APIs in tests/test_rbac.py)."""

from __future__ import annotations

import pytest

from components.trigger import trigger as T

MODEL = "taxi-tips"
DECISION = {"decision": "retrain", "retrain": True, "decision_id": "20260101T000000000000Z-abcd1234"}


def _call(root):
    return T.trigger(
        DECISION,
        mode="cluster",
        source="gs://b/taxi.csv",
        store_uri=root,
        model_name=MODEL,
        cutoff="2015-07-01",
        training_pipeline="pipelines/p-1/versions/v-1",
    )


def test_a_retry_after_a_successful_submission_starts_nothing(tmp_path, monkeypatch):
    root = str(tmp_path / "store")
    jobs = []

    def submitted(job):  # what start_run returns once the KFP API created the run
        jobs.append(job)
        assert [t["state"] for t in T.read_triggers(root, MODEL)] == ["submitting"]  # recorded first
        return {"arguments": job["arguments"], "run": {"run_id": "run-1", "run_name": job["run_name"]}}

    monkeypatch.setattr(T, "start_run", submitted)
    first = _call(root)
    assert first["started"] and first["state"] == "started" and len(jobs) == 1
    assert jobs[0]["run_name"] == f"kfloop-retrain-{DECISION['decision_id']}"
    assert jobs[0]["training_pipeline"] == "pipelines/p-1/versions/v-1"
    again = _call(root)  # KFP retried the task
    assert len(jobs) == 1 and again["repeated"] and "not again" in again["reason"]
    assert again["run"]["run_id"] == "run-1"
    assert len(T.read_triggers(root, MODEL)) == 1


def test_a_retry_after_a_crash_mid_submission_does_not_submit_twice(tmp_path, monkeypatch):
    root = str(tmp_path / "store")

    def crashed(job):
        raise T.TriggerError("pod evicted after the KFP API answered")

    monkeypatch.setattr(T, "start_run", crashed)
    with pytest.raises(T.TriggerError, match="evicted"):
        _call(root)
    calls = []
    monkeypatch.setattr(T, "start_run", lambda job: calls.append(job))
    again = _call(root)
    assert calls == [] and again["started"] is False and again["state"] == "submitting"
    assert "not submitting twice" in again["reason"] and DECISION["decision_id"] in again["reason"]


def test_cluster_mode_needs_the_training_pipeline(tmp_path):
    with pytest.raises(T.TriggerError, match="needs training_pipeline"):
        T.submit_from_pod({"training_pipeline": ""}, {})
    with pytest.raises(T.TriggerError, match="needs training_pipeline"):
        T.trigger(DECISION, mode="cluster", source="s", store_uri=str(tmp_path), model_name=MODEL)
    assert T.read_triggers(str(tmp_path), MODEL) == []  # refused before anything is recorded


def test_the_trigger_is_a_leaf():
    """It builds no pipeline and imports nothing from pipelines/ or the roof (issue 25)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(T.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.startswith(("pipelines", "kfloop.app"))}, names


def test_a_local_request_is_recorded_once_and_marked_started_by_the_driver(tmp_path):
    root = str(tmp_path)
    rec = T.trigger(
        DECISION, mode="local", source="s.csv", store_uri=root, model_name=MODEL, cutoff="2015-07-01"
    )
    assert rec["state"] == "requested" and not rec["started"] and rec["arguments"]["cutoff"] == "2015-07-01"
    again = T.trigger(
        DECISION, mode="local", source="s.csv", store_uri=root, model_name=MODEL, cutoff="2015-07-01"
    )
    assert again["repeated"] and "already requested" in again["reason"]
    (pending,) = T.pending_requests(root, MODEL)
    done = T.mark_started(root, MODEL, pending, {"root": "/runs/x"}, seconds=1.5)
    assert done["started"] and done["state"] == "started" and done["run"] == {"root": "/runs/x"}
    assert (
        T.pending_requests(root, MODEL) == [] and T.read_triggers(root, MODEL)[0]["run"]["root"] == "/runs/x"
    )
