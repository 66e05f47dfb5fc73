"""Who may decide the canary: the feedback endpoint of a live predictor over HTTP refuses labels without a
labeler's token (401 / 403), bodies not declared JSON (415), a label contradicting an accepted one (409) and
labels on a shadow server (403); identical repeats are written once; labels are batched into few files under
an admission bound (503 + Retry-After). The poisoning scenario of issue 23: forged labels never reach the
feedback log, so the canary step and the live-AUC trigger never see them."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfloop import predlog
from serving import feedback_auth
from tests.serving.conftest import MODEL, Server, make_store
from tests.serving.test_server import v1_body

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

LABELER_TOKEN = "labeler-token-0123456789abcdef"
AUDIT_TOKEN = "audit-token-fedcba9876543210"


def _rows(root: str) -> list[dict]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    out = predlog.scan(root, MODEL, predlog.FEEDBACK, start, start + dt.timedelta(hours=2))
    return [row for b in out for row in b.to_pylist()]


def _files(root: str) -> list[Path]:
    return sorted((Path(root) / "feedback" / MODEL).rglob("*.parquet"))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, demo_model_dirs):
    """A server whose :feedback needs a token (a Secret-like directory: one file per labeler)."""
    tmp = tmp_path_factory.mktemp("guarded")
    root = make_store(tmp / "store", demo_model_dirs)
    tokens = tmp / "tokens"
    tokens.mkdir()
    (tokens / "labeler").write_text(LABELER_TOKEN + "\n")
    (tokens / "audit").write_text(AUDIT_TOKEN)
    (tokens / "..data").mkdir()  # what a Kubernetes Secret mount holds besides the keys
    server = Server(
        ["--store-uri", root, "--reload-interval", "0", "--feedback-tokens", str(tokens),
         "--feedback-flush-seconds", "0.3"],
        tmp / "server.log",
    )  # fmt: skip
    server.root = root
    yield server
    assert server.stop() == 0


def _predict(server, frame, request_id: str) -> None:
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}:predict",
        json=v1_body(frame),
        headers={"x-request-id": request_id},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def _post(server, items, token: str | None = LABELER_TOKEN, **kw):
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if "content" not in kw:
        kw["json"] = {"feedback": items}
    return httpx.post(f"{server.url}/v1/models/{MODEL}:feedback", headers=headers, timeout=30, **kw)


def test_poisoned_labels_never_reach_the_feedback_log(guarded, taxi_rows):
    """Issue 23, item 2: 300 rows answered, then labels chosen to make a model look perfect, sent without a
    token, with a forged one and with another scheme: every one is refused, and only the labeler's true
    labels are in the log, each with the labeler's name."""
    frame, _ = taxi_rows
    ids = [f"poison-{i}" for i in range(30)]
    for i, rid in enumerate(ids):
        _predict(guarded, frame.iloc[i * 10 : i * 10 + 10], rid)
    truth = [(i * 7) % 3 % 2 for i in range(300)]  # the labeler's labels (any fixed 0/1 pattern)
    forged = [{"request_id": rid, "row": r, "label": 1} for rid in ids for r in range(10)]
    attempts = {
        "no token": _post(guarded, forged, token=None),
        "forged token": _post(guarded, forged, token="x" * 30),
        "prefix of a real token": _post(guarded, forged, token=LABELER_TOKEN[:-1]),
        "basic auth": _post(guarded, forged, token=None, headers={"authorization": "Basic bGFiZWxlcjp4"}),
        "empty bearer": _post(guarded, forged, token=None, headers={"authorization": "Bearer"}),
    }
    for what, r in attempts.items():
        assert r.status_code in (401, 403), (what, r.status_code, r.text)
        assert r.json()["field"] == "authorization", what
    assert attempts["no token"].status_code == 401
    assert "Authorization: Bearer" in attempts["no token"].json()["error"]
    assert attempts["no token"].headers["www-authenticate"].startswith("Bearer")
    assert attempts["forged token"].status_code == 403
    assert attempts["prefix of a real token"].status_code == 403
    assert _rows(guarded.root) == []
    honest = [
        {"request_id": rid, "row": r, "label": truth[i * 10 + r]}
        for i, rid in enumerate(ids)
        for r in range(10)
    ]
    r = _post(guarded, honest)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 300 and r.json()["labeler"] == "labeler"
    got = {(g["request_id"], g["row"]): (g["label"], g["labeler"]) for g in _rows(guarded.root)}
    assert len(got) == 300
    assert got == {(h["request_id"], h["row"]): (h["label"], "labeler") for h in honest}
    # The attacker now holds no token but tries to flip the accepted labels: still nothing changes.
    assert _post(guarded, forged[:5], token=None).status_code == 401
    assert len(_rows(guarded.root)) == 300


def test_feedback_must_be_declared_json(guarded, taxi_rows):
    frame, _ = taxi_rows
    _predict(guarded, frame.head(2), "ctype-1")
    body = b'{"feedback": [{"request_id": "ctype-1", "row": 0, "label": 1}]}'
    for ctype in ("text/plain", None, "application/x-www-form-urlencoded"):
        headers = {"content-type": ctype} if ctype else {}
        r = _post(guarded, None, content=body, headers=headers)
        assert r.status_code == 415, (ctype, r.text)
        assert r.json()["field"] == "content-type" and "application/json" in r.json()["error"]
    r = _post(guarded, None, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200, r.text
    assert [(g["request_id"], g["label"]) for g in _rows(guarded.root) if g["request_id"] == "ctype-1"] == [
        ("ctype-1", 1)
    ]


def test_a_contradicting_label_is_refused_and_a_repeat_is_written_once(guarded, taxi_rows):
    frame, _ = taxi_rows
    _predict(guarded, frame.head(3), "conflict-1")
    first = {"request_id": "conflict-1", "row": 1, "label": 0}
    assert _post(guarded, [first]).status_code == 200
    r = _post(guarded, [first], token=AUDIT_TOKEN)  # the same label again (a client retry, or a 2nd labeler)
    assert r.status_code == 200 and r.json() | {"max_delay_s": 0} == {
        "accepted": 1, "new": 0, "repeated": 1, "requests": 1, "max_delay_s": 0, "labeler": "audit",
    }  # fmt: skip
    other = {"request_id": "conflict-1", "row": 2, "label": 1}
    r = _post(guarded, [other, {**first, "label": 1}])
    assert r.status_code == 409, r.text
    assert r.json()["field"] == "feedback[1].label"
    assert "'conflict-1' row 1 already has the label 0" in r.json()["error"]
    r = _post(guarded, [other, {**other, "label": 0}])  # contradicting itself inside one request
    assert r.status_code == 409 and r.json()["field"] == "feedback[1].label", r.text
    mine = [
        (g["row"], g["label"], g["labeler"]) for g in _rows(guarded.root) if g["request_id"] == "conflict-1"
    ]
    assert mine == [(1, 0, "labeler")]  # the first label stands; the refused requests wrote nothing


def test_labels_are_batched_into_few_files(guarded, taxi_rows):
    """300 one-label requests (issue 23: 300 requests made 300 files) from 32 clients at once: a client's
    request waits for its batch, so the batches hold the requests of all clients waiting together."""
    frame, _ = taxi_rows
    for k in range(0, 300, 100):
        _predict(guarded, frame.iloc[k : k + 100], f"batch-block-{k}")
    before = len(_files(guarded.root))
    items = [
        {"request_id": f"batch-block-{k}", "row": r, "label": r % 2}
        for k in range(0, 300, 100)
        for r in range(100)
    ]

    t0 = time.monotonic()
    with (
        httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32)) as c,
        concurrent.futures.ThreadPoolExecutor(32) as pool,
    ):

        def send(item):
            return c.post(
                f"{guarded.url}/v1/models/{MODEL}:feedback",
                json={"feedback": [item]},
                headers={"authorization": f"Bearer {LABELER_TOKEN}"},
            )

        answers = list(pool.map(send, items))
    took = time.monotonic() - t0
    assert [a.status_code for a in answers] == [200] * 300
    files = len(_files(guarded.root)) - before
    # One file per 0.3 s flush (plus one for a batch cut at the end), never one per request.
    assert 1 <= files <= took / 0.3 + 2, (files, took)
    assert files < 30, files
    got = [
        (g["request_id"], g["row"]) for g in _rows(guarded.root) if g["request_id"].startswith("batch-block")
    ]
    assert sorted(got) == sorted((i["request_id"], i["row"]) for i in items)  # each once
    print(f"300 feedback requests in {took:.2f} s -> {files} files")


def _warm_up(server, frame, url: str) -> None:
    """One label, written at once (the writer was idle and quiet): later labels wait for the flush interval."""
    _predict(server, frame.head(1), "warm-up")
    r = httpx.post(url, json={"feedback": [{"request_id": "warm-up", "row": 0, "label": 0}]}, timeout=30)
    assert r.status_code == 200, r.text


def test_over_the_pending_bound_is_503_naming_it(start_server, store_root, taxi_rows):
    frame, _ = taxi_rows
    server = start_server(
        "--store-uri", store_root, "--reload-interval", "0", "--feedback-flush-seconds", "3",
        "--feedback-max-pending", "4",
    )  # fmt: skip
    _predict(server, frame.head(6), "bound-2")
    url = f"{server.url}/v1/models/{MODEL}:feedback"
    _warm_up(server, frame, url)  # a first label is written at once; the next ones wait for the 3 s flush
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            httpx.post,
            url,
            json={"feedback": [{"request_id": "bound-2", "row": r, "label": 1} for r in range(3)]},
            timeout=30,
        )
        time.sleep(1.0)
        shed = httpx.post(
            url,
            json={"feedback": [{"request_id": "bound-2", "row": r, "label": 0} for r in (3, 4)]},
            timeout=30,
        )
        # A repeat of a label still waiting for its batch waits for that batch (its 200 means written).
        repeat = httpx.post(
            url, json={"feedback": [{"request_id": "bound-2", "row": 0, "label": 1}]}, timeout=30
        )
        assert first.result().status_code == 200
    assert repeat.status_code == 200 and repeat.json()["repeated"] == 1, repeat.text
    assert shed.status_code == 503, shed.text
    assert shed.headers["retry-after"] == "1"
    assert "max_pending_labels" in shed.json()["error"] and "bound of 4" in shed.json()["error"]
    got = sorted(g["row"] for g in _rows(store_root) if g["request_id"] == "bound-2")
    assert got == [0, 1, 2]  # the shed labels were not kept
    again = httpx.post(
        url, json={"feedback": [{"request_id": "bound-2", "row": r, "label": 0} for r in (3, 4)]}, timeout=30
    )
    assert again.status_code == 200, again.text  # a retry after the batch was written gets in
    too_many = httpx.post(
        url,
        json={"feedback": [{"request_id": "bound-2", "row": r, "label": 0} for r in range(5)]},
        timeout=30,
    )
    assert too_many.status_code == 400 and "limit of 4" in too_many.json()["error"]


def test_a_shadow_server_refuses_feedback(start_server, store_root, taxi_rows):
    """The local loop's shadow canary logs under <store>/shadow: labels sent there were written where nothing
    reads them; now they are refused, telling the client where to send them."""
    frame, _ = taxi_rows
    shadow_log = str(Path(store_root) / "shadow")
    server = start_server("--store-uri", store_root, "--log-uri", shadow_log, "--reload-interval", "0")
    _predict(server, frame.head(2), "shadow-1")
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}:feedback",
        json={"feedback": [{"request_id": "shadow-1", "row": 0, "label": 1}]},
        timeout=30,
    )
    assert r.status_code == 403, r.text
    assert r.json()["field"] == "path" and "primary predictor" in r.json()["error"]
    assert not (Path(shadow_log) / "feedback").exists()


def test_bad_token_sources_are_refused_naming_the_entry(tmp_path):
    d = tmp_path / "secret"
    d.mkdir()
    with pytest.raises(feedback_auth.TokenError, match="holds no token"):
        feedback_auth.load_tokens(str(d))
    (d / "labeler").write_text("short")
    with pytest.raises(feedback_auth.TokenError, match=r"labeler 'labeler' has 5 characters"):
        feedback_auth.load_tokens(str(d))
    (d / "labeler").write_text(LABELER_TOKEN)
    (d / "copy").write_text(LABELER_TOKEN)
    with pytest.raises(feedback_auth.TokenError, match="share a token"):
        feedback_auth.load_tokens(str(d))
    f = tmp_path / "tokens.txt"
    f.write_text(f"# labelers\nlabeler:{LABELER_TOKEN}\nbad name:{AUDIT_TOKEN}\n")
    with pytest.raises(feedback_auth.TokenError, match=r"tokens.txt line 3: labeler name 'bad name'"):
        feedback_auth.load_tokens(str(f))
    f.write_text(f"labeler:{LABELER_TOKEN}\naudit: {AUDIT_TOKEN}\n")
    assert feedback_auth.load_tokens(str(f)) == {"labeler": LABELER_TOKEN, "audit": AUDIT_TOKEN}
    with pytest.raises(feedback_auth.TokenError, match="no such file"):
        feedback_auth.load_tokens(str(tmp_path / "missing"))
    auth = feedback_auth.Authenticator({"labeler": LABELER_TOKEN})
    assert auth.labeler(f"Bearer {LABELER_TOKEN}".encode()) == "labeler"
    assert auth.labeler(f"bearer  {LABELER_TOKEN} ".encode()) == "labeler"


def test_feedback_files_written_before_the_labeler_column_still_read(tmp_path):
    """Feedback files of earlier releases have no ``labeler`` column: they read with ``labeler`` null."""
    now = time.time()
    new = predlog.feedback_table(["a"], [0], [1], now, now - 5, labeler="labeler")
    old = new.drop_columns(["labeler"])
    folder = tmp_path / "feedback" / MODEL / f"date={dt.datetime.fromtimestamp(now, dt.UTC).date()}"
    folder.mkdir(parents=True)
    pq.write_table(old, folder / "old-1.parquet")
    predlog.write_table(
        str(tmp_path), MODEL, predlog.FEEDBACK, new.set_column(0, "request_id", pa.array(["b"]))
    )
    start = dt.datetime.fromtimestamp(now - 60, dt.UTC)
    report = predlog.ScanReport()
    batches = list(predlog.scan(str(tmp_path), MODEL, predlog.FEEDBACK, start, start + dt.timedelta(hours=1),
                                report=report))  # fmt: skip
    got = sorted((r["request_id"], r["labeler"]) for b in batches for r in b.to_pylist())
    assert got == [("a", None), ("b", "labeler")] and report.corrupt == []


def test_sigterm_writes_waiting_labels_at_once(start_server, store_root, taxi_rows):
    """A label waiting for its batch when the pod is told to stop is written then (not after the flush
    interval, not lost): the request gets its 200 and the server exits 0."""
    frame, _ = taxi_rows
    server = start_server(
        "--store-uri", store_root, "--reload-interval", "0", "--feedback-flush-seconds", "60"
    )
    _predict(server, frame.head(2), "term-1")
    url = f"{server.url}/v1/models/{MODEL}:feedback"
    _warm_up(server, frame, url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = time.monotonic()
        waiting = pool.submit(
            httpx.post, url, json={"feedback": [{"request_id": "term-1", "row": 1, "label": 1}]}, timeout=60
        )
        time.sleep(1.0)
        assert not waiting.done()  # waits for its batch (60 s)
        assert server.stop() == 0
        r = waiting.result()
    assert r.status_code == 200 and time.monotonic() - sent < 30, r.text
    got = [(g["request_id"], g["row"], g["label"]) for g in _rows(store_root) if g["request_id"] != "warm-up"]
    assert got == [("term-1", 1, 1)]
