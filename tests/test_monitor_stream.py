"""Monitoring on the Parquet log: bad records skipped and counted by reason, corrupt files named, windows
over two dates and two versions, the stored reference, and a log on gs:// (fake-gcs-server)."""

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.monitor import monitor as M
from components.monitor import stream
from kfloop import datasets, fs, predlog
from kfloop import reference as R
from kfloop.app import replay
from kfloop.predlog import write as predlog_write

MODEL = "taxi-tips"
T0 = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
SPEC = None  # the taxi spec (set from the taxi_spec fixture)


@pytest.fixture(autouse=True)
def _taxi(taxi_spec):
    global SPEC
    SPEC = taxi_spec


def _monitor(*args, **kwargs):
    return M.monitor(*args, spec=SPEC, **kwargs)


def _read_live(*args, **kwargs):
    return M.read_live(*args, spec=SPEC, **kwargs)


def _checked() -> int:
    """Features the monitor scores (drift mode ``off`` ones are skipped)."""
    return sum(f.drift_mode != "off" for f in SPEC.model_features)


@pytest.fixture(scope="module")
def frames(taxi_split, taxi_spec):
    return {k: datasets.read_dataset(v, taxi_spec) for k, v in taxi_split.items()}


@pytest.fixture(scope="module")
def ref_dir(taxi_split, taxi_spec, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("reference"))
    R.build_reference(taxi_split["train"], taxi_split["eval"], out, spec=taxi_spec)
    return out


def _table(frame, start, version="v0001", rid="r", probs=None):
    cols = datasets.encode(frame, SPEC)
    n = len(frame)
    probs = np.linspace(0.05, 0.95, n) if probs is None else probs
    return predlog.prediction_table(
        rid,
        start.timestamp() + np.arange(n) * 0.01,
        version,
        cols,
        probs,
        schema=predlog.prediction_schema(SPEC),
    )


def _labels(store, table, when):
    y = [
        (r, i, int(v))
        for r, i, v in zip(
            table.column("request_id").to_pylist(),
            table.column("row").to_pylist(),
            (np.asarray(table.column("probability")) > 0.5).astype(int),
            strict=True,
        )
    ]
    replay.write_feedback(store, MODEL, y, when=when)
    return y


def test_bad_records_are_skipped_and_counted_with_their_reason(tmp_path, frames, ref_dir):
    store = str(tmp_path)
    good = _table(frames["live"].head(600), T0, rid="good")
    predlog.write_table(store, MODEL, "predictions", good)
    _labels(store, good, T0 + dt.timedelta(hours=1))
    bad = _table(frames["live"].iloc[600:606], T0, rid="bad").to_pylist()
    bad[0]["probability"] = float("nan")
    bad[1]["probability"] = 1.7
    bad[2]["fare"] = float("inf")
    bad[3]["request_id"] = ""
    bad[4]["model_version"] = ""
    bad[5]["request_id"], bad[5]["row"] = "good", 3  # a second prediction for an existing key
    predlog.write_table(
        store, MODEL, "predictions", pa.Table.from_pylist(bad, schema=predlog.prediction_schema(SPEC))
    )
    part = tmp_path / "predictions" / MODEL / "date=2026-11-23"
    # Timestamps outside the file's date partition (one absurd, one a day later): skipped, counted.
    odd = _table(frames["live"].head(2), T0, rid="odd").to_pylist()
    odd[0]["timestamp"] = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    odd[1]["timestamp"] = T0 + dt.timedelta(days=1)
    pq.write_table(pa.Table.from_pylist(odd, schema=predlog.prediction_schema(SPEC)), part / "odd.parquet")
    # Wrong-typed feature ("noon"), invalid UTF-8 text, truncated file: whole file skipped and named.
    noon = _table(frames["live"].head(3), T0, rid="noon").to_pandas()
    noon["trip_start_hour"] = "noon"
    pq.write_table(pa.Table.from_pandas(noon, preserve_index=False), part / "noon.parquet")
    utf = pa.Table.from_pylist(_table(frames["live"].head(2), T0, rid="utf").to_pylist())
    utf = utf.set_column(utf.schema.get_field_index("company"), "company", pa.array([b"\xff\xfe", b"ok"]))
    pq.write_table(utf, part / "utf8.parquet")
    data = (part / "odd.parquet").read_bytes()
    (part / "cut.parquet").write_bytes(data[: len(data) // 3])
    # Feedback: a label that is not 0/1, and a later, contradicting label of a good row (the first label
    # stands, the conflict is counted: issue 23's label policy; it used to win as a "correction").
    fb = predlog.feedback_table(["good", "good"], [0, 1], [1, 1], (T0 + dt.timedelta(hours=2)).timestamp())
    fb = fb.set_column(fb.schema.get_field_index("label"), "label", pa.array([5, 1], pa.int8()))
    predlog.write_table(store, MODEL, "feedback", fb)

    end = T0 + dt.timedelta(hours=1)
    s = _monitor(store, MODEL, T0.isoformat(), end.isoformat(), ref_dir, record=False)
    assert s["rows"] == 600 and s["status"] == M.OK
    assert s["bad_reasons"]["predictions"] == {
        "probability not a number in [0, 1]": 2,
        "fare not finite": 1,
        "empty request_id": 1,
        "empty model_version": 1,
        "duplicate (request_id, row)": 1,
        "timestamp outside its partition date=2026-11-23": 2,
    }
    assert s["bad_reasons"]["feedback"] == {"label not 0 or 1": 1}
    named = sorted(c["uri"].rsplit("/", 1)[-1] for c in s["corrupt_files"])
    assert named == ["cut.parquet", "noon.parquet", "utf8.parquet"]
    assert all(c["reason"] for c in s["corrupt_files"]) and s["bad_records"] == 8 + 1 + 3
    # labels = (p > 0.5), a perfect ranking: the contradicting later label of row 1 (p = 0.05) is not used
    assert s["labelled_rows"] == 600 and s["live_auc"] == 1.0
    assert s["label_provenance"]["conflicts"] == 1 and s["label_provenance"]["feedback_files"] == 2
    assert {a["feature"] for a in s["anomalies"]}.isdisjoint({"trip_start_hour"})


def test_window_over_two_dates_and_two_versions(tmp_path, frames):
    store = str(tmp_path)
    late = T0.replace(hour=23, minute=59, second=58)
    a = _table(frames["live"].head(300), late, version="v0001", rid="a")  # 23:59:58 .. 00:00:01
    b = _table(frames["live"].iloc[300:500], late + dt.timedelta(seconds=5), version="v0002", rid="b")
    uris = predlog.write_table(store, MODEL, "predictions", pa.concat_tables([a, b]))
    assert sorted({u.split("/")[-2] for u in uris}) == ["date=2026-11-23", "date=2026-11-24"]
    _labels(store, a, late + dt.timedelta(days=1))
    live, ws = _read_live(store, MODEL, T0, T0 + dt.timedelta(days=1, hours=1), horizon_days=2)
    assert ws.model_versions == {"v0001": 300, "v0002": 200} and len(live) == 500
    assert ws.labelled_rows == 300 and ws.files == 2
    assert live["timestamp" if "timestamp" in live else SPEC.event_time.name].is_monotonic_increasing
    # labels joined on (request_id, row): each row gets its own
    got = live[live.request_id == "a"].sort_values("row")
    want = (np.asarray(a.column("probability")) > 0.5).astype(int)
    assert got[SPEC.label.name].astype(int).tolist() == want.tolist()
    # A window inside the second day sees only its rows.
    second, _ = _read_live(store, MODEL, T0 + dt.timedelta(hours=12), T0 + dt.timedelta(days=1))
    assert len(second) == 100 + 200 and set(second.model_version) == {"v0001", "v0002"}


def test_histogram_auc_matches_exact_auc(tmp_path, frames):
    store = str(tmp_path)
    rng = np.random.default_rng(3)
    frame = frames["live"].head(2000)
    probs = rng.random(len(frame)).astype(np.float32)
    t = _table(frame, T0, probs=probs)
    predlog.write_table(store, MODEL, "predictions", t)
    y = (rng.random(len(frame)) < probs).astype(int)
    replay.write_feedback(store, MODEL, [("r", i, int(v)) for i, v in enumerate(y)], when=T0)
    live, ws = _read_live(store, MODEL, T0, T0 + dt.timedelta(hours=1))
    exact = M.auc(live[SPEC.label.name].astype(int), live["probability"])
    assert ws.live_auc() == pytest.approx(exact, abs=1e-5)


def test_bucketed_join_holds_one_bucket_at_a_time(tmp_path, frames, monkeypatch):
    """The pass-2 tables are about rows / buckets: memory does not hold the whole window."""
    store = str(tmp_path)
    t = _table(frames["live"].head(3000), T0, rid="x")
    predlog.write_table(store, MODEL, "predictions", t)
    sizes = []
    stream.process_window(
        store,
        MODEL,
        T0,
        T0 + dt.timedelta(hours=1),
        T0 + dt.timedelta(days=1),
        spec=SPEC,
        bounds={},
        stage_dir=str(tmp_path / "stage"),
        buckets=16,
        on_rows=lambda tb, lab: sizes.append(tb.num_rows),
    )
    assert sum(sizes) == 3000 and len(sizes) == 16 and max(sizes) < 3000 / 16 * 2


def test_push_stores_the_reference_and_the_monitor_uses_it_without_the_source(tmp_path, ref_dir, monkeypatch):
    from components.push.push import push
    from kfloop.store import ModelStore
    from tests.test_push import blessing_file
    from tests.test_store import make_model_dir

    root = str(tmp_path / "store")
    r = push(
        str(make_model_dir(tmp_path)),
        blessing_file(tmp_path / "b.json", True),
        root,
        MODEL,
        {"data_window": {"start": "", "end": "2015-01-01"}},
        reference_dir=ref_dir,
    )
    assert r.alias == "champion"
    stored = R.reference_uri(root, MODEL, r.version)
    assert stored.endswith(f"/models/{MODEL}/{r.version}/reference")
    assert json.loads(fs.read_text(fs.join(stored, "reference.json")))["train_rows"] > 1000

    import kfloop.ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "ingest", lambda *a, **k: pytest.fail("re-ingested the source"))
    ref = R.champion_reference(root, MODEL, "", str(tmp_path / "work"), spec=SPEC)
    assert ref.version == r.version and ref.eval_stats is not None
    assert set(ref.bounds) == {f.name for f in SPEC.features_of("numeric")}
    assert ModelStore(root).resolve(MODEL) == r.version
    # A version without a stored reference and no source: a clear error naming it.
    push(
        str(make_model_dir(tmp_path, "b")),
        blessing_file(tmp_path / "c.json", True),
        str(tmp_path / "s2"),
        MODEL,
        {"data_window": {"start": "", "end": "2015-01-01"}},
    )
    with pytest.raises(R.ReferenceError_, match="v0001: no stored reference"):
        R.champion_reference(str(tmp_path / "s2"), MODEL, "", str(tmp_path / "work2"), spec=SPEC)


def test_monitoring_reads_the_parquet_log_from_gcs(gcs_bucket, frames, ref_dir):
    store = f"gs://{gcs_bucket}/kfloop"
    t = _table(frames["live"].head(700), T0, rid="g")
    (uri,) = predlog.write_table(store, MODEL, "predictions", t)
    assert uri.startswith(f"gs://{gcs_bucket}/kfloop/predictions/{MODEL}/date=2026-11-23/")
    _labels(store, t, T0 + dt.timedelta(minutes=30))
    fs.write_bytes(fs.join(store, "predictions", MODEL, "date=2026-11-23", "junk.parquet"), b"PAR1 nope")
    gref = f"gs://{gcs_bucket}/ref"
    for name in R.FILES:
        fs.write_bytes(fs.join(gref, name), fs.read_bytes(fs.join(ref_dir, name)))
    s = _monitor(store, MODEL, T0.isoformat(), (T0 + dt.timedelta(hours=1)).isoformat(), gref)
    assert (s["status"], s["rows"], s["labelled_rows"]) == (M.OK, 700, 700)
    assert [c["uri"].rsplit("/", 1)[-1] for c in s["corrupt_files"]] == ["junk.parquet"]
    assert len(s["drift"]) == _checked() and s["record_uri"].startswith("gs://")
    assert M.read_runs(store, MODEL)[0]["run_id"] == s["run_id"]
    # the atomic publish never overwrites: a second writer's file with the same name is refused
    with pytest.raises(Exception, match="412|Precondition|conditionNotMet"):
        predlog_write._publish(uri, b"x")


@pytest.mark.slow
def test_monitor_op_under_kfp_local_reads_the_parquet_log_from_gcs(gcs_bucket, tmp_path, frames, ref_dir):
    """The monitoring component, as the cluster runs it: store, log and stored reference on gs://."""
    from kfp import dsl

    from components.monitor.component import monitor_op
    from kfloop import contract, store
    from kfloop import spec as kspec
    from kfloop.app import local
    from tests.test_store import make_model_dir

    root = f"gs://{gcs_bucket}/kfloop"
    ms = store.ModelStore(root)
    model_dir = make_model_dir(tmp_path)
    (model_dir / contract.SPEC_FILE).write_text(kspec.dump(SPEC))  # the monitor reads the version's spec
    version = ms.publish(MODEL, str(model_dir), {"data_window": {"start": "", "end": "2015-01-01"}})
    R.store_reference(root, MODEL, version, ref_dir)
    ms.set_alias(MODEL, store.CHAMPION, version, expected=None, reason="test", actor="test")
    t = _table(frames["live"].head(700), T0, rid="k")
    predlog.write_table(root, MODEL, "predictions", t)
    _labels(root, t, T0 + dt.timedelta(minutes=5))

    @dsl.pipeline(name="monitor-gcs")
    def pipe(store_uri: str, window_start: str, window_end: str):
        monitor_op(
            store_uri=store_uri,
            model_name=MODEL,
            source="",
            window_start=window_start,
            window_end=window_end,
            reference_train="",
            reference_eval="",
            min_examples=500,
            beam_pipeline_args=["--direct_running_mode=in_memory"],
            now="",
            scheduled_time="",
        )

    run = local.run_pipeline(
        pipe,
        tmp_path / "runs",
        store_uri=root,
        window_start=T0.isoformat(),
        window_end=(T0 + dt.timedelta(hours=1)).isoformat(),
    )
    s = json.loads(run.output("monitor-op", "summary").read_text())
    assert (s["status"], s["rows"], s["labelled_rows"], s["champion_version"]) == ("ok", 700, 700, version)
    assert s["reference"]["uri"] == R.reference_uri(root, MODEL, version)
    assert M.read_runs(root, MODEL)[0]["run_id"] == s["run_id"]
