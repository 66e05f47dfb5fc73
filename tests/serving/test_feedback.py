"""The feedback endpoint over HTTP on the real predictor: ground truth for real request ids lands in the
feedback log with its delay; bad feedback gets 4xx naming the field and nothing is written."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from kfloop import config, predlog
from serving.feedback import Feedback, RecentRequests
from tests.serving.conftest import MODEL
from tests.serving.test_server import v1_body

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")


def _feedback_rows(root: str) -> list[dict]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    batches = predlog.scan(root, MODEL, predlog.FEEDBACK, start, start + dt.timedelta(hours=2))
    return [row for b in batches for row in b.to_pylist()]


@pytest.fixture
def server(start_server, store_root):
    return start_server("--store-uri", store_root, "--reload-interval", "0", "--log-flush-seconds", "0.5")


def _predict(server, frame, request_id: str) -> list[float]:
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}:predict",
        json=v1_body(frame),
        headers={"x-request-id": request_id},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _feedback(server, items, **kw):
    kw = kw or {"json": {"feedback": items}}
    return httpx.post(f"{server.url}/v1/models/{MODEL}:feedback", timeout=30, **kw)


def test_feedback_for_real_request_ids_is_written_with_its_delay(server, store_root, taxi_rows):
    frame, _ = taxi_rows
    _predict(server, frame.head(4), "req-a")
    _predict(server, frame.iloc[4:6], "req-b")
    time.sleep(0.3)
    items = [
        {"request_id": "req-a", "row": 0, "label": 1},
        {"request_id": "req-a", "row": 3, "label": 0},
        {"request_id": "req-b", "row": 1, "label": 1},
    ]
    r = _feedback(server, items)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3 and body["requests"] == 2 and body["max_delay_s"] >= 0.3
    got = sorted(_feedback_rows(store_root), key=lambda x: (x["request_id"], x["row"]))
    assert [(g["request_id"], g["row"], g["label"]) for g in got] == [
        ("req-a", 0, 1),
        ("req-a", 3, 0),
        ("req-b", 1, 1),
    ]
    for g in got:
        assert g["prediction_timestamp"] is not None and g["timestamp"] > g["prediction_timestamp"]
        assert g["delay_s"] == pytest.approx((g["timestamp"] - g["prediction_timestamp"]).total_seconds())
        assert g["delay_s"] >= 0.3


@pytest.mark.parametrize(
    ("item", "status", "field", "needle"),
    [
        ({"request_id": "nobody", "row": 0, "label": 1}, 404, "feedback[1].request_id", "'nobody'"),
        ({"request_id": "req-c", "row": 2, "label": 1}, 404, "feedback[1].row", "had 2 row(s)"),
        ({"request_id": "req-c", "row": 0, "label": 1.0}, 400, "feedback[1].label", "integer 0 or 1"),
        ({"request_id": "req-c", "row": 0, "label": "1"}, 400, "feedback[1].label", "integer 0 or 1"),
        ({"request_id": "req-c", "row": 0, "label": True}, 400, "feedback[1].label", "integer 0 or 1"),
        ({"request_id": "req-c", "row": 0, "label": 2}, 400, "feedback[1].label", "integer 0 or 1"),
        ({"request_id": "req-c", "row": -1, "label": 0}, 400, "feedback[1].row", "integer >= 0"),
        ({"request_id": 7, "row": 0, "label": 0}, 400, "feedback[1].request_id", "non-empty string"),
        ({"request_id": "req-c", "label": 0}, 400, "feedback[1].row", "integer >= 0"),
        ({"request_id": "req-c", "row": 0, "label": 0, "why": "x"}, 400, "feedback[1].why", "unknown key"),
    ],
    ids=[
        "unknown-id",
        "row-out-of-range",
        "float-label",
        "string-label",
        "bool-label",
        "label-2",
        "negative-row",
        "id-not-string",
        "no-row",
        "extra-key",
    ],
)
def test_bad_feedback_gets_4xx_naming_the_field_and_nothing_is_written(
    server, store_root, taxi_rows, item, status, field, needle
):
    frame, _ = taxi_rows
    _predict(server, frame.head(2), "req-c")
    good = {"request_id": "req-c", "row": 0, "label": 1}
    r = _feedback(server, [good, item])
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and needle in r.json()["error"]
    assert _feedback_rows(store_root) == []  # the good item of the refused request is not written either


def test_malformed_bodies(server, store_root):
    cases = [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "body"),
        ({"json": [1, 2]}, "body"),
        ({"json": {"feedback": []}}, "feedback"),
        ({"json": {"labels": []}}, "labels"),
        ({"json": {"feedback": [{"request_id": "x", "row": 0, "label": 0}] * 10_001}}, "feedback"),
    ]
    for kw, field in cases:
        r = _feedback(server, None, **kw)
        assert r.status_code == 400 and r.json()["field"] == field, (field, r.text)
    assert _feedback_rows(store_root) == []


def test_recent_index_is_bounded_and_old_ids_are_unknown(tmp_path):
    fb = Feedback(str(tmp_path), MODEL, config.FeedbackConfig(index_requests=3))
    for i in range(5):
        fb.seen(f"r{i}", 2, 1000.0 + i)
    assert len(fb.recent) == 3 and fb.recent.evicted == 2
    ids, rows, labels, when = fb.parse({"feedback": [{"request_id": "r4", "row": 1, "label": 0}]})
    assert (ids, rows, labels, when) == (["r4"], [1], [0], [1004.0])
    with pytest.raises(Exception, match=r"'r0' is not among the last 3 requests") as e:
        fb.parse({"feedback": [{"request_id": "r0", "row": 0, "label": 0}]})
    assert e.value.status == 404 and e.value.field == "feedback[0].request_id"
    with pytest.raises(ValueError):
        RecentRequests(0)
