"""kfloop.notify against real receivers: an aiosmtpd SMTP server gets the email, an http.server in a thread
gets the signed webhook (its HMAC checked here with hmac, independently of kfloop), a closed port costs the
configured retries and a recorded failure, the JSON-lines file channel, dedupe of a retried emit, secrets
kept out of records, and config errors that name the key. No mock: apprise does the delivery."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from kfloop import notify
from kfloop.notify import channels as C
from tests.plugins.receivers import free_port

T0 = "2016-01-01T00:00:00Z"


def _event(**kw) -> notify.Event:
    fields = dict(
        type="canary.rolled_back",
        model="taxi",
        version="v0002",
        summary="taxi v0002: the canary lost to the champion; rolled back",
        time=T0,
        reasons=["live AUC 0.61 < champion 0.70", {"message": "paired interval below 0", "kind": "canary"}],
        links={"report": "/store/report.html", "record": "/store/monitoring/taxi/canary/x.json"},
        details={"rows": 1200, "interval": [-0.09, -0.02]},
    )
    fields.update(kw)
    return notify.Event(**fields)


class _Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _config(tmp_path: Path, channels: list[str], **kw) -> str:
    import yaml

    path = tmp_path / "notify.yaml"
    path.write_text(yaml.safe_dump({"channels": channels, "retries": 3, "backoff_seconds": 0.01, **kw}))
    return str(path)


# ------------------------------------------------------------------------------------------------ events
def test_event_types_are_a_closed_set_and_an_unknown_type_is_named():
    assert len(notify.EVENT_TYPES) == 15 and "approval.expired" in notify.EVENT_TYPES
    with pytest.raises(ValueError, match="canary.exploded"):
        _event(type="canary.exploded")
    with pytest.raises(ValueError, match="summary"):
        _event(summary="two\nlines")
    with pytest.raises(ValueError, match=r"reasons\[0\]"):
        _event(reasons=[{"kind": "no message"}])
    with pytest.raises(ValueError, match="details"):
        _event(details={"x": float("nan")})
    with pytest.raises(ValueError, match="time"):
        _event(time="yesterday")


def test_event_id_is_derived_from_type_model_version_and_time():
    a = _event()
    assert a.event_id == _event(time="2016-01-01T00:00:00+00:00", details={"other": 1}).event_id
    assert a.event_id.startswith("canary.rolled_back-")
    assert a.event_id != _event(time="2016-01-01T00:00:01Z").event_id
    assert a.event_id != _event(version="v0003").event_id
    assert a.event_id != _event(type="canary.promoted").event_id
    assert notify.Event.from_dict(a.to_dict()) == a


# ---------------------------------------------------------------------------------------------- channels
def test_email_reaches_a_real_smtp_server(tmp_path, smtp):
    url = f"mailto://127.0.0.1:{smtp.port}?from=kfloop@example.com&to=ops@example.com"
    rec = notify.emit(str(tmp_path / "store"), _event(), _config(tmp_path, [url]), sleep=_Sleeps())
    assert rec["outcome"] == "delivered", rec["attempts"]
    (msg,) = smtp.messages
    assert msg.rcpt_tos == ["ops@example.com"]
    parsed = email.message_from_bytes(msg.content)
    assert parsed["Subject"] == "[kfloop] taxi v0002: canary.rolled_back"
    text = parsed.get_payload(decode=True).decode()
    assert "the canary lost to the champion" in text and "paired interval below 0" in text
    assert "/store/report.html" in text and rec["event_id"] in text


def test_signed_webhook_carries_the_event_json_and_a_verifiable_hmac(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("KFLOOP_TEST_HOOK_KEY", "hook-key-123")
    port = receiver.server_address[1]
    url = f"kfloop-webhook://127.0.0.1:{port}/hooks/kfloop?secret_env=KFLOOP_TEST_HOOK_KEY"
    event = _event(details={"big": "x" * 60_000})  # above apprise's usual 32 KiB body limit: not truncated
    rec = notify.emit(str(tmp_path / "store"), event, _config(tmp_path, [url]), sleep=_Sleeps())
    assert rec["outcome"] == "delivered", rec["attempts"]
    (req,) = receiver.requests
    assert req["path"] == "/hooks/kfloop"
    assert req["headers"]["X-Kfloop-Event"] == "canary.rolled_back"
    assert req["headers"]["X-Kfloop-Event-Id"] == event.event_id
    expected = hmac.new(b"hook-key-123", req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["X-Kfloop-Signature"] == f"sha256={expected}"
    assert notify.verify(req["body"], req["headers"]["X-Kfloop-Signature"], "hook-key-123")
    assert not notify.verify(req["body"] + b" ", req["headers"]["X-Kfloop-Signature"], "hook-key-123")
    assert json.loads(req["body"]) == event.to_dict()
    assert "hook-key-123" not in json.dumps(rec)


def test_webhook_without_its_key_sends_nothing_and_says_why(tmp_path, receiver, monkeypatch):
    monkeypatch.delenv("KFLOOP_TEST_HOOK_KEY", raising=False)
    port = receiver.server_address[1]
    url = f"kfloop-webhook://127.0.0.1:{port}/h?secret_env=KFLOOP_TEST_HOOK_KEY"
    rec = notify.emit(str(tmp_path / "store"), _event(), _config(tmp_path, [url], retries=1), sleep=_Sleeps())
    assert rec["outcome"] == "failed" and receiver.requests == []
    assert "KFLOOP_TEST_HOOK_KEY is not set" in rec["attempts"][0]["error"]


def test_a_receiver_that_is_down_costs_the_retries_and_a_recorded_failure(tmp_path):
    store = str(tmp_path / "store")
    out = tmp_path / "events.jsonl"
    dead = f"json://127.0.0.1:{free_port()}/hook"
    sleeps = _Sleeps()
    rec = notify.emit(store, _event(), _config(tmp_path, [dead, f"kfloop-file://{out}"]), sleep=sleeps)
    assert rec["outcome"] == "partial" and rec["error"] is None
    tries = [a for a in rec["attempts"] if a["channel"] == dead]
    assert [a["attempt"] for a in tries] == [1, 2, 3] and not any(a["ok"] for a in tries)
    assert all("connection" in a["error"].lower() for a in tries), tries
    assert sleeps == [0.01, 0.02]  # backoff_seconds * 2**n between attempts
    assert rec["delivered"] == {dead: False, f"kfloop-file://{out}": True}
    stored = json.loads(Path(rec["record_uri"]).read_text())
    assert stored["attempts"] == rec["attempts"]
    assert rec["record_uri"].endswith(f"monitoring/taxi/events/{rec['event_id']}.json")


def test_http_errors_are_retried_and_recorded(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("KFLOOP_TEST_HOOK_KEY", "k")
    receiver.statuses = [500, 503]
    url = f"kfloop-webhook://127.0.0.1:{receiver.server_address[1]}/h?secret_env=KFLOOP_TEST_HOOK_KEY"
    rec = notify.emit(str(tmp_path / "store"), _event(), _config(tmp_path, [url]), sleep=_Sleeps())
    assert [a["ok"] for a in rec["attempts"]] == [False, False, True]
    assert "HTTP 500" in rec["attempts"][0]["error"] and "HTTP 503" in rec["attempts"][1]["error"]
    assert len(receiver.requests) == 3 and rec["outcome"] == "delivered"


def test_file_channel_appends_one_json_line_per_event(tmp_path):
    out = tmp_path / "deep" / "events.jsonl"
    cfg = f"kfloop-file://{out}"  # one channel URL is a config too
    a, b = _event(), _event(type="approval.requested", version="v0003", time="2016-01-02T00:00:00Z")
    for e in (a, b):
        assert notify.emit(str(tmp_path / "store"), e, cfg)["outcome"] == "delivered"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [a.to_dict(), b.to_dict()]
    assert [r["type"] for r in notify.read_events(str(tmp_path / "store"), "taxi")] == [
        "canary.rolled_back",
        "approval.requested",
    ]


def test_a_retried_emit_sends_only_what_was_not_delivered(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("KFLOOP_TEST_HOOK_KEY", "k")
    receiver.statuses = [500]
    out = tmp_path / "events.jsonl"
    hook = f"kfloop-webhook://127.0.0.1:{receiver.server_address[1]}/h?secret_env=KFLOOP_TEST_HOOK_KEY"
    cfg = _config(tmp_path, [hook, f"kfloop-file://{out}"], retries=1)
    store = str(tmp_path / "store")
    first = notify.emit(store, _event(), cfg)
    assert first["outcome"] == "partial" and not first["deduplicated"]
    second = notify.emit(store, _event(), cfg)  # the step is retried: same event, same id
    assert second["outcome"] == "delivered" and not second["deduplicated"]
    third = notify.emit(store, _event(), cfg)
    assert third["deduplicated"] and third["outcome"] == "delivered"
    assert len(receiver.requests) == 2  # the failed one and its redelivery; nothing for the third emit
    assert len(out.read_text().splitlines()) == 1  # the file had it from the first emit
    assert [a["attempt"] for a in third["attempts"] if a["channel"] == hook] == [1, 2]
    assert len(notify.read_events(store, "taxi")) == 1


def test_secrets_never_reach_the_record(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("KFLOOP_TEST_HOOK_PW", "pw-from-env-42")
    port = receiver.server_address[1]
    templated = f"json://kfloop:${{KFLOOP_TEST_HOOK_PW}}@127.0.0.1:{port}/a"
    literal = f"json://kfloop:literal-pw-77@127.0.0.1:{port}/b?token=tok-99"
    missing = "json://kfloop:${KFLOOP_TEST_NOT_SET}@127.0.0.1:1/c"
    rec = notify.emit(
        str(tmp_path / "store"), _event(), _config(tmp_path, [templated, literal, missing]), sleep=_Sleeps()
    )
    auth = {r["path"]: r["headers"].get("Authorization", "") for r in receiver.requests}
    assert base64.b64decode(auth["/a"].split()[1]) == b"kfloop:pw-from-env-42"  # substituted for delivery
    text = Path(rec["record_uri"]).read_text()
    for secret in ("pw-from-env-42", "literal-pw-77", "tok-99"):
        assert secret not in text
    assert rec["channels"] == [
        templated,
        f"json://kfloop:***@127.0.0.1:{port}/b?token=***",
        missing,
    ]
    (miss,) = [a for a in rec["attempts"] if a["channel"] == missing]
    assert "KFLOOP_TEST_NOT_SET is not set" in miss["error"] and rec["outcome"] == "partial"
    slack = notify.redact("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general")
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in slack and "A1BRTD4JD" not in slack and slack.endswith("#general")


# ------------------------------------------------------------------------------------------------ config
def test_bad_config_key_is_named_and_emit_records_it(tmp_path):
    path = tmp_path / "notify.yaml"
    path.write_text("channels: [kfloop-file:///tmp/x.jsonl]\nretry: 3\n")
    with pytest.raises(C.NotifyConfigError, match="'retry'"):
        notify.load_config(str(path))
    path2 = tmp_path / "bad-value.yaml"
    path2.write_text("channels: []\nretries: 0\n")
    with pytest.raises(C.NotifyConfigError, match="retries"):
        notify.load_config(str(path2))
    with pytest.raises(C.NotifyConfigError, match="cannot be read"):
        notify.load_config(str(tmp_path / "missing.yaml"))
    rec = notify.emit(str(tmp_path / "store"), _event(), str(path))
    assert rec["outcome"] == "config_error" and "'retry'" in rec["config_error"]
    assert Path(rec["record_uri"]).is_file()  # the event is recorded all the same


def test_config_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(notify.CONFIG_ENV, raising=False)
    assert notify.load_channels("") == []
    monkeypatch.setenv("KFLOOP_TEST_FILE_DIR", str(tmp_path))
    monkeypatch.setenv(
        notify.CONFIG_ENV, _config(tmp_path, ["kfloop-file://${KFLOOP_TEST_FILE_DIR}/e.jsonl"])
    )
    assert notify.load_channels("") == [f"kfloop-file://{tmp_path}/e.jsonl"]
    cfg = notify.load_config("")
    assert cfg.retries == 3 and cfg.backoff_seconds == 0.01 and cfg.timeout_seconds == 10.0
    rec = notify.emit(str(tmp_path / "store"), _event(), "")
    assert rec["outcome"] == "delivered" and (tmp_path / "e.jsonl").is_file()
    assert notify.describe(rec).endswith("ok (1 attempt)")


def test_emit_never_raises(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rec = notify.emit(str(blocker / "store"), _event(), f"kfloop-file://{tmp_path}/e.jsonl")
    assert rec["outcome"] == "delivered" and rec["record_uri"] is None
    assert "could not be written" in rec["error"]
    rec = notify.emit(str(tmp_path / "store"), {"type": "not an Event"})  # type: ignore[arg-type]
    assert rec["error"].startswith("notify: TypeError")
    rec = notify.emit(str(tmp_path / "store"), _event(), "nosuchscheme://x")
    assert rec["outcome"] == "failed" and "does not accept" in rec["attempts"][0]["error"]
    assert len(rec["attempts"]) == 1  # a URL apprise refuses is not retried


def test_config_and_records_on_gcs(gcs_bucket, tmp_path):
    from kfloop import fs

    store = f"gs://{gcs_bucket}/store"
    out = tmp_path / "events.jsonl"
    fs.write_text(f"gs://{gcs_bucket}/notify.yaml", f"channels: ['kfloop-file://{out}']\nretries: 2\n")
    rec = notify.emit(store, _event(), f"gs://{gcs_bucket}/notify.yaml")
    assert rec["outcome"] == "delivered" and rec["record_uri"].startswith(
        f"gs://{gcs_bucket}/store/monitoring/"
    )
    assert notify.emit(store, _event(), f"gs://{gcs_bucket}/notify.yaml")["deduplicated"]
    assert [r["event_id"] for r in notify.read_events(store, "taxi")] == [rec["event_id"]]
    assert len(out.read_text().splitlines()) == 1


def test_a_cluster_task_reads_the_mounted_notify_secret(tmp_path, monkeypatch):
    """No config given and no env var: the ``kfloop-notify`` Secret mounted by the pipeline is read."""
    monkeypatch.delenv(notify.CONFIG_ENV, raising=False)
    assert notify.load_config("").channels == ()
    mounted = tmp_path / "notify.yaml"
    mounted.write_text('{"channels": ["json://127.0.0.1:9/x"], "retries": 2}')
    monkeypatch.setattr(C, "MOUNTED_CONFIG", str(mounted))
    cfg = notify.load_config("")
    assert cfg.channels == ("json://127.0.0.1:9/x",) and cfg.retries == 2
