"""The monitoring pipeline under kfp.local, the trigger, the loop report, and the whole local loop."""

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from components.decide import decide as D
from components.trigger import trigger as T
from kfloop import clock, config, datasets, store
from kfloop.app import loop, replay
from kfloop.app import loop_report as report
from kfloop.app.local import run_pipeline
from pipelines import monitoring

MODEL = "taxi-tips"


def _log(root, frame, start, spec):
    card = (frame["payment_type"].fillna("") == "Credit Card").astype(float) * 0.8 + 0.1
    recs = replay.prediction_records(
        frame, card.tolist(), spec=spec, model_name=MODEL, model_version="v0001", start=start
    )
    replay.write_prediction_log(root, MODEL, recs, spec=spec)
    return start + dt.timedelta(milliseconds=len(frame) + 1)


def publish_champion(root, model_dir, spec, tmp_path) -> str:
    """Publishes a copy of ``model_dir`` with the spec beside it (the model contract) as the champion."""
    import shutil

    from kfloop import contract
    from kfloop import spec as kspec

    copy = tmp_path / "champion-model"
    shutil.copytree(model_dir, copy)
    (copy / contract.SPEC_FILE).write_text(kspec.dump(spec))
    ms = store.ModelStore(root)
    version = ms.publish(spec.name, str(copy), {"run_id": "test"})
    ms.set_alias(spec.name, store.CHAMPION, version, reason="test champion")
    return version


def test_fresh_window_and_bad_mode():
    assert T.fresh_window("2015-07-01", 365) == {"window_start": "2014-07-01", "cutoff": "2015-07-01"}
    # data in its own time: fractions of a day, instants where the window does not start at midnight
    assert T.fresh_window("2026-01-01T12:00:00Z", 0.25) == {
        "window_start": "2026-01-01T06:00:00.000Z",
        "cutoff": "2026-01-01T12:00:00.000Z",
    }
    with pytest.raises(T.TriggerError, match="cutoff 'soon'"):
        T.fresh_window("soon", 365)
    with pytest.raises(T.TriggerError, match="mode 'maybe'"):
        T.trigger({"retrain": True}, mode="maybe", source="x", store_uri="x", model_name=MODEL)


def test_training_arguments_filtered_and_typed():
    from pipelines import training

    func = training.create_pipeline()
    got = T.training_arguments(
        func, {"epochs": 8.0, "source": "s.csv", "not_an_input": 1, "cutoff": "2015-07-01"}
    )
    assert got == {"epochs": 8, "source": "s.csv", "cutoff": "2015-07-01"} and isinstance(got["epochs"], int)
    with pytest.raises(T.TriggerError, match=r"epochs=8.5 is not a valid Integer"):
        T.training_arguments(func, {"epochs": 8.5})


def test_no_retrain_starts_nothing(tmp_path):
    rec = T.trigger(
        {"decision": "cooldown", "retrain": False},
        mode="local",
        source="x",
        store_uri=str(tmp_path),
        model_name=MODEL,
    )
    assert rec["started"] is False and "cooldown" in rec["reason"]
    assert T.read_triggers(str(tmp_path), MODEL) == []


@pytest.mark.slow
def test_monitoring_pipeline_under_kfp_local(tmp_path, taxi_csv, taxi_split, taxi_spec, trained_model):
    root = str(tmp_path / "store")
    publish_champion(root, trained_model, taxi_spec, tmp_path)  # the monitor reads the spec stored with it
    live = datasets.read_dataset(taxi_split["live"], taxi_spec)
    later = replay.select(live, "2015-01-01", "2015-05-01", spec=taxi_spec)
    t0 = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
    end = _log(root, later, t0, taxi_spec)
    run = run_pipeline(
        monitoring.create_pipeline(local=True),
        tmp_path / "runs",
        now="2015-05-01T00:00:00Z",
        deploy_mode="local",
        store_uri=root,
        source=str(taxi_csv),
        model_name=MODEL,
        window_start=t0.isoformat(),
        window_end=end.isoformat(),
        reference_train=taxi_split["train"],
        reference_eval=taxi_split["eval"],
        trigger_mode="off",
        retrain_cutoff="2015-05-01",
    )
    summary = json.loads(run.output("monitor-op", "summary").read_text())
    decision = json.loads(run.output("decide-op", "decision").read_text())
    triggered = json.loads(run.output("trigger-op", "triggered").read_text())
    assert summary["rows"] == len(later) and summary["status"] == "ok"
    assert decision["decision"] == D.RETRAIN and "payment_type" in decision["summary"]
    assert decision["decided_at"] == "2015-05-01T00:00:00.000Z" and decision["clock_source"] == "parameter"
    verdict = json.loads(run.output("canary-op", "verdict").read_text())
    assert verdict["action"] == "none"  # no canary alias in this store
    md = run.output("decide-op", "report").read_text()
    assert "payment_type" in md and "RETRAIN" in md
    assert triggered["decision"] == D.RETRAIN and triggered["arguments"]["cutoff"] == "2015-05-01"
    assert D.read_decisions(root, MODEL)[-1]["decision_id"] == decision["decision_id"]


def test_report_is_self_contained():
    rec = {
        "model_name": MODEL,
        "outcome": "drift → retrained",
        "steps": [{"step": "train champion", "at": "0.0", "seconds": 1.0, "detail": "v0001"}],
        "windows": [
            {
                "label": lab,
                "summary": {
                    "rows": 900,
                    "labelled_rows": 900,
                    "live_auc": 0.9,
                    "model_versions": {"v0001": 900},
                    "drift": [
                        {
                            "feature": "payment_type",
                            "measure": "l_infinity",
                            "value": v,
                            "threshold": 0.075,
                            "exceeded": v > 0.075,
                            "ignored": False,
                        }
                    ],
                },
                "decision": {"decision": d, "decided_at": "t", "summary": d, "reasons": []},
            }
            for lab, v, d in (("control", 0.01, "no_retrain"), ("2015 H1", 0.1, "retrain"))
        ],
        "models": [
            {"version": "v0001", "eval_auc": 0.95, "blessed": True, "reasons": [], "fate": "champion"}
        ],
        "history": [{"event": "alias", "alias": "champion", "version": "v0001", "reason": "first <blessed>"}],
    }
    html = report.render(rec)
    assert "<svg" in html and "payment_type" in html and "first &lt;blessed&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html) and "<script" not in html


def _window_with_output_drift(label: str, value: float, exceeded: bool) -> dict:
    od = {"available": True, "measure": "jensen_shannon_divergence", "value": value, "threshold": 0.1}
    od.update(exceeded=exceeded, ignored=True, mode="record", of="prediction")
    summary = {"rows": 500, "labelled_rows": 500, "live_rmse": 12.5, "drift": [], "output_drift": od}
    return {
        "label": label,
        "summary": summary,
        "decision": {"decision": "no_retrain", "decided_at": "t", "summary": "-", "reasons": []},
    }


def test_report_shows_output_drift_for_regression_and_multiclass_not_binary():
    windows = [
        _window_with_output_drift("control", 0.0123, False),
        _window_with_output_drift("w1", 0.2468, True),
    ]
    rec = {
        "model_name": MODEL,
        "steps": [],
        "history": [],
        "windows": windows,
        "spec": {"task": "regression"},
    }
    html = report.render(rec)
    # a column in the windows table (value, threshold, recorded only) and a chart over the windows
    assert "output drift (JSD vs eval predictions)" in html
    assert "0.012 &lt;= 0.1 (recorded only)" in html and "0.247 &gt; 0.1 (recorded only)" in html
    assert "(output) prediction (recorded only: drift mode record)" in html
    # the binary report stays as it was: no output drift column, no chart
    binary = report.render(dict(rec, spec={"task": "binary"}))
    assert "output drift" not in binary and "(output)" not in binary


@pytest.mark.slow
def _notify_config(tmp_path, smtp, receiver) -> tuple[str, str]:
    """Channels: e-mail to a real SMTP server, the signed webhook to an HTTP receiver, and a receiver that
    is down (closed port): returns (config path, the dead channel's URL)."""
    from tests.plugins.receivers import free_port

    dead = f"json://127.0.0.1:{free_port()}/down"
    channels = [
        f"mailto://127.0.0.1:{smtp.port}?from=kfloop@example.com&to=ops@example.com",
        f"kfloop-webhook://127.0.0.1:{receiver.server_port}/hook?secret_env=KFLOOP_TEST_HOOK_KEY",
        dead,
    ]
    path = tmp_path / "notify.yaml"
    path.write_text(json.dumps({"channels": channels, "retries": 2, "backoff_seconds": 0.01}))
    return str(path), dead


def test_whole_loop_drift_retrain_canary(tmp_path, taxi_csv, taxi_spec, smtp, receiver, gateway, monkeypatch):
    """The whole loop in approval mode: drift → retrain → canary; the canary that earns promotion waits for
    a human (notified by e-mail and a signed webhook, a dead channel costing retries only), ``kfloop
    approve`` is applied by the next monitoring run, and ``kfloop why`` tells the chain."""

    monkeypatch.setenv("KFLOOP_TEST_HOOK_KEY", "hook-secret")
    monkeypatch.setenv("KFLOOP_PUSHGATEWAY", gateway)  # every monitoring run's decide step pushes there
    notify_config, dead = _notify_config(tmp_path, smtp, receiver)
    cfg = loop.LoopConfig(
        history_cutoff="2015-01-01",
        windows=(
            loop.Window("2015 H1", "2015-01-01", "2015-07-01"),
            loop.Window("2015 Q3", "2015-07-01", "2015-10-01"),
        ),
        promotion_policy="approval",
        notify_config=notify_config,
        canary_margin=0.05,  # a canary within 0.05 AUC of the champion may be promoted: by a human
    )
    lines = []
    rec = loop.run_loop(
        tmp_path / "loop", spec=taxi_spec, source=str(taxi_csv), cfg=cfg, progress=lines.append
    )
    control, h1, q3 = rec["windows"]
    assert h1["decision"]["decided_at"] == "2015-07-01T00:00:00.000Z"  # the data's clock
    assert control["decision"]["decision"] == D.NO_RETRAIN  # no false alarm on the training window
    assert h1["decision"]["decision"] == D.RETRAIN
    assert any(r["feature"] == "payment_type" for r in h1["decision"]["reasons"])
    first, challenger, *later = rec["models"]  # Q3 may retrain again once the canary is decided
    assert first["version"] == "v0001" and challenger["champion_before"] == "v0001"
    # the retraining was started by the monitoring pipeline's trigger (kfp.local) on the fresh window
    (started,) = [t for t in h1["new_triggers"] if t["started"]]
    assert (
        started["arguments"]["cutoff"] == "2015-07-01"
        and started["arguments"]["window_start"] == "2014-07-01"
    )
    assert challenger["run_root"] == started["run"]["root"]
    ms = store.ModelStore(rec["store_uri"])
    if challenger["version"]:  # blessed → canary → judged by the next monitoring run on shadow traffic
        (canary,) = rec["canaries"]
        assert canary is q3["canary"] or canary["verdict_id"] == q3["canary"]["verdict_id"]
        assert canary["canary_version"] == challenger["version"] and canary["comparison"]["paired"]
        assert canary["comparison"]["low"] is not None and "[" in canary["summary"]
        expected = {"promote": challenger["version"], "reject": "v0001", "wait": "v0001"}[canary["action"]]
        assert ms.get_alias(MODEL, store.CHAMPION) == expected
        if canary["action"] == "wait":  # a canary being judged blocks a new retraining
            assert q3["decision"]["decision"] in (D.CANARY_PENDING, D.NO_RETRAIN) and not later
        else:  # decided: the canary alias is cleared or belongs to Q3's new challenger
            now_canary = later[-1]["version"] if later and later[-1].get("alias") == "canary" else None
            assert ms.get_alias(MODEL, store.CANARY) == now_canary
    else:  # not blessed: rejected by the evaluation, champion unchanged
        assert "rejected" in challenger["fate"] and ms.get_alias(MODEL, store.CHAMPION) == "v0001"
    t = rec["decisions_by_comparison"]
    assert t["retrainings"] >= 1 and t["outcomes"]
    decided = [o for o in t["outcomes"] if o["outcome"] in ("promoted", "rolled back", "rejected")]
    assert len(decided) == t["promotions"] + t["rejections"] and all("[" in o["comparison"] for o in decided)
    html = Path(rec["report"]).read_text()
    assert "payment_type" in html and "<svg" in html and challenger["fate"].split(":")[0] in html
    assert "Why v0001 serves (kfloop why)" in html and "<h2>Notifications</h2>" in html
    assert "approval.requested" in html  # the report's notifications table
    assert any("report:" in line for line in lines)
    _approval_and_why(tmp_path, rec, challenger, q3, smtp, receiver, gateway, notify_config, dead, lines)


def _approval_and_why(tmp_path, rec, challenger, q3, smtp, receiver, gateway, notify_config, dead, lines):
    """The operating half of the whole-loop test: pending approval, notifications, approve, apply, why."""
    import email

    from kfloop import approvals, notify
    from kfloop.app.cli import main

    root, v2 = rec["store_uri"], challenger["version"]
    assert v2, f"the challenger was not blessed ({challenger['fate']}): nothing to approve"
    # 1. the loop ends with a pending approval: the evidence said promote, nobody moved champion
    assert q3["canary"]["verdict"] == "awaiting_approval", q3["canary"]["summary"]
    assert store.ModelStore(root).aliases(MODEL) == {"champion": "v0001", "canary": v2}
    (req,) = approvals.list_requests(root, MODEL)
    assert req["state"] == approvals.PENDING and req["evidence"]["comparison"]["paired"]
    # 2. notified: e-mail and the signed webhook received it; the dead channel cost retries, not a step
    events = notify.read_events(root, MODEL)
    kinds = [e["type"] for e in events]
    assert {"retrain.triggered", "challenger.blessed", "approval.requested"} <= set(kinds), kinds
    subjects = [email.message_from_bytes(m.content)["Subject"] for m in smtp.messages]
    assert f"[kfloop] {MODEL} {v2}: approval.requested" in subjects, subjects
    hooks = [json.loads(r["body"]) for r in receiver.requests]
    asked = next(h for h in hooks if h["type"] == "approval.requested")
    assert asked["version"] == v2 and "kfloop approve" in " ".join(asked["reasons"])
    signed = next(r for r in receiver.requests if json.loads(r["body"])["type"] == "approval.requested")
    assert notify.verify(signed["body"], signed["headers"]["X-Kfloop-Signature"], "hook-secret")
    down = [a for e in events for a in e["attempts"] if a["channel"] == notify.redact(dead)]
    assert down and not any(a["ok"] for a in down) and len(down) == 2 * len(events)
    assert rec["notifications"]["events"] == len(events) and rec["notifications"]["failed"] == len(events)
    assert any(line.startswith("notifications:") or "notifications:" in line for line in lines)
    jsonl = (Path(root).parent / "notifications.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["type"] for x in jsonl) == sorted(
        kinds
    )  # the local file channel: every event
    # 3. drift metrics arrived at the real Pushgateway (the last monitoring run's)
    from tests.test_ops_metrics import _get, _scrape

    samples = _scrape(gateway)
    assert _get(samples, "kfloop_feature_drift", model=MODEL, feature="payment_type") is not None
    assert _get(samples, "kfloop_monitoring_last_success_timestamp_seconds", model=MODEL) > 0
    # 4. a human approves; the next monitoring run applies it through the deploy path
    assert (
        main(["approve", MODEL, v2, "--by", "ana@example.com", "--reason", "slices checked", "--store", root])
        == 0
    )
    runs = tmp_path / "monitor-after"
    rc = main(
        ["monitor", "--store-uri", root, "--model-name", MODEL, "--pipeline-root", str(runs)]
        + ["--now", "2015-10-02T00:00:00Z", "--promotion-policy", "approval", "--canary-margin", "0.05"]
        + ["--notify-config", notify_config]
    )
    assert rc == 0
    ms = store.ModelStore(root)
    assert ms.aliases(MODEL) == {"champion": v2}
    move = [h for h in ms.history(MODEL) if h.get("alias") == "champion"][-1]
    assert move["to"] == v2 and move["actor"] == "ana@example.com" and "slices checked" in move["reason"]
    kinds = [e["type"] for e in notify.read_events(root, MODEL)]
    assert "approval.given" in kinds and "canary.promoted" in kinds
    # 5. kfloop why: the whole chain, from the alias move back to the drift that caused the retraining
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["why", MODEL, "--store", root]) == 0
    text = out.getvalue()
    steps = [
        line.split(":", 1)[0].split(". ", 1)[1] for line in text.splitlines() if re.match(r"^\d+\. ", line)
    ]
    assert steps == [
        "alias move",
        "canary verdict",
        "approval",
        "evaluation",
        "training",
        "trigger",
        "decision",
        "monitoring run",
    ], text
    assert "ana@example.com" in text and "payment_type" in text and "sha256:" in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models", "compare", "v0001", v2, "--store", root, "--name", MODEL]) == 0
    assert "epochs" in out.getvalue() or "auc" in out.getvalue()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["models", "show", v2, "--store", root, "--name", MODEL, "--json"]) == 0
    shown = json.loads(out.getvalue())
    assert (
        shown["trigger_id"] and shown["data_digest"]["train"].startswith("sha256:") and shown["spec_sha256"]
    )


def test_fresh_window_ends_at_the_decisions_monitoring_clock(tmp_path):
    """No cutoff given: the retraining window ends at the decision's time (the data's clock in the replay)."""
    rec = T.trigger(
        {"decision": "retrain", "retrain": True, "decided_at": "2016-01-01T00:00:00.000Z"},
        mode="off",
        source="x",
        store_uri=str(tmp_path),
        model_name=MODEL,
        training_window_days=365,
    )
    assert rec["arguments"]["cutoff"] == "2016-01-01" and rec["arguments"]["window_start"] == "2015-01-01"


def test_report_counts_and_names_the_comparison_of_every_promotion_and_rejection():
    rec = {
        "windows": [
            {
                "label": w,
                "summary": {},
                "decision": {"retrain": r, "decision": "x", "decided_at": "t", "summary": "", "reasons": []},
            }
            for w, r in (("a", True), ("b", True), ("c", False))
        ],
        "models": [
            {"version": "v0001", "blessed": True, "champion_before": None},
            {
                "version": None,
                "blessed": False,
                "champion_before": "v0001",
                "failed_reasons": ["worse [-0.03, -0.01]"],
            },
            {
                "version": "v0002",
                "blessed": True,
                "champion_before": "v0001",
                "eval_comparison": "undecided [-0.02, 0.01]",
            },
        ],
        "canaries": [
            {"canary_version": "v0002", "action": "promote", "summary": "promote (better): [+0.01, +0.02]"}
        ],
    }
    t = report.tally(rec)
    assert (t["retrainings"], t["promotions"], t["rejections"], t["pending"]) == (2, 1, 1, 0)
    rejected, promoted = t["outcomes"]
    assert rejected["decided_by"].startswith("evaluation") and "[-0.03, -0.01]" in rejected["comparison"]
    assert promoted["decided_by"].startswith("canary step") and "[+0.01, +0.02]" in promoted["comparison"]
    html = report.render(dict(rec, model_name=MODEL, steps=[], history=[]))
    assert "1</b> promotion(s)" in html and "[+0.01, +0.02]" in html


#: A small non-taxi spec (ISO time, "yes"/"no" label, "NA" missing, a boolean, a string categorical).
SYNTHETIC = """
name: visits
task: binary
missing_values: ["NA"]
time: {column: seen_at, format: iso8601}
label: {column: returned, positive: "yes"}
exclude: [visit_id]
columns:
  - {name: minutes, kind: numeric, nullable: true}
  - {name: member, kind: boolean, nullable: true}
  - {name: channel, kind: categorical_string}
"""


def _synthetic(rows: int, *, hours: float, with_time: bool = True):
    """Raw CSV text of ``rows`` visits spread evenly over ``hours`` from 2026-03-01, and its spec."""
    from kfloop import spec as kspec

    text = SYNTHETIC if with_time else SYNTHETIC.replace("time: {column: seen_at, format: iso8601}\n", "")
    lines = ["visit_id,seen_at,minutes,member,channel,returned"]
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for i in range(rows):
        at = t0 + dt.timedelta(hours=hours * i / rows)
        minutes = "NA" if i % 7 == 0 else f"{i % 50 + 0.5}"
        lines.append(
            f"v{i},{at:%Y-%m-%dT%H:%M:%SZ},{minutes},{'true' if i % 3 else 'NA'},{'web' if i % 2 else 'app'},"
            f"{'yes' if i % 4 == 0 else 'no'}"
        )
    return kspec.loads(text), "\n".join(lines) + "\n"


def _clean(tmp_path, spec, text):
    from kfloop.clean import clean, read_raw

    path = tmp_path / "visits.csv"
    path.write_text(text)
    frame = clean(read_raw(str(path)), spec)
    if spec.event_time is not None:
        frame = frame.sort_values(spec.event_time.name, kind="stable").reset_index(drop=True)
    return frame


def test_replay_windows_come_from_the_datas_time_range(tmp_path):
    from kfloop.app import plan

    spec, text = _synthetic(1200, hours=72)  # three days of visits: boundaries in whole hours
    p = plan.plan(spec, _clean(tmp_path, spec, text), plan.LoopConfig())
    assert p.by_time and p.history_cutoff == "2026-03-02T12:00:00.000Z"  # half of the time range
    assert [(w.start, w.end) for w in p.windows] == [
        ("2026-03-02T12:00:00.000Z", "2026-03-03"),
        ("2026-03-03", "2026-03-03T12:00:00.000Z"),
        ("2026-03-03T12:00:00.000Z", "2026-03-04"),
    ]
    assert p.control.from_training and p.control.sample == config.ReplayConfig().control_rows
    # the clock, the cooldown (half a window) and the retraining window are in the data's own time
    assert p.now(1, p.windows[0]) == "2026-03-03T00:00:00.000Z" and p.cooldown_hours == 6.0
    assert p.training_window_days == 1.5  # the history's length (shorter than MonitoringConfig's 365 days)
    assert p.retrain_window(p.windows[0]) == {
        "cutoff": "2026-03-03",
        "window_start": "2026-03-01T12:00:00.000Z",
    }
    # the last window ends after the last row: a retraining's cutoff stays inside the data (ingest needs it)
    last = p.retrain_window(p.windows[-1])["cutoff"]
    assert clock.parse(last) < dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
    # counts and explicit windows are configurable; a cutoff outside the data is named
    four = plan.plan(spec, _clean(tmp_path, spec, text), plan.LoopConfig(window_count=4))
    assert len(four.windows) == 4
    explicit = plan.LoopConfig(
        history_cutoff="2026-03-01T12:00:00Z", windows=plan.parse_windows("2026-03-01T12:00:00Z,2026-03-04")
    )
    assert [w.label for w in plan.plan(spec, _clean(tmp_path, spec, text), explicit).windows] == [
        "2026-03-01T12:00:00Z .. 2026-03-04"
    ]
    with pytest.raises(
        plan.PlanError, match=r"--cutoff '2027-01-01' is outside the data, which spans 2026-03-01"
    ):
        plan.plan(spec, _clean(tmp_path, spec, text), plan.LoopConfig(history_cutoff="2027-01-01"))


def test_without_a_time_column_the_rows_are_replayed_in_order(tmp_path):
    from kfloop.app import plan

    spec, text = _synthetic(1000, hours=10, with_time=False)
    frame = _clean(tmp_path, spec, text)
    p = plan.plan(spec, frame, plan.LoopConfig())
    assert not p.by_time and p.history_cutoff == "500"
    assert [(w.start, w.end) for w in p.windows] == [("500", "667"), ("667", "833"), ("833", "1000")]
    got = replay.select(frame, p.windows[1].start, p.windows[1].end, spec=spec)
    assert len(got) == 166 and got["minutes"].equals(frame["minutes"].iloc[667:833].reset_index(drop=True))
    # a retraining trains on the rows before the triggering window's end (as many as the history)
    assert p.retrain_window(p.windows[0]) == {"cutoff": "667", "window_start": "167"}
    assert p.retrain_window(p.windows[-1])["cutoff"] == "999"  # at most the last row
    # the monitoring clock still moves forward, one day per window
    assert [p.now(i, w) for i, w in enumerate(p.windows)] == [
        "2000-01-02T00:00:00.000Z",
        "2000-01-03T00:00:00.000Z",
        "2000-01-04T00:00:00.000Z",
    ]
    with pytest.raises(plan.PlanError, match="no time column, give a row position"):
        plan.plan(spec, frame, plan.LoopConfig(history_cutoff="2026-03-01"))


def test_kfloop_run_refuses_bad_flags_and_specs_in_one_line(tmp_path, capsys):
    from kfloop.app.cli import main

    _, text = _synthetic(200, hours=10)
    (tmp_path / "visits.csv").write_text(text)
    (tmp_path / "spec.yaml").write_text(SYNTHETIC)
    (tmp_path / "bad.yaml").write_text(SYNTHETIC.replace("kind: boolean", "kind: bool"))
    base = ["run", "--data", str(tmp_path / "visits.csv"), "--workdir", str(tmp_path / "w")]
    cases = [
        (["--spec", str(tmp_path / "spec.yaml"), "--windows", "2026-03-01"], "--windows '2026-03-01'"),
        (["--spec", str(tmp_path / "spec.yaml"), "--window-count", "0"], "--window-count"),
        (["--spec", str(tmp_path / "spec.yaml"), "--history-fraction", "1.5"], "--history-fraction"),
        (["--spec", str(tmp_path / "bad.yaml")], "columns[1].kind"),
    ]
    for extra, needle in cases:
        with pytest.raises(SystemExit) as exc:
            main([*base, *extra])
        assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
        assert not (tmp_path / "w").exists()  # nothing ran
