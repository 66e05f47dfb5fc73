"""The retrain trigger on a cluster: record first, so a KFP retry of the task never starts a second
training run (the submission itself is exercised against loopback APIs in tests/test_rbac.py)."""

from __future__ import annotations

import pytest

from components.trigger import trigger as T
from kfloop.app import compile as kc

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
        images=kc.images().as_dict(),
    )


def test_a_retry_after_a_successful_submission_starts_nothing(tmp_path, monkeypatch):
    root = str(tmp_path / "store")
    jobs = []

    def submitted(job):  # what the fresh interpreter returns once the KFP API created the run
        jobs.append(job)
        assert [t["state"] for t in T.read_triggers(root, MODEL)] == ["submitting"]  # recorded first
        return {"arguments": job["arguments"], "run": {"run_id": "run-1", "run_name": job["run_name"]}}

    monkeypatch.setattr(T, "start_in_fresh_interpreter", submitted)
    first = _call(root)
    assert first["started"] and first["state"] == "started" and len(jobs) == 1
    assert jobs[0]["run_name"] == f"kfloop-retrain-{DECISION['decision_id']}"
    assert jobs[0]["images"] == kc.images().as_dict()
    again = _call(root)  # KFP retried the task
    assert len(jobs) == 1 and again["repeated"] and "not again" in again["reason"]
    assert again["run"]["run_id"] == "run-1"
    assert len(T.read_triggers(root, MODEL)) == 1


def test_a_retry_after_a_crash_mid_submission_does_not_submit_twice(tmp_path, monkeypatch):
    root = str(tmp_path / "store")

    def crashed(job):
        raise T.TriggerError("pod evicted after the KFP API answered")

    monkeypatch.setattr(T, "start_in_fresh_interpreter", crashed)
    with pytest.raises(T.TriggerError, match="evicted"):
        _call(root)
    calls = []
    monkeypatch.setattr(T, "start_in_fresh_interpreter", lambda job: calls.append(job))
    again = _call(root)
    assert calls == [] and again["started"] is False and again["state"] == "submitting"
    assert "not submitting twice" in again["reason"] and DECISION["decision_id"] in again["reason"]


def test_cluster_mode_needs_the_compiled_images():
    with pytest.raises(T.TriggerError, match="compiled images"):
        T.submit_from_pod({"images": {"pipeline": "x"}}, {})
