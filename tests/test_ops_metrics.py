"""kfloop.ops_metrics against the real Debian ``prometheus-pushgateway``: a monitoring summary pushed, read
back from the gateway's /metrics with prometheus_client's parser; a second push replaces the model's group;
an unreachable gateway is a returned error, never an exception."""

from __future__ import annotations

import urllib.request

import pytest

from kfloop import ops_metrics
from tests.plugins.receivers import free_port

#: The shape of a recorded monitoring run (monitoring/<model>/runs/*.json), trimmed to what is read.
SUMMARY = {
    "status": "ok",
    "model_name": "m1",
    "monitored_at": "2026-03-01T12:00:00.000Z",
    "rows": 1200,
    "labelled_rows": 340,
    "live_auc": 0.71,
    "live_metrics": {"auc": 0.71, "n": 340},
    "drift": [
        {"feature": "f_num", "measure": "jensen_shannon_divergence", "value": 0.23, "threshold": 0.1,
         "exceeded": True, "ignored": False, "mode": "trigger"},
        {"feature": "f_cat", "measure": "l_infinity", "value": 0.04, "threshold": 0.15,
         "exceeded": False, "ignored": False, "mode": "trigger"},
        {"feature": "f_empty", "measure": "l_infinity", "value": None, "threshold": 0.15,
         "exceeded": False, "ignored": False, "mode": "trigger"},
    ],
}  # fmt: skip


def _scrape(addr: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("kfloop_")
    }


def _get(samples, name, **labels):
    key = (name, frozenset({"job": "kfloop-monitoring", "instance": "", **labels}.items()))
    return samples.get(key)


def test_the_summary_reads_as_the_monitor_writes_it():
    v = ops_metrics.monitoring_values(SUMMARY)
    assert v["drift"] == {"f_num": 0.23, "f_cat": 0.04}  # no score: no series
    assert v["thresholds"] == {"f_num": 0.1, "f_cat": 0.15}
    assert v["live"] == {"auc": 0.71} and v["rows"] == 1200 and v["labelled_rows"] == 340
    assert v["monitored_at"] == 1772366400.0
    assert ops_metrics.decision_counts({"decision": "retrain", "reasons": []}) == {"retrain": 1}
    assert ops_metrics.decision_counts(["a", "b", "a"]) == {"a": 2, "b": 1}
    with pytest.raises(ValueError, match="decision"):
        ops_metrics.decision_counts(3.5)


def test_metrics_arrive_at_a_real_pushgateway(gateway):
    out = ops_metrics.push_monitoring_metrics(gateway, "m1", SUMMARY, decision="retrain.triggered")
    assert out["pushed"] and out["error"] is None, out
    got = _scrape(gateway)
    assert _get(got, "kfloop_feature_drift", model="m1", feature="f_num") == 0.23
    assert _get(got, "kfloop_feature_drift", model="m1", feature="f_cat") == 0.04
    assert _get(got, "kfloop_feature_drift", model="m1", feature="f_empty") is None
    assert _get(got, "kfloop_feature_drift_threshold", model="m1", feature="f_num") == 0.1
    assert _get(got, "kfloop_live_metric", model="m1", metric="auc") == 0.71
    assert _get(got, "kfloop_rows_monitored", model="m1") == 1200
    assert _get(got, "kfloop_labelled_rows", model="m1") == 340
    assert _get(got, "kfloop_decisions_total", model="m1", decision="retrain.triggered") == 1
    assert _get(got, "kfloop_monitoring_last_success_timestamp_seconds", model="m1") == 1772366400.0

    # The next run replaces the group: its own decision, a feature without a score loses its series.
    later = {**SUMMARY, "monitored_at": "2026-03-01T13:00:00Z", "drift": SUMMARY["drift"][1:]}
    later["live_metrics"] = {"auc": None, "n": 0}
    out = ops_metrics.push_monitoring_metrics(gateway, "m1", later, decision=["canary.rolled_back"])
    assert out["pushed"], out
    got = _scrape(gateway)
    assert _get(got, "kfloop_feature_drift", model="m1", feature="f_num") is None
    assert _get(got, "kfloop_live_metric", model="m1", metric="auc") is None
    assert _get(got, "kfloop_decisions_total", model="m1", decision="retrain.triggered") is None
    assert _get(got, "kfloop_decisions_total", model="m1", decision="canary.rolled_back") == 1
    assert _get(got, "kfloop_monitoring_last_success_timestamp_seconds", model="m1") == 1772370000.0


def test_an_unset_or_unreachable_gateway_never_raises(monkeypatch):
    monkeypatch.delenv(ops_metrics.GATEWAY_ENV, raising=False)
    out = ops_metrics.push_monitoring_metrics("", "m1", SUMMARY)
    assert not out["pushed"] and ops_metrics.GATEWAY_ENV in out["skipped"] and out["error"] is None
    monkeypatch.setenv(ops_metrics.GATEWAY_ENV, f"127.0.0.1:{free_port()}")
    out = ops_metrics.push_monitoring_metrics("", "m1", SUMMARY, timeout=2)
    assert not out["pushed"] and "refused" in out["error"].lower(), out
    out = ops_metrics.push_monitoring_metrics("127.0.0.1:1", "m1", {"drift": "not a list"}, decision=3.5)
    assert not out["pushed"] and "decision" in out["error"]
