"""The retrain decision: triggers with reasons, the cooldown, no-traffic and too-few windows, rendering."""

import dataclasses
import datetime as dt

from components.decide import decide as D
from kfloop import config

CFG = config.MonitoringConfig()
#: Features the monitor marks ``ignored`` (drift mode ``record`` in the taxi example's spec).
RECORDED = ("trip_start_month",)
T0 = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _score(feature, value, measure="l_infinity", threshold=CFG.drift_linf):
    return {
        "feature": feature,
        "measure": measure,
        "value": value,
        "threshold": threshold,
        "exceeded": value > threshold,
        "ignored": feature in RECORDED,
    }


def _summary(drift=(), rows=1000, live_auc=None, anomalies=(), status="ok"):
    return {
        "run_id": "r1",
        "model_name": "taxi-tips",
        "champion_version": "v0001",
        "window_start": "2026-11-23T11:00:00.000Z",
        "window_end": "2026-11-23T12:00:00.000Z",
        "status": status,
        "rows": rows,
        "labelled_rows": rows,
        "live_auc": live_auc,
        "drift": list(drift),
        "anomalies": list(anomalies),
    }


def test_drift_reason_names_feature_value_and_threshold():
    s = _summary(
        [
            _score("payment_type", 0.121),
            _score("company", 0.02),
            _score("fare", 0.004, "jensen_shannon_divergence", 0.05),
        ]
    )
    d = D.decide(s, CFG, now=T0)
    assert d["decision"] == D.RETRAIN and d["retrain"] is True
    assert [(r["kind"], r["feature"], r["value"], r["threshold"]) for r in d["reasons"]] == [
        ("drift", "payment_type", 0.121, CFG.drift_linf)
    ]
    assert "payment_type" in d["summary"] and "0.1210" in d["summary"]
    md = D.to_markdown(d, s)
    assert "payment_type" in md and "RETRAIN" in md and "| company |" in md
    assert "payment_type" in D.to_html(d, s)


def test_ignored_feature_never_triggers_but_is_reported():
    s = _summary([_score("trip_start_month", 0.3), _score("payment_type", 0.01)])
    d = D.decide(s, CFG, now=T0)
    assert d["decision"] == D.NO_RETRAIN and not d["retrain"]
    # the reasons of a no-retrain say how close the highest non-ignored score came
    assert d["reasons"][0]["feature"] == "payment_type" and d["reasons"][0]["value"] == 0.01
    assert "trip_start_month" in D.to_markdown(d, s)


def test_live_auc_below_floor_triggers():
    d = D.decide(_summary([_score("payment_type", 0.01)], live_auc=0.61), CFG, now=T0)
    assert d["retrain"] and d["reasons"][0]["kind"] == "performance" and d["reasons"][0]["value"] == 0.61
    ok = D.decide(_summary([_score("payment_type", 0.01)], live_auc=0.91), CFG, now=T0)
    assert not ok["retrain"] and any(r["measure"] == "live_auc" for r in ok["reasons"])


def test_blocking_anomaly_triggers_unless_disabled():
    anomaly = {
        "feature": "payment_type",
        "type": "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        "description": "x",
        "blocking": True,
    }
    assert D.decide(_summary(anomalies=[anomaly]), CFG, now=T0)["retrain"]
    off = dataclasses.replace(CFG, retrain_on_anomalies=False)
    assert not D.decide(_summary(anomalies=[anomaly]), off, now=T0)["retrain"]
    harmless = dict(anomaly, blocking=False)
    assert not D.decide(_summary(anomalies=[harmless]), CFG, now=T0)["retrain"]


def test_cooldown_suppresses_second_retrain(tmp_path):
    store = str(tmp_path)
    s = _summary([_score("payment_type", 0.12)])
    first = D.decide(s, CFG, history=D.read_decisions(store, "taxi-tips"), now=T0)
    D.record_decision(store, "taxi-tips", first)
    assert first["decision"] == D.RETRAIN

    later = T0 + dt.timedelta(hours=CFG.cooldown_hours / 2)
    second = D.decide(s, CFG, history=D.read_decisions(store, "taxi-tips"), now=later)
    D.record_decision(store, "taxi-tips", second)
    assert second["decision"] == D.COOLDOWN and not second["retrain"]
    assert second["reasons"][0]["kind"] == "cooldown"
    assert any(r["feature"] == "payment_type" for r in second["reasons"])  # the triggers are still named
    assert second["cooldown_until"] > second["decided_at"]

    # a cooldown decision does not extend the cooldown: after it expires, drift retrains again
    after = T0 + dt.timedelta(hours=CFG.cooldown_hours + 0.1)
    third = D.decide(s, CFG, history=D.read_decisions(store, "taxi-tips"), now=after)
    assert third["decision"] == D.RETRAIN
    assert [d["decision"] for d in D.read_decisions(store, "taxi-tips")] == [D.RETRAIN, D.COOLDOWN]


def test_no_traffic_and_too_few():
    d = D.decide(_summary(rows=0, status="no_traffic"), CFG, now=T0)
    assert d["decision"] == D.NO_TRAFFIC and not d["retrain"] and "no traffic" in d["summary"]
    few = D.decide(
        _summary([_score("payment_type", 0.5)], rows=CFG.min_examples - 1, status="too_few"), CFG, now=T0
    )
    assert few["decision"] == D.TOO_FEW and not few["retrain"]
    assert few["reasons"][0]["value"] == CFG.min_examples - 1


def _rejected(version):
    return {"kind": D.REJECTED_BY_CANARY, "version": version, "reason": "canary worse: AUC ...", "time": "t"}


def test_cooldown_counts_on_the_monitoring_clock_not_the_wall_clock():
    """The replay passes the data's time: six months of taxi data later, the cooldown has long passed."""
    s = _summary([_score("payment_type", 0.12)])
    first = D.decide(s, CFG, now=dt.datetime(2015, 7, 1, tzinfo=dt.UTC))
    assert first["retrain"] and first["decided_at"] == "2015-07-01T00:00:00.000Z"
    again = D.decide(
        _summary([_score("company", 0.09)]), CFG, history=[first], now=dt.datetime(2016, 1, 1, tzinfo=dt.UTC)
    )
    assert again["decision"] == D.RETRAIN  # seconds of wall time passed, but half a year of data time


def test_no_retraining_while_a_canary_is_judged():
    s = _summary([_score("payment_type", 0.12)])
    wait = {"action": "wait", "canary_version": "v0002", "summary": "keep waiting (undecided): ..."}
    d = D.decide(s, CFG, now=T0, canary=wait)
    assert d["decision"] == D.CANARY_PENDING and not d["retrain"]
    assert "v0002" in d["reasons"][0]["message"] and "payment_type" in d["summary"]


def test_backoff_grows_when_the_same_drift_persists_and_challengers_are_rejected():
    """Same drift, the retrained challenger rejected, no new data: the wait doubles per rejection."""
    cfg = dataclasses.replace(CFG, cooldown_hours=24, backoff_factor=2.0, new_data_rows=500)
    drift = [_score("payment_type", 0.12)]
    known: list[dict] = []
    history: list[dict] = []
    t = T0
    first = D.decide(_summary(drift, rows=1000), cfg, history=history, now=t, known_outcomes=known)
    assert first["retrain"]
    history.append(first)
    known.append(_rejected("v0002"))  # its challenger was rejected by the canary
    # 30 h later (past the 24 h cooldown), the same drift, only 100 new labelled rows: back off to 48 h.
    quiet = _summary(drift, rows=600)
    quiet["labelled_rows"] = 100
    d = D.decide(quiet, cfg, history=history, now=t + dt.timedelta(hours=30), known_outcomes=known)
    assert d["decision"] == D.BACKOFF and not d["retrain"]
    msg = d["reasons"][0]["message"]
    assert "waiting 48 h" in msg and "x 2^1" in msg and "100 new labelled rows" in msg
    assert any("changed nothing" in r["message"] for r in d["reasons"])
    history.append(d)
    # After 48 h it retrains again; that challenger is rejected too: now 96 h.
    d2 = D.decide(quiet, cfg, history=history, now=t + dt.timedelta(hours=49), known_outcomes=known)
    assert d2["retrain"]
    history.append(d2)
    known.append(_rejected("v0003"))
    d3 = D.decide(quiet, cfg, history=history, now=t + dt.timedelta(hours=49 + 90), known_outcomes=known)
    assert d3["decision"] == D.BACKOFF and "waiting 96 h" in d3["reasons"][0]["message"]
    # New data (many labelled rows since): no backoff, the plain cooldown applies.
    fresh = _summary(drift, rows=2000)
    d4 = D.decide(fresh, cfg, history=history, now=t + dt.timedelta(hours=49 + 90), known_outcomes=known)
    assert d4["retrain"]
    # A different drift is not "the same drift": no backoff either.
    other = _summary([_score("company", 0.09)], rows=600)
    other["labelled_rows"] = 10
    d5 = D.decide(other, cfg, history=history, now=t + dt.timedelta(hours=49 + 90), known_outcomes=known)
    assert d5["retrain"]


def test_outcomes_from_the_store_history():
    hist = [
        {"event": "alias", "alias": "champion", "to": "v0001", "action": "push", "outcome": "success"},
        {"event": "rejected", "reasons": ["paired comparison ... worse"]},
        {"event": "alias", "alias": "canary", "to": "v0002", "action": "push", "outcome": "success"},
        {"event": "alias", "alias": "champion", "to": "v0002", "action": "promote", "outcome": "success"},
        {"event": "alias", "alias": "canary", "to": "v0003", "action": "push", "outcome": "conflict"},
    ]
    kinds = [(o["kind"], o["version"]) for o in D.outcomes(hist)]
    assert kinds == [(D.REJECTED_BY_EVALUATION, None), (D.CANARY_STARTED, "v0002"), (D.PROMOTED, "v0002")]
