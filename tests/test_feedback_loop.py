"""Ground truth over HTTP into the loop: labels sent to the live server's :feedback endpoint for real request
ids are joined into the monitor's live AUC, and labels that arrive after their window was monitored are
counted by a backfill of that window."""

import dataclasses
import datetime as dt
import http.client
import shutil
import time
import urllib.parse

import pytest

from components.monitor import backfill
from components.monitor import monitor as M
from kfloop import clock, config, datasets, fs, store
from kfloop.app import loop, replay

MODEL = "taxi-tips"
#: The test waits for the server's log flush itself before it monitors a window that ends "now".
FLUSHED = dataclasses.replace(config.MonitoringConfig(), close_after_seconds=0.0)


@pytest.mark.slow
def test_http_feedback_joins_live_auc_and_late_labels_backfill(
    tmp_path, trained_model, taxi_split, taxi_spec
):
    if not shutil.which(loop.serving_python()) and not fs.exists(loop.serving_python()):
        pytest.skip("serving env not built")
    root = str(tmp_path / "store")
    ms = store.ModelStore(root)
    version = ms.publish(MODEL, trained_model, {"data_window": {"start": "", "end": "2015-01-01"}})
    ms.set_alias(MODEL, store.CHAMPION, version, expected=None, reason="test", actor="test")
    live = datasets.read_dataset(taxi_split["live"], taxi_spec)
    rows_a, rows_b = live.iloc[:300], live.iloc[300:600]
    server = loop.Server(root, MODEL, tmp_path / "server.log")
    try:
        server.start(timeout=180)
        a_start = clock.utc_now()
        got_a = replay.replay(rows_a, server.url, MODEL, spec=taxi_spec, feedback=False, request_prefix="a")
        time.sleep(server.flush_seconds * 2 + 0.5)
        a_end = b_start = clock.utc_now()
        first = M.monitor(
            root,
            MODEL,
            a_start.isoformat(),
            a_end.isoformat(),
            taxi_split["train"],
            spec=taxi_spec,
            cfg=FLUSHED,
        )
        assert first["rows"] == 300 and first["labelled_rows"] == 0 and first["live_auc"] is None

        # window A's labels arrive late, over HTTP, keyed by the request ids the server answered
        labels = rows_a[taxi_spec.label.name].tolist()
        arrived = [(got_a.request_ids[i // 64], i % 64, int(y)) for i, y in enumerate(labels) if y == y]
        url = urllib.parse.urlsplit(server.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            assert replay.send_feedback(conn, MODEL, arrived, server.url) == 1
        finally:
            conn.close()
        got_b = replay.replay(
            rows_b, server.url, MODEL, spec=taxi_spec, request_prefix="b"
        )  # labels right away
        time.sleep(server.flush_seconds * 2 + 0.5)
        b_end = clock.utc_now()
    finally:
        server.stop()
    assert got_b.feedback_requests == 1 and got_b.feedback_rows == int(
        rows_b[taxi_spec.label.name].notna().sum()
    )

    second = M.monitor(
        root, MODEL, b_start.isoformat(), b_end.isoformat(), taxi_split["train"], spec=taxi_spec, cfg=FLUSHED
    )
    assert second["labelled_rows"] == got_b.feedback_rows
    assert 0.8 < second["live_auc"] <= 1.0  # HTTP feedback joined into live AUC

    (bf,) = second["backfills"]
    assert bf["backfill"] is True and bf["of_run"] == first["run_id"]
    assert (bf["window_start"], bf["window_end"]) == (first["window_start"], first["window_end"])
    assert (bf["labelled_rows_before"], bf["labelled_rows"]) == (0, len(arrived))
    assert bf["live_auc_before"] is None and 0.8 < bf["live_auc"] <= 1.0
    assert bf["mean_delay_s"] > 0
    assert backfill.read_backfills(root, MODEL)[0]["of_run"] == first["run_id"]
    series = {
        (m["window_start"], m["backfilled"]): m["live_auc"] for m in backfill.latest_live_metrics(root, MODEL)
    }
    assert series[(first["window_start"], True)] == bf["live_auc"]
    # nothing new arrived: the next run records no second backfill of window A
    assert backfill.backfill_windows(root, MODEL, before=b_end + dt.timedelta(seconds=1), record=False) == []
