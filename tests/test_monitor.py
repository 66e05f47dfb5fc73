"""The monitor on contract-4 logs of real taxi rows (written by the replay's writer; no server needed).

Key claims: a replay of later months flags drift on ``payment_type`` (which really drifts: cash 74% in 2013,
56% in 2016) and a replay drawn from the training window itself flags nothing (no false alarm); an empty
window or a missing log directory is "no traffic".
"""

import datetime as dt

import pytest

from components.decide import decide as D
from components.monitor import monitor as M
from kfloop import clock, config, datasets, fs
from kfloop.app import replay

MODEL = "taxi-tips"
CFG = config.MonitoringConfig()
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


def _score(frame):
    """A plain, deterministic score (card payments tip): enough for a live AUC that is neither 0 nor 1."""
    card = (frame["payment_type"].fillna("") == "Credit Card").astype(float)
    return (0.15 + 0.7 * card + 0.001 * frame["trip_miles"].fillna(0).clip(0, 50)).tolist()


def _log(store, frame, start, *, labels=True, step_ms=10, version="v0001", request_id=None):
    """Writes ``frame`` as one logged request starting at ``start`` (+ feedback); returns the window end."""
    recs = replay.prediction_records(
        frame,
        _score(frame),
        spec=SPEC,
        model_name=MODEL,
        model_version=version,
        start=start,
        step_ms=step_ms,
        request_id=request_id,
    )
    replay.write_prediction_log(store, MODEL, recs, spec=SPEC)
    if labels:
        arrived = [
            (r["request_id"], r["row"], int(y))
            for r, y in zip(recs, frame[SPEC.label.name], strict=True)
            if y == y
        ]
        replay.write_feedback(store, MODEL, arrived, when=start + dt.timedelta(hours=1))
    return start + dt.timedelta(milliseconds=step_ms * len(frame))


@pytest.fixture(scope="module")
def frames(taxi_split, taxi_spec):
    return {k: datasets.read_dataset(v, taxi_spec) for k, v in taxi_split.items()}


def test_log_format_roundtrip_and_window_bounds(tmp_path, frames):
    import pyarrow.parquet as pq

    from kfloop import predlog

    store = str(tmp_path)
    rows = frames["live"].head(30)
    end = _log(store, rows, T0)
    files = fs.list_files(fs.join(store, "predictions", MODEL))
    assert len(files) == 1 and "/date=2026-11-23/replay-" in files[0] and files[0].endswith(".parquet")
    table = pq.read_table(files[0])
    assert table.schema.equals(predlog.prediction_schema(SPEC))
    assert table.column("timestamp")[0].as_py() == T0
    # [start, end): the row at exactly window_end belongs to the next window
    live, ws = _read_live(store, MODEL, T0, T0 + dt.timedelta(milliseconds=100))
    assert len(live) == 10 and ws.bad_total() == 0
    live, ws = _read_live(store, MODEL, T0, end)
    assert len(live) == 30 and list(live.columns[: len(SPEC.dataset_columns)]) == list(SPEC.dataset_columns)
    # features survive the log: same values (NaN where missing) as the replayed rows
    for f in SPEC.model_features:
        a, b = live[f.name].reset_index(drop=True), rows[f.name].reset_index(drop=True)
        assert a.isna().tolist() == b.isna().tolist(), f.name
        if f.kind == "numeric":
            assert a.dropna().tolist() == b.dropna().astype("float32").astype("float64").tolist(), f.name
        else:
            assert a.dropna().astype(str).tolist() == b.dropna().astype(str).tolist(), f.name
    assert live[SPEC.label.name].astype("float").tolist() == rows[SPEC.label.name].astype("float").tolist()


def test_corrupt_files_are_skipped_counted_and_named(tmp_path, frames):
    store = str(tmp_path)
    end = _log(store, frames["live"].head(5), T0)
    part = fs.join(store, "predictions", MODEL, "date=2026-11-23")
    good = fs.read_bytes(fs.list_files(part)[0])
    fs.write_bytes(fs.join(part, "broken.parquet"), b'{"request_id": "x"\n[1]\n')
    fs.write_bytes(fs.join(part, "truncated.parquet"), good[: len(good) - 40])
    live, ws = _read_live(store, MODEL, T0, end)
    assert len(live) == 5
    assert sorted(u.rsplit("/", 1)[-1] for u, _ in ws.corrupt_files) == [
        "broken.parquet",
        "truncated.parquet",
    ]


@pytest.mark.parametrize("missing", ["no_dir", "empty_window"])
def test_no_traffic(tmp_path, taxi_split, frames, missing):
    store = str(tmp_path)
    if missing == "empty_window":
        _log(store, frames["live"].head(20), T0 - dt.timedelta(days=2))
    s = _monitor(store, MODEL, T0.isoformat(), (T0 + dt.timedelta(hours=1)).isoformat(), taxi_split["train"])
    assert s["status"] == M.NO_TRAFFIC and s["rows"] == 0 and s["drift"] == []
    assert M.read_runs(store, MODEL)[0]["run_id"] == s["run_id"]
    d = D.decide(s, CFG, now=T0)
    assert d["decision"] == D.NO_TRAFFIC and not d["retrain"]


def test_bad_window_is_named(tmp_path, taxi_split):
    with pytest.raises(M.MonitorError, match="window_start 'yesterday'"):
        _monitor(str(tmp_path), MODEL, "yesterday", "2026-11-23", taxi_split["train"])
    with pytest.raises(M.MonitorError, match="not after window_start"):
        _monitor(str(tmp_path), MODEL, "2026-11-23", "2026-11-22", taxi_split["train"])


@pytest.mark.slow
def test_later_months_drift_training_window_does_not(tmp_path, taxi_split, frames):
    store = str(tmp_path)
    # control: 800 rows drawn from the training window itself, logged 12:00..
    control = frames["train"].sample(n=800, random_state=7)
    end_a = _log(store, control, T0)
    # later months: Jan-Jun 2015 as they come, logged after the control
    later = replay.select(frames["live"], "2015-01-01", "2015-07-01", spec=SPEC)
    start_b = end_a + dt.timedelta(seconds=1)
    end_b = _log(store, later, start_b)

    a = _monitor(store, MODEL, T0.isoformat(), end_a.isoformat(), taxi_split["train"], taxi_split["eval"])
    b = _monitor(
        store, MODEL, start_b.isoformat(), end_b.isoformat(), taxi_split["train"], taxi_split["eval"]
    )
    assert (a["status"], a["rows"], b["status"], b["rows"]) == ("ok", 800, "ok", len(later))

    # every feature's score is recorded, below threshold too (a time series, not only alarms)
    scored = {s["feature"] for s in a["drift"] if s["value"] is not None}
    assert scored >= set(SPEC.input_names) - {"pickup_census_tract"}
    # drift mode "off" (pickup_census_tract) is not checked at all, "record" (trip_start_month) never triggers
    assert "pickup_census_tract" not in {s["feature"] for s in a["drift"]}
    (month,) = [s for s in b["drift"] if s["feature"] == "trip_start_month"]
    assert month["ignored"] and month["mode"] == "record"
    thresholds = {s["feature"]: s["threshold"] for s in a["drift"]}
    assert thresholds["fare"] == SPEC.drift_threshold("fare") == 0.15 and thresholds["payment_type"] == 0.075
    assert len(a["skew"]) == len(a["drift"])

    crossed_a = [s["feature"] for s in a["drift"] if s["exceeded"] and not s["ignored"]]
    crossed_b = {s["feature"]: s["value"] for s in b["drift"] if s["exceeded"] and not s["ignored"]}
    assert crossed_a == []
    assert "payment_type" in crossed_b and crossed_b["payment_type"] > CFG.drift_linf
    # live AUC where labels arrived
    assert a["labelled_rows"] == 800 and 0.6 < a["live_auc"] < 1.0

    da, db = D.decide(a, CFG, now=T0), D.decide(b, CFG, now=T0)
    assert da["decision"] == D.NO_RETRAIN
    assert db["decision"] == D.RETRAIN
    assert {r["feature"] for r in db["reasons"]} >= {"payment_type"}

    runs = M.read_runs(store, MODEL)
    assert [r["run_id"] for r in runs] == [a["run_id"], b["run_id"]]
    series = M.drift_series(runs)
    assert [v for _, v in series["payment_type"]] == [
        next(s["value"] for s in r["drift"] if s["feature"] == "payment_type") for r in (a, b)
    ]


def test_rows_that_reach_the_log_after_a_scan_fall_in_the_next_window(tmp_path, taxi_split, frames):
    """Item 7 of issue 23: a run ending "now" closes its window at the watermark, the next run starts there.

    Rows stamped just before the first run's end are written to the log only after that run scanned (a
    predictor's flush interval): without the watermark they fell in no window. The loss is measured: every
    written row is counted by exactly one of the two runs.
    """
    import dataclasses

    store = str(tmp_path)
    cfg = dataclasses.replace(CFG, close_after_seconds=30.0, min_examples=1)
    now = clock.utc_now()
    early, late = frames["live"].iloc[:200], frames["live"].iloc[200:320]
    _log(store, early, now - dt.timedelta(minutes=10), labels=False)  # long flushed
    first_start = now - dt.timedelta(minutes=20)
    first = _monitor(store, MODEL, first_start.isoformat(), now.isoformat(), taxi_split["train"], cfg=cfg)
    # stamped 20 s .. 8 s before the first run's end, published after its scan (a late flush)
    _log(store, late, now - dt.timedelta(seconds=20), labels=False, step_ms=100)
    assert first["requested_window_end"] == clock.iso(now)
    closed = clock.parse(first["window_end"])
    assert now - dt.timedelta(seconds=30) <= closed < now - dt.timedelta(seconds=20)  # the scan's time - 30 s
    window = M.next_window(store, MODEL, (now + dt.timedelta(minutes=5)).isoformat())
    assert window.start == clock.parse(first["window_end"])  # the next window starts where this one closed
    with pytest.raises(M.MonitorError, match="not closed yet.*close_after_seconds"):  # nothing of it closed
        recent = clock.utc_now() - dt.timedelta(seconds=5)
        _monitor(store, MODEL, recent.isoformat(), clock.utc_now().isoformat(), taxi_split["train"], cfg=cfg)
    later = dataclasses.replace(cfg, close_after_seconds=0.0)  # ... the next scheduled run, a while later
    second = _monitor(
        store, MODEL, window.start.isoformat(), window.end.isoformat(), taxi_split["train"], cfg=later
    )
    assert (first["rows"], second["rows"]) == (len(early), len(late))
    assert first["rows"] + second["rows"] == len(early) + len(late)  # nothing lost, nothing counted twice


def test_a_contradicting_later_label_never_replaces_the_first_and_the_run_records_it(
    tmp_path, taxi_split, frames
):
    """Item 2 of issue 23, read side: whoever sends the next label cannot rewrite the live metric."""
    store = str(tmp_path)
    rows = frames["live"].head(400)
    end = _log(store, rows, T0, request_id="r1")  # + the true labels, arrived an hour later
    honest = _monitor(store, MODEL, T0.isoformat(), end.isoformat(), taxi_split["train"], record=False)
    flipped = [("r1", i, 1 - int(y)) for i, y in enumerate(rows[SPEC.label.name]) if y == y]
    replay.write_feedback(store, MODEL, flipped, when=T0 + dt.timedelta(hours=2))  # a later, forged batch
    s = _monitor(store, MODEL, T0.isoformat(), end.isoformat(), taxi_split["train"], record=False)
    assert s["live_auc"] == honest["live_auc"] and s["labelled_rows"] == honest["labelled_rows"] == len(
        flipped
    )
    prov = s["label_provenance"]
    assert prov["conflicts"] == len(flipped) and prov["repeats"] == 0 and prov["feedback_files"] == 2
    assert prov["labelled_rows"] == len(flipped) and prov["feedback_rows"] == 2 * len(flipped)
    assert honest["label_provenance"]["conflicts"] == 0
