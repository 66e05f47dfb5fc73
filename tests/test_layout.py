"""kfloop.layout: every bucket path, for a local and a gs:// root, and the segment checks."""

from __future__ import annotations

import datetime as dt

import pytest

from kfloop import layout as L

DAY = dt.date(2026, 3, 4)


@pytest.mark.parametrize("root", ["/data/store", "gs://bucket/pre/fix", "gs://bucket/pre/fix/"])
def test_every_path(root):
    r = root.rstrip("/")
    m = f"{r}/models/taxi"
    v = f"{m}/v0003"
    assert L.models_root(root) == f"{r}/models"
    assert L.model_root(root, "taxi") == m
    assert L.version_root(root, "taxi", "v0003") == v
    assert L.version_model(root, "taxi", "v0003") == f"{v}/model"
    assert L.version_metadata(root, "taxi", "v0003") == f"{v}/metadata.json"
    assert L.version_claim(root, "taxi", "v0003") == f"{v}/_CLAIM"
    assert L.version_commit(root, "taxi", "v0003") == f"{v}/_COMMITTED"
    assert L.version_artifact(root, "taxi", "v0003", "extra") == f"{v}/extra"
    assert L.artifact_marker(root, "taxi", "v0003", "reference") == f"{v}/_artifacts/reference.json"
    assert L.reference(root, "taxi", "v0003") == f"{v}/reference"
    assert L.aliases_dir(root, "taxi") == f"{m}/aliases"
    assert L.alias(root, "taxi", "champion") == f"{m}/aliases/champion.json"
    assert L.history_dir(root, "taxi") == f"{m}/history"
    assert (
        L.history_record(root, "taxi", "20260304T000000Z", "ab12")
        == f"{m}/history/20260304T000000Z-ab12.json"
    )
    assert L.runs_dir(root, "taxi") == f"{m}/runs"
    assert L.run_index(root, "taxi", "f00d") == f"{m}/runs/f00d.json"
    assert L.version_counter(root, "taxi") == f"{m}/_next_version.json"
    assert L.model_lock(root, "taxi") == f"{m}/.lock"

    assert L.log_model_root(root, "predictions", "taxi") == f"{r}/predictions/taxi"
    assert L.log_model_root(root, "feedback", "taxi") == f"{r}/feedback/taxi"
    assert L.predictions(root, "taxi") == f"{r}/predictions/taxi"
    assert L.feedback(root, "taxi") == f"{r}/feedback/taxi"
    assert L.log_partition(root, L.FEEDBACK, "taxi", DAY) == f"{r}/feedback/taxi/date=2026-03-04"
    assert L.date_partition(f"{r}/x", DAY) == f"{r}/x/date=2026-03-04"
    assert L.batch_staging(root, "taxi", "job-1", "a1") == f"{r}/predictions/taxi/_staging/job-1/a1"
    assert L.batch_commits(root, "taxi") == f"{r}/predictions/taxi/_commits"
    assert L.batch_commit(root, "taxi", "job-1") == f"{r}/predictions/taxi/_commits/job-1.json"

    assert L.records_dir(root, "taxi", L.DECISIONS) == f"{r}/monitoring/taxi/decisions"
    assert L.record(root, "taxi", L.TRIGGERS, "t-1") == f"{r}/monitoring/taxi/triggers/t-1.json"
    assert L.approval(root, "taxi", "v0003", "request") == f"{r}/approvals/taxi/v0003/request.json"
    assert L.shadow_root(root) == f"{r}/shadow"
    assert L.shadow_root(root, "logs/shadow2") == f"{r}/logs/shadow2"
    assert L.mirrored(root, "taxi") == f"{r}/shadow/mirrored/taxi"
    assert L.version_of_model_uri(L.version_model(root, "taxi", "v0003")) == ("taxi", "v0003")
    assert L.version_of_model_uri(L.version_model(root, "taxi", "v0003") + "/") == ("taxi", "v0003")


def test_record_kinds_are_the_folders_in_use():
    assert L.RECORD_KINDS == ("runs", "decisions", "triggers", "backfills", "canary", "events")
    assert L.LOG_KINDS == ("predictions", "feedback")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\x00b"])
def test_a_part_that_is_not_one_segment_is_refused(bad):
    with pytest.raises(L.LayoutError, match="single path segment"):
        L.model_root("/s", bad)
    with pytest.raises(L.LayoutError, match="version"):
        L.version_model("/s", "taxi", bad)
    with pytest.raises(L.LayoutError, match="record id"):
        L.record("/s", "taxi", L.RUNS, bad)
    with pytest.raises(L.LayoutError, match="artifact"):
        L.version_artifact("/s", "taxi", "v0001", bad)


def test_unknown_log_kind_and_escaping_shadow_folder_are_refused():
    with pytest.raises(L.LayoutError, match="log kind 'models'"):
        L.log_model_root("/s", "models", "taxi")
    with pytest.raises(L.LayoutError, match="shadow log folder"):
        L.shadow_root("/s", "../elsewhere")


@pytest.mark.parametrize(
    "uri", ["/s/models/taxi/v0001", "/s/models/taxi/v0001/model/x", "/s/other/taxi/v0001/model", "model"]
)
def test_version_of_model_uri_matches_only_a_version_model(uri):
    assert L.version_of_model_uri(uri) is None


def test_the_modules_that_own_paths_build_them_through_the_layout(tmp_path):
    """The store, the log, the records and the mirror write where the layout says."""
    from kfloop import predlog, records
    from kfloop import store as kstore

    root = str(tmp_path)
    assert kstore.ModelStore(root).model_uri("taxi", "v0002") == L.version_model(root, "taxi", "v0002")
    assert predlog.partition_uri(root, predlog.PREDICTIONS, "taxi", DAY) == L.log_partition(
        root, L.PREDICTIONS, "taxi", DAY
    )
    assert predlog.commit_uri(root, "taxi", "job").startswith(L.batch_commits(root, "taxi") + "/")
    uri = records.write(root, "taxi", L.DECISIONS, "d-1", {"a": 1})
    assert uri == L.record(root, "taxi", L.DECISIONS, "d-1")
