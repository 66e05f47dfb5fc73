"""Replay as live HTTP traffic to the real local KServe server (serving env, subprocess), then the monitor
reads what the server logged and joins the feedback the replay wrote."""

import datetime as dt
import json
import shutil
import time

import pytest

from components.monitor import monitor as M
from kfloop import clock, datasets, fs, predlog, store
from kfloop.app import loop, replay

MODEL = "taxi-tips"


def test_instances_are_json_ready_with_nulls(taxi_split, taxi_spec):
    frame = datasets.read_dataset(taxi_split["live"], taxi_spec).head(50)
    rows = replay.instances(frame, taxi_spec)
    assert len(rows) == 50 and set(rows[0]) == set(taxi_spec.input_names)
    json.dumps(rows)  # plain JSON types only
    assert all(r["pickup_census_tract"] is None for r in rows)  # ~100% null in the data
    assert isinstance(rows[0]["fare"], float) and isinstance(rows[0]["trip_start_hour"], int)


def test_feedback_rejects_bad_labels(tmp_path):
    with pytest.raises(ValueError, match="request 'r1' row 3 must be 0 or 1"):
        replay.write_feedback(str(tmp_path), MODEL, [("r1", 3, 2)])
    assert fs.list_files(str(tmp_path)) == []
    assert replay.write_feedback(str(tmp_path), MODEL, []) is None


def test_select_window_and_sample(taxi_split, taxi_spec):
    frame = datasets.read_dataset(taxi_split["live"], taxi_spec)
    got = replay.select(frame, "2015-03-01", "2015-04-01", spec=taxi_spec)
    t = got[taxi_spec.event_time.name].astype("int64")
    assert len(got) > 100 and t.is_monotonic_increasing
    assert t.min() >= 1425168000 and t.max() < 1427846400
    assert len(replay.select(frame, "2015-01-01", None, spec=taxi_spec, sample=40, seed=1)) == 40


@pytest.mark.slow
def test_replay_through_live_server_is_logged_and_monitored(tmp_path, trained_model, taxi_split, taxi_spec):
    if not shutil.which(loop.serving_python()) and not fs.exists(loop.serving_python()):
        pytest.skip("serving env not built")
    root = str(tmp_path / "store")
    ms = store.ModelStore(root)
    version = ms.publish(MODEL, trained_model, {"data_window": {"start": "", "end": "2015-01-01"}})
    ms.set_alias(MODEL, store.CHAMPION, version, expected=None, reason="test", actor="test")
    server = loop.Server(root, MODEL, tmp_path / "server.log")
    rows = datasets.read_dataset(taxi_split["live"], taxi_spec).head(300)
    try:
        server.start(timeout=180)
        start = clock.utc_now()
        got = replay.replay(rows, server.url, MODEL, spec=taxi_spec, batch_size=64, request_prefix="t")
        time.sleep(server.flush_seconds * 2 + 0.5)  # the server's log flush interval
    finally:
        server.stop()
    end = clock.utc_now() + dt.timedelta(seconds=1)
    assert (got.requests, got.rows, got.model_versions) == (5, 300, {version: 300})
    assert got.feedback_rows == int(rows[taxi_spec.label.name].notna().sum())
    assert got.feedback_requests == 1  # the labels went over HTTP (POST :feedback), the server wrote them
    fb = list(predlog.scan(root, MODEL, predlog.FEEDBACK, start, end + dt.timedelta(seconds=5)))
    assert sum(b.num_rows for b in fb) == got.feedback_rows
    assert all(min(b.column("delay_s").to_pylist()) >= 0 for b in fb)  # arrival delay recorded

    live, ws = M.read_live(root, MODEL, start, end, horizon_days=1, spec=taxi_spec)
    assert ws.bad_total() == 0 and len(live) == 300
    assert set(live["request_id"]) == set(got.request_ids)  # the X-Request-Id header
    assert set(live["model_version"]) == {version}
    assert live[taxi_spec.label.name].notna().sum() == got.feedback_rows
    # what the server logged per row is what was sent, and the probability it answered
    first = live[(live["request_id"] == got.request_ids[0]) & (live["row"] == 0)].iloc[0]
    assert first["probability"] == pytest.approx(got.probabilities[0], abs=1e-6)
    assert first["fare"] == pytest.approx(float(rows["fare"].iloc[0]), rel=1e-6)
    labelled = live[live[taxi_spec.label.name].notna()]
    assert 0.8 < M.auc(labelled[taxi_spec.label.name].astype(int), labelled["probability"]) <= 1.0
