"""The example alert rules (manifests/monitoring/prometheusrule.yaml) checked by the real promtool: its
``spec.groups`` pass ``promtool check rules``, and ``promtool test rules`` (tests/data/alert_rules_test.yaml)
shows each alert firing on the unhealthy series and not on the healthy one. The series the rules read are
the ones kfloop pushes (kfloop.ops_metrics) and the predictor serves (serving/log_queue.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kfloop import ops_metrics

ROOT = Path(__file__).resolve().parents[1]
RULE = ROOT / "manifests" / "monitoring" / "prometheusrule.yaml"
UNIT = ROOT / "tests" / "data" / "alert_rules_test.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (`make tools` installs the Debian package prometheus)"
)


def _rule() -> dict:
    (doc,) = [d for d in yaml.safe_load_all(RULE.read_text()) if d]
    return doc


def _promtool(
    tmp_path: Path, groups: list[dict]
) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    (tmp_path / "kfloop-rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    shutil.copy(UNIT, tmp_path / UNIT.name)
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=120)
    check = subprocess.run([PROMTOOL, "check", "rules", "kfloop-rules.yaml"], **run)
    test = subprocess.run([PROMTOOL, "test", "rules", UNIT.name], **run)
    return check, test


def _alerts() -> dict[str, dict]:
    return {r["alert"]: r for g in _rule()["spec"]["groups"] for r in g["rules"] if "alert" in r}


def test_the_rule_is_a_prometheus_rule_of_the_expected_alerts():
    doc = _rule()
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kfloop"
    assert set(_alerts()) == {
        "KfloopMonitoringStale",
        "KfloopFeatureDrift",
        "KfloopLiveMetricLow",
        "KfloopPredictionLogDrops",
        "KfloopCanaryRolledBack",
    }


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules(tmp_path):
    check, test = _promtool(tmp_path, _rule()["spec"]["groups"])
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check.stdout + check.stderr
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_every_alert_is_unit_tested_firing_and_quiet():
    unit = yaml.safe_load(UNIT.read_text())
    fired, quiet = set(), set()
    for t in unit["tests"]:
        for case in t["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
            # a healthy series beside the unhealthy one: the group has more input series than alerts expected
        assert len(t["input_series"]) > max(len(c["exp_alerts"]) for c in t["alert_rule_test"]), t["name"]
    assert fired == set(_alerts())
    assert quiet >= {"KfloopMonitoringStale", "KfloopPredictionLogDrops"}  # before the condition holds


@needs_promtool
def test_a_wrong_threshold_fails_the_unit_tests(tmp_path):
    groups = _rule()["spec"]["groups"]
    for g in groups:
        for r in g["rules"]:
            if r.get("alert") == "KfloopLiveMetricLow":
                r["expr"] = r["expr"].replace("< 0.7", "< 0.5")  # the weak model (0.61) no longer alerts
    check, test = _promtool(tmp_path, groups)
    assert check.returncode == 0
    assert test.returncode != 0 and "KfloopLiveMetricLow" in test.stdout + test.stderr


def test_the_rules_read_series_that_kfloop_exports():
    summary = {
        "monitored_at": "2026-03-01T12:00:00Z",
        "rows": 10,
        "labelled_rows": 5,
        "live_metrics": {"auc": 0.7, "n": 5},
        "drift": [{"feature": "f", "value": 0.2, "threshold": 0.1}],
    }
    reg = ops_metrics.registry_for("m1", summary, decision="canary.rolled_back")
    pushed = {s.name for m in reg.collect() for s in m.samples}
    served = set(
        re.findall(r'Counter\(\s*"(kfloop_[a-z_]+)"', (ROOT / "serving" / "log_queue.py").read_text())
    )
    exported = pushed | {f"{n}_total" for n in served}
    used = {n for r in _alerts().values() for n in re.findall(r"\bkfloop_[a-z_]+", r["expr"])}
    assert "kfloop_prediction_log_dropped_total" in used
    assert used <= exported, used - exported
