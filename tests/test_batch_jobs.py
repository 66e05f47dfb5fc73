"""Batch jobs in the prediction log (issue 23 item 6): staged per job and attempt, published by one commit
object written last; readers (``predlog.scan``, what monitoring uses) see a job whole or not at all, and a
rerun of the same job id replaces its rows instead of doubling them. Local files and fake-gcs-server."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import pytest

from components.batch_predict import batch_predict as B
from kfloop import datasets, fs, spec
from kfloop import predlog as P
from tests import synthetic

MODEL = "taxi-tips"
#: The log tables of the job tests: a spec that is not the taxi one (the log is the spec's, not taxi's).
SPEC = spec.loads(synthetic.SPEC_YAML)
NOW = dt.datetime.now(dt.UTC)
START, END = NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1)


def table(job: str, n: int, first: int = 0) -> pa.Table:
    cols = {}
    for f in SPEC.model_features:
        if f.dtype == "float32":
            cols[f.name] = np.full(n, 1.5, dtype=np.float32)
        elif f.dtype == "int64":
            cols[f.name] = np.ones(n, dtype=np.int64)
        else:
            cols[f.name] = np.array(["basic"] * n, dtype=object)
    rows = np.arange(first, first + n)
    return P.prediction_table(
        job, NOW.timestamp(), "v0001", cols, np.full(n, 0.5), "batch", rows=rows, schema=SPEC
    )


def scanned(root: str, report: P.ScanReport | None = None) -> pa.Table:
    batches = list(P.scan(root, MODEL, P.PREDICTIONS, START, END, report=report))
    return pa.Table.from_batches(batches) if batches else pa.table({"request_id": pa.array([], pa.string())})


def stage_and_commit(root: str, job_id: str, n: int) -> P.BatchJob:
    job = P.BatchJob(root, MODEL, job_id)
    files = job.write(table(job_id, n // 2)) + job.write(table(job_id, n - n // 2, first=n // 2))
    job.commit(files, n)
    return job


def _check_job_cycle(root: str) -> None:
    job = P.BatchJob(root, MODEL, "batch-1")
    files = job.write(table("batch-1", 30)) + job.write(table("batch-1", 20, first=30))
    assert len(files) == 2 and all(f.startswith(job.staging_uri + "/date=") for f in files)
    assert scanned(root).num_rows == 0  # staged: no reader sees it
    job.commit(files, 50)
    assert scanned(root).num_rows == 50
    # a rerun of the same job id (another attempt) replaces the rows: never 50 + 40
    stage_and_commit(root, "batch-1", 40)
    got = scanned(root)
    assert got.num_rows == 40 and set(got.column("request_id").to_pylist()) == {"batch-1"}
    # another job adds its own rows; online rows are read beside them
    stage_and_commit(root, "batch-2", 10)
    P.write_table(root, MODEL, P.PREDICTIONS, table("online-1", 5))
    got = scanned(root)
    assert got.num_rows == 55
    assert sorted(set(got.column("request_id").to_pylist())) == ["batch-1", "batch-2", "online-1"]


def test_staged_rows_are_invisible_until_commit_and_a_rerun_replaces(tmp_path):
    _check_job_cycle(str(tmp_path / "store"))


def test_the_same_on_gcs(gcs_bucket):
    _check_job_cycle(f"gs://{gcs_bucket}/store")
    commit = P.commit_uri(f"gs://{gcs_bucket}/store", MODEL, "batch-1")
    assert json.loads(fs.read_text(commit))["rows"] == 40


def test_committed_files_read_with_pyarrow_dataset_and_a_staged_attempt_is_a_hive_dataset(tmp_path):
    root = str(tmp_path / "store")
    job = stage_and_commit(root, "batch-x", 12)
    P.write_table(root, MODEL, P.PREDICTIONS, table("online", 3))
    files = P.log_files(root, MODEL, P.PREDICTIONS, START, END)
    assert len(files) == 3
    assert pds.dataset(files, format="parquet").to_table().num_rows == 15
    staged = pds.dataset(job.staging_uri, format="parquet", partitioning="hive").to_table()
    assert staged.num_rows == 12 and set(staged.column("date").to_pylist()) == {NOW.date().isoformat()}


def test_commit_paths_are_relative_so_a_copied_store_keeps_its_jobs(tmp_path):
    import shutil

    stage_and_commit(str(tmp_path / "a"), "batch-c", 8)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    assert scanned(str(tmp_path / "b")).num_rows == 8


def test_a_bad_commit_object_is_skipped_and_named(tmp_path):
    root = str(tmp_path / "store")
    stage_and_commit(root, "good", 4)
    bad = P.commit_uri(root, MODEL, "bad")
    fs.write_text(bad, json.dumps({"files": [{"path": "../../../etc/passwd", "date": "2026-01-01"}]}))
    fs.write_text(P.commit_uri(root, MODEL, "garbage"), "\x00 not json")
    rep = P.ScanReport()
    assert scanned(root, rep).num_rows == 4
    assert sorted(u.rsplit("/", 1)[-1] for u, _ in rep.corrupt) == sorted(
        [bad.rsplit("/", 1)[-1], P.commit_uri(root, MODEL, "garbage").rsplit("/", 1)[-1]]
    )


def test_job_keys_are_safe_stable_and_distinct():
    assert P.job_key("batch-20261202T000000Z-ab12") == P.job_key("batch-20261202T000000Z-ab12")
    assert P.job_key("a/b") != P.job_key("a_b")
    assert "/" not in P.job_key("../../x") and not P.job_key("../../x").startswith(".")
    with pytest.raises(P.LogError, match="empty"):
        P.job_key(" ")
    job = P.BatchJob("/tmp/s", MODEL, "j")
    with pytest.raises(P.LogError, match="not a staged file"):
        job.commit(["/tmp/s/predictions/taxi-tips/date=2026-01-01/x.parquet"], 1)


def test_abort_removes_only_its_own_attempt(tmp_path):
    root = str(tmp_path / "store")
    stage_and_commit(root, "j", 6)
    again = P.BatchJob(root, MODEL, "j")
    again.write(table("j", 3))
    assert again.abort() == 1
    assert scanned(root).num_rows == 6  # the committed attempt is untouched
    assert fs.list_files(again.staging_uri) == []


@pytest.fixture(scope="module")
def scored_store(tmp_path_factory, trained_model, taxi_split, taxi_spec):
    from kfloop import store

    tmp = tmp_path_factory.mktemp("jobs")
    root = str(tmp / "store")
    ms = store.ModelStore(root)
    version = ms.publish(MODEL, trained_model, {})
    rows = datasets.read_dataset(taxi_split["live"], taxi_spec).head(300)
    src = str(tmp / "rows.csv")
    datasets.write_dataset(rows, src)
    data = str(tmp / "data.csv")
    B.prepare_input(src, data, taxi_spec)
    return root, version, data, tmp


def test_a_failure_after_scoring_leaves_no_rows(scored_store, tmp_path):
    """The output path is a directory: the job fails after every row was scored and staged, and logs none
    (before, the rows were in the log once scored, and the job then exited 1)."""
    root, version, data, _ = scored_store
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(IsADirectoryError):
        B.run_job(
            data,
            root,
            MODEL,
            version,
            str(tmp_path / "parts"),
            [str(tmp_path / "a.parquet"), str(tmp_path / "out.csv")],
            request_id="batch-fails",
            progress=False,
        )
    assert scanned(root).num_rows == 0
    staged = [u for u in fs.list_files(fs.join(root, "predictions")) if u.endswith(".parquet")]
    assert staged == []  # the failed attempt removed its staged files


def test_run_job_commits_every_row_once_and_a_rerun_replaces(scored_store, tmp_path):
    root, version, data, _ = scored_store
    for attempt in range(2):
        result = B.run_job(
            data,
            root,
            MODEL,
            version,
            str(tmp_path / f"parts{attempt}"),
            [str(tmp_path / f"out{attempt}.parquet")],
            request_id="batch-twice",
            chunk_rows=128,
            progress=False,
        )
        assert result.committed["rows"] == 300
    got = scanned(root)
    twice = got.filter(pa.compute.equal(got.column("request_id"), "batch-twice"))
    assert twice.num_rows == 300 and sorted(twice.column("row").to_pylist()) == list(range(300))
