"""The server's Parquet prediction log: identical V1/V2 rows, SIGTERM flush, the kill -9 loss bound."""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfloop import predlog as P
from kfloop.spec import Kind
from kfloop.spec import load as load_spec
from tests.conftest import TAXI_SPEC_PATH
from tests.serving.conftest import MODEL
from tests.serving.test_server import v1_body, v2_body

#: The taxi example's spec (module level: parametrize and hypothesis strategies are built at import).
TAXI = load_spec(TAXI_SPEC_PATH)


pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

_NAMES = [f.name for f in TAXI.model_features]


def _log(root) -> pa.Table:
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    report = P.ScanReport()
    batches = list(P.scan(str(root), MODEL, "predictions", start, end, report=report))
    assert report.corrupt == []
    return pa.Table.from_batches(batches, schema=P.prediction_schema(TAXI))


def _with_gaps(frame):
    """Real rows with a missing value in every nullable feature somewhere."""
    out = frame.iloc[:8].copy()
    for i, f in enumerate(f for f in TAXI.model_features if f.nullable):
        out.loc[out.index[i % len(out)], f.name] = None
    return out


def _plog(root, queue_size: int, writer_process: bool = True, flush_rows: int = 10**6):
    """A PredictionLog that flushes only on close (or every ``flush_rows``), files named ``t-...``."""
    from serving.log_queue import PredictionLog

    return PredictionLog(
        str(root),
        MODEL,
        queue_size=queue_size,
        flush_rows=flush_rows,
        flush_seconds=3600,
        server_id="t",
        writer_process=writer_process,
        schema=TAXI,
    )


def _missing_cols(n: int, fare=None) -> dict:
    """``n`` rows of encoded columns, every feature missing (its sentinel), ``fare`` optionally set."""
    cols = {
        f.name: np.array([f.missing] * n, dtype=object if f.kind == Kind.CATEGORICAL_STR else None)
        for f in TAXI.model_features
    }
    if fare is not None:
        cols["fare"] = np.asarray(fare, dtype=np.float32)
    return cols


@pytest.mark.parametrize("writer_process", [True, False], ids=["process", "thread"])
def test_bounded_queue_counts_drops_and_close_flushes(tmp_path, writer_process):
    plog = _plog(tmp_path, queue_size=5, writer_process=writer_process)
    cols = _missing_cols(3, fare=[1.0, 2.0, 3.0])
    probs = np.array([0.25, 0.5, 0.75], dtype=np.float32)
    assert plog.submit("a", time.time(), "v0007", cols, probs)
    assert not plog.submit("b", time.time(), "v0007", cols, probs)  # 3 + 3 > 5: dropped, counted
    assert plog.dropped == 3
    assert not list(tmp_path.rglob("*.parquet"))  # nothing written before a flush
    plog.close()
    (path,) = (tmp_path / "predictions" / MODEL).rglob("*.parquet")
    assert path.parent.name.startswith("date=") and path.name.startswith("t-")
    t = pq.read_table(path)
    assert t.column("request_id").to_pylist() == ["a"] * 3 and t.column("row").to_pylist() == [0, 1, 2]
    assert t.column("probability").to_pylist() == [0.25, 0.5, 0.75]
    assert t.column("fare").to_pylist() == [1.0, 2.0, 3.0] and t.column("company").null_count == 3
    assert t.column("model_version").to_pylist() == ["v0007"] * 3 and plog.written == 3
    assert not plog.submit("c", time.time(), "v0007", cols, probs)  # closed: dropped, never raises


@pytest.mark.parametrize("writer_process", [True, False], ids=["process", "thread"])
def test_one_micro_batch_item_keeps_per_request_ids_rows_and_drop_counts(tmp_path, writer_process):
    plog = _plog(tmp_path, queue_size=6, writer_process=writer_process)
    cols = _missing_cols(5, fare=np.arange(5))
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.5], dtype=np.float32)
    # one model call of three requests (2 + 1 + 2 rows), then a lone request submitted the per-request way
    assert plog.submit_batch([("a", 2, 10.0), ("b", 1, 11.0), ("c", 2, 12.0)], "v3", cols, probs)
    one = {k: v[:1] for k, v in cols.items()}
    assert plog.submit("d", 13.0, "v4", one, probs[:1])
    assert not plog.submit_batch([("e", 5, 14.0)], "v4", cols, probs)  # 6 + 5 > 6: all 5 rows dropped
    assert plog.dropped == 5
    plog.close()
    (path,) = (tmp_path / "predictions" / MODEL).rglob("*.parquet")
    t = pq.read_table(path)
    assert t.column("request_id").to_pylist() == ["a", "a", "b", "c", "c", "d"]
    assert t.column("row").to_pylist() == [0, 1, 0, 0, 1, 0]
    assert t.column("model_version").to_pylist() == ["v3"] * 5 + ["v4"]
    assert t.column("fare").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]
    assert t.column("probability").to_pylist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.1])
    assert plog.written == 6


def test_reserved_rows_always_fit_and_released_slots_give_room_back(tmp_path):
    plog = _plog(tmp_path, queue_size=6)
    cols = _missing_cols(3, fare=[1.0, 2.0, 3.0])
    probs = np.array([0.25, 0.5, 0.75], dtype=np.float32)
    a, b = plog.reserve(3), plog.reserve(3)
    assert a is not None and b is not None and plog.held_rows == 6
    assert plog.reserve(1) is None and not plog.has_room(1)  # full: reserved rows count
    assert not plog.submit("x", 1.0, "v1", _missing_cols(1), probs[:1])  # an unreserved submit is dropped
    assert plog.submit_batch([("a", 3, 2.0)], "v1", cols, probs, [a])  # fits: its room was reserved
    assert plog.held_rows == 6 and not a.open
    a.release()  # already taken: a no-op, the queued rows stay counted
    assert plog.held_rows == 6
    b.release()  # not answered: its room comes back, once
    b.release()
    assert plog.held_rows == 3 and plog.has_room(3) and not plog.has_room(4)
    plog.close()
    assert (plog.written, plog.dropped) == (3, 1)
    assert plog.reserve(1) is None  # closed


@pytest.mark.parametrize("writer_process", [True, False], ids=["process", "thread"])
def test_write_failure_is_counted_not_raised(tmp_path, writer_process):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the log root should be a directory")
    plog = _plog(blocker, queue_size=100, writer_process=writer_process, flush_rows=1)
    cols = _missing_cols(1)
    assert plog.submit("a", time.time(), "v1", cols, np.array([0.5], dtype=np.float32))
    plog.close()
    assert plog.dropped == 1 and plog.written == 0


def _wait_for(cond, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_a_dead_writer_process_hands_its_unwritten_rows_to_the_next(tmp_path):
    """kill -9 of the writer process: what it held and had not acknowledged goes back to the queue and the
    next writer (started by the next hand-over, under a fresh file-name id) writes it: nothing is dropped.
    (Before: its rows were counted as dropped, and the restarted writer reused the dead one's names.)"""
    plog = _plog(tmp_path, queue_size=100)
    first = plog._writer.proc
    assert plog.submit(
        "a", time.time(), "v1", _missing_cols(1, fare=[1.0]), np.array([0.5], dtype=np.float32)
    )
    assert _wait_for(lambda: plog._inflight == 1 and not plog._items)  # handed over, held by the writer
    first.kill()
    first.wait(10)
    assert _wait_for(lambda: plog.writers_started == 2 and plog._inflight == 1)  # re-sent to a new writer
    assert plog.submit(
        "b", time.time(), "v1", _missing_cols(1, fare=[2.0]), np.array([0.25], dtype=np.float32)
    )
    plog.close()
    assert plog.writers_started == 2 and plog._writer.proc.returncode == 0
    paths = list((tmp_path / "predictions" / MODEL).rglob("*.parquet"))
    t = pa.concat_tables([pq.read_table(p) for p in paths]).sort_by("request_id")
    assert t.column("request_id").to_pylist() == ["a", "b"] and t.column("fare").to_pylist() == [1.0, 2.0]
    assert (plog.written, plog.dropped) == (2, 0)


def test_v1_and_v2_requests_with_missing_values_log_identical_rows(
    start_server, store_root, taxi_rows, tmp_path
):
    frame, _ = taxi_rows
    rows = _with_gaps(frame)
    log_root = tmp_path / "log"
    server = start_server("--store-uri", store_root, "--model-name", MODEL, "--log-uri", str(log_root))
    with httpx.Client(timeout=30) as c:
        r1 = c.post(
            f"{server.url}/v1/models/{MODEL}:predict", json=v1_body(rows), headers={"x-request-id": "v1"}
        )
        r2 = c.post(f"{server.url}/v2/models/{MODEL}/infer", json=v2_body(rows, "v2"))
    assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
    assert server.stop() == 0
    t = _log(log_root).to_pandas()
    a = t[t.request_id == "v1"].sort_values("row").reset_index(drop=True)
    b = t[t.request_id == "v2"].sort_values("row").reset_index(drop=True)
    assert len(a) == len(b) == len(rows)
    cols = [*_NAMES, "probability", "model_version", "row", "source"]
    assert a[cols].equals(b[cols])
    for f in TAXI.model_features:
        assert a[f.name].isna().tolist() == rows[f.name].isna().tolist(), f.name
    assert a.probability.tolist() == np.array(r1.json()["predictions"], dtype=np.float32).tolist()
    assert set(a.model_version) == {"v0001"} and set(a.source) == {"online"}


def _drive(url: str, rows, seconds: float) -> list[tuple[float, str]]:
    """One-row requests for ``seconds``; returns ``(answered_at, request_id)`` of every 200."""
    body = v1_body(rows.iloc[:1])
    out = []
    deadline = time.time() + seconds
    n = 0
    with httpx.Client(timeout=10) as c:
        while time.time() < deadline:
            rid = f"req-{n}"
            n += 1
            r = c.post(f"{url}/v1/models/{MODEL}:predict", json=body, headers={"x-request-id": rid})
            if r.status_code == 200:
                out.append((time.time(), rid))
    return out


def test_sigterm_flushes_every_answered_row(start_server, store_root, taxi_rows, tmp_path):
    frame, _ = taxi_rows
    log_root = tmp_path / "log"
    server = start_server(
        "--store-uri",
        store_root,
        "--model-name",
        MODEL,
        "--log-uri",
        str(log_root),
        "--log-flush-rows",
        "1000000",
        "--log-flush-seconds",
        "3600",
    )
    answered = _drive(server.url, frame, 1.5)
    assert server.stop() == 0  # SIGTERM: the queue (nothing flushed yet) is written on the way out
    logged = set(_log(log_root).column("request_id").to_pylist())
    assert logged == {rid for _, rid in answered}


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_kill9_loses_at_most_the_rows_since_the_last_flush(start_server, store_root, taxi_rows, tmp_path):
    """The written bound (serving/log_queue.py): a kill -9 loses only rows answered within the last flush
    interval (plus the flush in progress), and leaves no unreadable visible file."""
    frame, _ = taxi_rows
    log_root = tmp_path / "log"
    flush_s = 0.5
    server = start_server(
        "--store-uri",
        store_root,
        "--model-name",
        MODEL,
        "--log-uri",
        str(log_root),
        "--log-flush-rows",
        "1000000",
        "--log-flush-seconds",
        str(flush_s),
    )
    answered = _drive(server.url, frame, 3.0)
    writers = _children(server.proc.pid)
    assert len(writers) == 1, writers  # the prediction log's writer process
    killed_at = time.time()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    # The writer sees the end of its pipe, writes what it had received and exits: no orphan keeps running.
    assert _wait_for(lambda: not Path(f"/proc/{writers[0]}").exists() or _zombie(writers[0]))
    for path in Path(log_root).rglob("*.parquet"):
        if not path.name.startswith("."):
            pq.read_table(path)  # every visible file is whole
    logged = set(_log(log_root).column("request_id").to_pylist())
    lost = [(t, rid) for t, rid in answered if rid not in logged]
    assert logged <= {rid for _, rid in answered}
    assert len(logged) > 0
    # Bound: one flush interval (+ slack for one write on a loaded machine) before the kill.
    slack = 2.0
    assert all(t >= killed_at - flush_s - slack for t, _ in lost), (len(lost), len(answered))
