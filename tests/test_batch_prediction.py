"""Batch prediction: the pipeline under kfp.local (`kfloop predict`) on real taxi rows and a real model,
its rows in the prediction log and the next monitoring run, and the same probabilities as the online server."""

import dataclasses
import datetime as dt
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.batch_predict import batch_predict as B
from kfloop import config, datasets, fs, predlog, spec, store
from kfloop.app import cli, loop

MODEL = "taxi-tips"


@pytest.fixture(scope="module")
def batch_store(tmp_path_factory, trained_model):
    root = str(tmp_path_factory.mktemp("batch") / "store")
    ms = store.ModelStore(root)
    version = ms.publish(MODEL, trained_model, {"data_window": {"start": "", "end": "2015-01-01"}})
    ms.set_alias(MODEL, store.CHAMPION, version, expected=None, reason="test", actor="test")
    return root, version


@pytest.fixture(scope="module")
def rows(taxi_split, taxi_spec):
    """600 real live rows, as a Dataset CSV with its label (the label is dropped by the pipeline)."""
    return datasets.read_dataset(taxi_split["live"], taxi_spec).head(600)


def test_chunks_encode_like_the_dataset_encoder(rows, tmp_path, taxi_spec):
    path = str(tmp_path / "in.csv")
    assert B.prepare_input(_write(rows, tmp_path), path, taxi_spec) == len(rows)
    chunks = list(B.read_chunks(path, chunk_rows=250, spec=taxi_spec))
    assert [first for first, _ in chunks] == [0, 250, 500]
    got = {name: np.concatenate([c[name] for _, c in chunks]) for name in chunks[0][1]}
    want = datasets.encode(rows, taxi_spec)
    for f in taxi_spec.model_features:
        if f.dtype == "float32":
            np.testing.assert_array_equal(got[f.name], want[f.name])  # NaN == NaN here
        else:
            assert got[f.name].tolist() == want[f.name].tolist(), f.name


def _write(frame, tmp_path, name="in.csv") -> str:
    path = str(tmp_path / name)
    datasets.write_dataset(frame, path)
    return path


def _predict(tmp_path, root, src, out, *extra):
    argv = ["predict", "--input", src, "--output", out, "--store-uri", root, "--workdir", str(tmp_path / "w")]
    return cli.main([*argv, *extra])


@pytest.mark.slow
def test_pipeline_scores_logs_and_the_next_monitoring_run_sees_the_batch(
    batch_store, rows, tmp_path, taxi_split, trained_model, capsys, taxi_spec
):
    from components.monitor import monitor as M

    root, version = batch_store
    start = dt.datetime.now(dt.UTC)
    out = str(tmp_path / "out.csv")
    assert _predict(tmp_path, root, _write(rows, tmp_path), out, "--chunk-rows", "256") == 0
    printed = capsys.readouterr().out
    assert (
        f"batch predict: scored rows 0..{len(rows) - 1}" in printed  # one group of 3 chunks
        and f"scored {len(rows)} rows with {version}" in printed
    )
    end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)

    got = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert len(got) == len(rows) and got["row"].tolist() == list(range(len(rows)))
    assert set(got["model_version"]) == {version} and set(got["source"]) == {"batch"}
    assert got["request_id"].nunique() == 1 and got["request_id"][0].startswith("batch-")
    assert got["fare"].astype("float32").tolist() == rows["fare"].astype("float32").tolist()
    # the probabilities are the model's own on these rows (an in-process call of the same signature)
    direct = B.SavedModel(trained_model)(datasets.encode(rows, taxi_spec))
    np.testing.assert_allclose(got["probability"].to_numpy(np.float32), direct, rtol=0, atol=1e-6)

    logged = pa_concat(predlog.scan(root, MODEL, predlog.PREDICTIONS, start, end))
    assert logged.num_rows == len(rows)
    assert set(logged.column("source").to_pylist()) == {"batch"}
    assert set(logged.column("model_version").to_pylist()) == {version}

    committed = dataclasses.replace(
        config.MonitoringConfig(), close_after_seconds=0.0
    )  # the job has committed
    summary = M.monitor(
        root,
        MODEL,
        start.isoformat(),
        end.isoformat(),
        taxi_split["train"],
        spec=taxi_spec,
        record=False,
        cfg=committed,
    )
    assert summary["rows"] == len(rows)
    assert summary["model_versions"] == {version: len(rows)}


def pa_concat(batches):
    import pyarrow as pa

    batches = list(batches)
    return pa.Table.from_batches(batches) if batches else pa.table({})


@pytest.mark.slow
def test_rows_with_anomalies_are_blocked_and_nothing_is_logged(
    batch_store, rows, tmp_path, capsys, taxi_spec
):
    root, _ = batch_store
    bad = rows.drop(columns=[taxi_spec.label.name]).astype(object)
    bad.loc[bad.index[:5], "trip_start_hour"] = 25
    before = set(fs.list_files(fs.join(root, "predictions")))
    out = str(tmp_path / "out.csv")
    assert _predict(tmp_path, root, _write(bad, tmp_path), out) == 3
    cap = capsys.readouterr()
    assert "trip_start_hour: INT_TYPE_BIG_INT" in cap.err and "BLOCKED" in cap.out
    assert set(fs.list_files(fs.join(root, "predictions"))) == before
    assert not fs.exists(out)


def test_unknown_model_ref_is_one_line(batch_store, rows, tmp_path):
    root, _ = batch_store
    with pytest.raises(SystemExit, match=r"kfloop predict: model ref 'v0042'.*v0042"):
        _predict(tmp_path, root, _write(rows, tmp_path), str(tmp_path / "o.csv"), "--model-ref", "v0042")
    with pytest.raises(SystemExit, match="does not exist"):
        _predict(tmp_path, root, str(tmp_path / "nope.csv"), str(tmp_path / "o.csv"))


@pytest.mark.slow
def test_batch_output_equals_the_online_server_on_the_same_rows(batch_store, rows, tmp_path, taxi_spec):
    """Cross-env check: the pipeline env scores in batch, the serving env (kserve, its own TF) online."""
    import urllib.request

    if not shutil.which(loop.serving_python()) and not fs.exists(loop.serving_python()):
        pytest.skip("serving env not built")
    root, version = batch_store
    prepared = str(tmp_path / "prep.csv")
    B.prepare_input(_write(rows, tmp_path), prepared, taxi_spec)
    parts = str(tmp_path / "parts")
    B.score(prepared, root, MODEL, version, parts, log_root=None, chunk_rows=200, progress=False)
    out = str(tmp_path / "batch.parquet")
    B.finish_output(parts, out)
    batch = pd.read_parquet(out)

    from kfloop.app import replay

    server = loop.Server(root, MODEL, tmp_path / "server.log", log=False)
    online: list[float] = []
    try:
        server.start(timeout=180)
        instances = replay.instances(rows, taxi_spec)
        for lo in range(0, len(instances), 100):
            body = json.dumps({"instances": instances[lo : lo + 100]}).encode()
            req = urllib.request.Request(
                f"{server.url}/v1/models/{MODEL}:predict", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                data = json.loads(r.read())
            assert data["model_version"] == version
            online.extend(data["predictions"])
    finally:
        server.stop()
    online_arr = np.asarray(online, dtype=np.float32)
    batch_arr = batch["probability"].to_numpy(np.float32)
    assert len(online_arr) == len(batch_arr) == len(rows)
    # Two TF versions (2.16 here, the serving image's own) on the same SavedModel and the same float32
    # inputs: equal up to float32 rounding of the last op.
    np.testing.assert_allclose(batch_arr, online_arr, rtol=0, atol=2e-6)


def test_byte_ranges_cover_every_row_once_with_their_row_numbers(rows, tmp_path, taxi_spec):
    path = str(tmp_path / "in.csv")
    B.prepare_input(_write(rows, tmp_path), path, taxi_spec)
    ranges = B.split_ranges(path, range_bytes=10_000)
    assert len(ranges) > 3 and ranges[0][2] == 0
    got = [
        (first, cols)
        for r in ranges
        for first, cols in B.read_range((path, *r), chunk_rows=50, spec=taxi_spec)
    ]
    firsts = [first for first, _ in got]
    assert firsts == sorted(firsts) and firsts[0] == 0
    fares = np.concatenate([c["fare"] for _, c in got])
    whole = np.concatenate([c["fare"] for _, c in B.read_chunks(path, chunk_rows=50, spec=taxi_spec)])
    np.testing.assert_array_equal(fares, whole)
    for (first, cols), nxt in zip(got, [*firsts[1:], len(rows)], strict=True):
        assert first + len(cols["fare"]) == nxt  # each chunk's row numbers continue the previous one's
    # a quoted field could hold a newline: such a file is read as one range
    quoted = rows.copy()
    quoted.loc[quoted.index[0], "company"] = "A, B and C"
    qpath = str(tmp_path / "q.csv")
    B.prepare_input(_write(quoted, tmp_path, "q_in.csv"), qpath, taxi_spec)
    assert len(B.split_ranges(qpath, range_bytes=10_000)) == 1


def test_raw_extract_input_is_cleaned_and_missing_features_are_named(taxi_csv, tmp_path, taxi_spec):
    raw = pd.read_csv(taxi_csv, dtype=str, keep_default_na=False).head(200)
    raw.to_csv(tmp_path / "raw.csv", index=False)
    out = str(tmp_path / "prep.csv")
    assert B.prepare_input(str(tmp_path / "raw.csv"), out, taxi_spec) == 200
    prepared = datasets.read_dataset(out, taxi_spec)
    assert taxi_spec.label.name not in prepared.columns and "tips" not in prepared.columns
    assert prepared["fare"].tolist() == raw["fare"].astype(float).tolist()
    raw.drop(columns=["tips", "company"]).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(B.BatchPredictError, match="missing model feature column.*company"):
        B.prepare_input(str(tmp_path / "x.csv"), out, taxi_spec)


def test_input_of_another_spec_is_read_by_that_spec(tmp_path):
    """No taxi column anywhere: the synthetic spec's raw form (ISO time, ``NA``, ``true``/``false``, a
    ``yes``/``no`` label, an excluded id) becomes its Dataset form, with or without the time column, and
    the chunks are encoded by that spec (its sentinels for missing values)."""
    from tests import synthetic

    s = spec.loads(synthetic.SPEC_YAML)
    raw = pd.read_csv(io.StringIO(synthetic.csv_text(60)), dtype=str, keep_default_na=False)
    raw.to_csv(tmp_path / "raw.csv", index=False)
    out = str(tmp_path / "prep.csv")
    assert B.prepare_input(str(tmp_path / "raw.csv"), out, s) == 60
    prepared = datasets.read_dataset(out, s)
    assert list(prepared.columns) == ["when", *s.input_names]  # no id, no label
    seconds = [int(dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()) for t in raw["when"]]
    assert prepared["when"].tolist() == seconds
    member = [{"true": 1, "false": 0}.get(v, -1) for v in raw["member"]]
    assert prepared["member"].fillna(-1).tolist() == member
    [(first, cols)] = list(B.read_chunks(out, chunk_rows=100, spec=s))
    assert first == 0 and list(cols) == list(s.input_names)
    assert cols["member"].tolist() == member
    assert np.isnan(cols["age"]).tolist() == (raw["age"] == "NA").tolist()
    assert cols["city"].tolist() == raw["city"].tolist()  # "" = missing, as the spec's sentinel
    # serving data without its time column: the features alone
    raw.drop(columns=["when"]).to_csv(tmp_path / "no_time.csv", index=False)
    assert B.prepare_input(str(tmp_path / "no_time.csv"), out, s) == 60
    assert list(datasets.read_dataset(out, s).columns) == list(s.input_names)
    raw.drop(columns=["plan"]).to_csv(tmp_path / "no_plan.csv", index=False)
    with pytest.raises(B.BatchPredictError, match="missing model feature column.*plan"):
        B.prepare_input(str(tmp_path / "no_plan.csv"), out, s)
    bad = raw.copy()
    bad.loc[3, "age"] = "old"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(B.BlockedInput, match="'age'.*line 5"):
        B.prepare_input(str(tmp_path / "bad.csv"), out, s)


def test_a_read_error_reaches_the_consumer(rows, tmp_path, taxi_spec):
    import pyarrow as pa

    bad = rows.drop(columns=[taxi_spec.label.name]).astype(object)
    bad.loc[bad.index[-1], "fare"] = "twelve"  # in the last chunk
    path = _write(bad, tmp_path)
    with pytest.raises(pa.ArrowInvalid, match="invalid value .twelve."):
        list(B.read_chunks(path, chunk_rows=100, spec=taxi_spec))


def test_gcs_input_store_log_and_output(gcs_bucket, rows, tmp_path, trained_model, taxi_spec):
    """The gs:// paths on a real fake-gcs-server: input, model store, prediction log and output."""
    root = f"gs://{gcs_bucket}/store"
    ms = store.ModelStore(root)
    version = ms.publish(MODEL, trained_model, {})
    src = f"gs://{gcs_bucket}/in/rows.csv"
    fs.write_bytes(src, Path(_write(rows, tmp_path)).read_bytes())
    data = f"gs://{gcs_bucket}/work/data.csv"
    assert B.prepare_input(src, data, taxi_spec) == len(rows)
    parts = f"gs://{gcs_bucket}/work/parts"
    result = B.score(data, root, MODEL, version, parts, log_root=root, chunk_rows=256, progress=False)
    # three consecutive chunks of one bundle: one log file (and one output part)
    assert (result.rows, result.chunks, result.log_files) == (len(rows), 3, 1)
    out = f"gs://{gcs_bucket}/out/predictions.csv"
    assert B.finish_output(parts, out) == len(rows)
    got = pd.read_csv(io.BytesIO(fs.read_bytes(out)))
    assert got["row"].tolist() == list(range(len(rows))) and set(got["model_version"]) == {version}
    direct = B.SavedModel(trained_model)(datasets.encode(rows, taxi_spec))
    np.testing.assert_allclose(got["probability"].to_numpy(np.float32), direct, rtol=0, atol=1e-6)
    logged = [u for u in fs.list_files(fs.join(root, "predictions")) if u.endswith(".parquet")]
    assert len(logged) == 1 and len(B.part_uris(parts)) == 1


def test_bad_command_lines_are_one_line(batch_store, rows, tmp_path):
    root, _ = batch_store
    src = _write(rows, tmp_path)
    with pytest.raises(SystemExit, match=r"--direct_num_workers must be an integer"):
        _predict(tmp_path, root, src, str(tmp_path / "o.csv"), "--beam-arg=--direct_num_workers=-1")
    with pytest.raises(SystemExit, match="is a directory"):
        _predict(tmp_path, root, str(tmp_path), str(tmp_path / "o.csv"))
    with pytest.raises(SystemExit, match="--chunk-rows must be >= 1"):
        _predict(tmp_path, root, src, str(tmp_path / "o.csv"), "--chunk-rows", "0")


def test_chunk_coder_round_trips_and_sizes_from_the_arrays(rows, tmp_path, taxi_spec):
    """Beam estimates element sizes with the coder: ours must not pickle, and must still carry the chunk."""
    from apache_beam import coders

    path = str(tmp_path / "in.csv")
    B.prepare_input(_write(rows, tmp_path), path, taxi_spec)
    chunk = next(iter(B.read_chunks(path, chunk_rows=100, spec=taxi_spec)))
    B.register_chunk_coder()
    coder = coders.registry.get_coder(B.Chunk)
    back = coder.decode(coder.encode(chunk))
    assert (
        isinstance(back, B.Chunk)
        and back[0] == chunk[0]
        and back.strings["company"].equals(chunk.strings["company"])
    )
    np.testing.assert_array_equal(back[1]["fare"], chunk[1]["fare"])
    want = sum(col.nbytes for col in chunk[1].values())
    assert coder.estimate_size(chunk) == want
    scored = B.ScoredChunk(chunk, np.zeros(100, dtype=np.float32))
    assert coders.registry.get_coder(B.ScoredChunk).estimate_size(scored) == want + 400


def test_read_ranges_reads_ahead_in_order_and_stops_its_reader(rows, tmp_path, taxi_spec):
    import threading

    path = str(tmp_path / "in.csv")
    B.prepare_input(_write(rows, tmp_path), path, taxi_spec)
    ranges = B.split_ranges(path, range_bytes=10_000)
    want = [
        (first, cols)
        for r in ranges
        for first, cols in B.read_range((path, *r), chunk_rows=50, spec=taxi_spec)
    ]
    got = list(B.read_ranges((path, ranges), chunk_rows=50, spec=taxi_spec))
    assert [first for first, _ in got] == [first for first, _ in want]
    # ranges without newline counts: read in order, numbered as they are read (the same numbers)
    uncounted = B.split_ranges(path, range_bytes=10_000, count_rows=False)
    assert [r[:2] for r in uncounted] == [r[:2] for r in ranges] and {r[2] for r in uncounted} == {None}
    assert [first for first, _ in B.read_ranges((path, uncounted), chunk_rows=50, spec=taxi_spec)] == [
        f for f, _ in want
    ]
    for (_, a), (_, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a["fare"], b["fare"])
        assert a["company"].tolist() == b["company"].tolist()
    # a consumer that stops early stops the reader thread too (no thread left parsing the rest)
    it = B.read_ranges((path, ranges), chunk_rows=50, spec=taxi_spec)
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "kfloop-batch-read"]


def test_read_ranges_raises_a_read_error_at_its_chunk(rows, tmp_path, taxi_spec):
    import pyarrow as pa

    bad = rows.drop(columns=[taxi_spec.label.name]).astype(object)
    bad.loc[bad.index[-1], "fare"] = "twelve"
    path = _write(bad, tmp_path)
    ranges = B.split_ranges(path, range_bytes=10_000)
    seen = []
    with pytest.raises(pa.ArrowInvalid, match="invalid value .twelve."):
        for first, _ in B.read_ranges((path, ranges), chunk_rows=50, spec=taxi_spec):
            seen.append(first)
    assert seen and seen[0] == 0  # the ranges before the bad one were scored


def test_in_process_runner_is_the_default_direct_runner_only():
    from apache_beam.options.pipeline_options import PipelineOptions

    assert B.in_process_runner(PipelineOptions([]))
    assert B.in_process_runner(PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"]))
    assert not B.in_process_runner(PipelineOptions(["--direct_num_workers=2"]))
    assert not B.in_process_runner(PipelineOptions(["--direct_running_mode=multi_processing"]))
    assert not B.in_process_runner(PipelineOptions(["--runner=DataflowRunner"]))


def test_a_failed_write_fails_the_job(batch_store, rows, tmp_path, taxi_spec):
    root, version = batch_store
    path = str(tmp_path / "in.csv")
    B.prepare_input(_write(rows, tmp_path), path, taxi_spec)
    blocker = tmp_path / "parts"
    blocker.write_text("a file where the parts folder should be")
    with pytest.raises(Exception, match="parts"):
        B.score(path, root, MODEL, version, str(blocker), log_root=None, chunk_rows=256, progress=False)


def test_consecutive_chunks_share_a_log_file_and_a_gap_ends_it(monkeypatch):
    """The write step groups chunks whose rows follow each other, up to LOG_FILE_ROWS rows per file."""

    class Recorder:
        def __init__(self):
            self.groups, self.counted = [], []

        def write(self, group):
            self.groups.append([r.example[0] for r in group])
            return group[0].example[0], sum(B.chunk_len(r.example) for r in group), 1, len(group)

        def count(self, *done):
            self.counted.append(done)

    def scored(first, n=100):
        chunk = B.Chunk(first, {"fare": np.zeros(n, dtype=np.float32)}, {})
        return B.ScoredChunk(chunk, np.zeros(n, dtype=np.float32))

    monkeypatch.setattr("components.batch_predict.writing.LOG_FILE_ROWS", 250)
    rec = Recorder()
    fn = B._write_behind_class()(rec)
    fn.setup()
    fn.start_bundle()
    for first in (0, 100, 200, 300, 500, 600):  # 400 never comes: a gap
        fn.process(scored(first))
    fn.finish_bundle()
    fn.teardown()
    assert rec.groups == [[0, 100, 200], [300], [500, 600]]
    assert rec.counted == [(0, 300, 1, 3), (300, 100, 1, 1), (500, 200, 1, 2)]


def test_a_job_writes_one_log_file_per_group_of_rows(batch_store, rows, tmp_path, monkeypatch, taxi_spec):
    root, version = batch_store
    path = str(tmp_path / "in.csv")
    B.prepare_input(_write(rows, tmp_path), path, taxi_spec)
    monkeypatch.setattr("components.batch_predict.writing.LOG_FILE_ROWS", 250)
    log = str(tmp_path / "log")
    parts = str(tmp_path / "parts")
    result = B.score(path, root, MODEL, version, parts, log_root=log, chunk_rows=100, progress=False)
    assert (result.rows, result.chunks, result.log_files) == (600, 6, 2)
    logged = sorted(u for u in fs.list_files(fs.join(log, "predictions")) if u.endswith(".parquet"))
    assert [predlog.read_file(u).num_rows for u in logged] == [300, 300]
    out = str(tmp_path / "out.parquet")
    assert B.finish_output(parts, out) == 600
    assert predlog.read_file(out).column("row").to_pylist() == list(range(600))
