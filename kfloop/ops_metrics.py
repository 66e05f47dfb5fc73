"""A monitoring run's numbers as Prometheus metrics, pushed to a Pushgateway (issue 27).

The predictor serves its own ``/metrics`` (``kfloop_prediction_log_dropped_total``, ...); the monitoring
pipeline is a batch job, so it pushes (``prometheus_client.push_to_gateway``, job ``kfloop-monitoring``,
grouping key ``model``). Each push replaces the model's group, so every series below is the latest run's:

* ``kfloop_feature_drift{model,feature}``: the run's drift score of each checked feature (the summary's
  ``drift[].value``: Jensen-Shannon divergence or L-infinity distance, as ``measure`` says);
* ``kfloop_feature_drift_threshold{model,feature}``: the threshold the monitor judged it against (the
  spec's), so an alert rule can say ``kfloop_feature_drift > kfloop_feature_drift_threshold``;
* ``kfloop_live_metric{model,metric}``: the live metrics on labelled rows (``live_metrics``: ``auc``,
  ``rmse``, ``mae``, ``accuracy``, ``log_loss``, ... by task; None ones are left out);
* ``kfloop_rows_monitored{model}`` and ``kfloop_labelled_rows{model}``: the window's rows / labelled rows;
* ``kfloop_decisions_total{model,decision}``: how many decisions of each kind the pushed run made (usually
  one decision: 1). A counter per run, replaced by the next push, not a running total: alert on
  ``kfloop_decisions_total{decision="canary.rolled_back"} > 0`` (or ``max_over_time`` over a range);
* ``kfloop_monitoring_last_success_timestamp_seconds{model}``: when the run succeeded (its
  ``monitored_at``, the wall clock); ``time() - ...`` is how stale monitoring is.

Only ``prometheus_client`` (imported in the functions) and kfloop's clock are used; importing runs nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

from kfloop import clock

#: The env var naming the Pushgateway when the caller passes ``""`` (unset: nothing is pushed).
GATEWAY_ENV = "KFLOOP_PUSHGATEWAY"
JOB = "kfloop-monitoring"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def monitoring_values(summary: dict) -> dict:
    """The numbers of a monitoring summary (``components.monitor.monitor.monitor``'s return / record).

    Returns:
        ``{"drift": {feature: score}, "thresholds": {feature: threshold}, "live": {metric: value},
        "rows": int | None, "labelled_rows": int | None, "monitored_at": epoch seconds | None}``:
        features without a score and metrics that are None are left out; ``live`` leaves out ``n`` (the
        labelled rows, reported as ``labelled_rows``).
    """
    drift, thresholds = {}, {}
    for s in summary.get("drift") or []:
        if not isinstance(s, dict) or not isinstance(s.get("feature"), str):
            continue
        value = _number(s.get("value"))
        if value is not None:
            drift[s["feature"]] = value
            t = _number(s.get("threshold"))
            if t is not None:
                thresholds[s["feature"]] = t
    live = {
        str(k): float(v)
        for k, v in (summary.get("live_metrics") or {}).items()
        if k != "n" and _number(v) is not None
    }
    when = None
    if summary.get("monitored_at"):
        try:
            when = clock.parse(summary["monitored_at"]).timestamp()
        except clock.ClockError:
            when = None
    rows, labelled = _number(summary.get("rows")), _number(summary.get("labelled_rows"))
    return {
        "drift": drift,
        "thresholds": thresholds,
        "live": live,
        "rows": None if rows is None else int(rows),
        "labelled_rows": None if labelled is None else int(labelled),
        "monitored_at": when,
    }


def decision_counts(decision) -> dict[str, int]:
    """The decisions of a run as ``{decision: count}``.

    Args:
        decision: None (none); a string (one decision); a decision record with a ``decision`` string
            (``components.decide``'s); an iterable of strings; or a mapping ``{decision: count}``.

    Raises:
        ValueError: anything else (the message names the value).
    """
    if decision is None:
        return {}
    if isinstance(decision, str):
        return {decision: 1} if decision else {}
    if isinstance(decision, Mapping):
        if isinstance(decision.get("decision"), str):
            return {decision["decision"]: 1}
        out = {}
        for k, v in decision.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"decision counts must map names to counts >= 0, got {k!r}: {v!r}")
            out[k] = v
        return out
    if isinstance(decision, Iterable):
        out: dict[str, int] = {}
        for d in decision:
            if not isinstance(d, str) or not d:
                raise ValueError(f"a decision must be a non-empty string, got {d!r}")
            out[d] = out.get(d, 0) + 1
        return out
    raise ValueError(f"decision must be a string, a decision record, a list or counts, got {decision!r}")


def registry_for(model: str, summary: dict, *, decision=None, now: float | None = None):
    """A ``prometheus_client.CollectorRegistry`` holding the run's metrics (see the module docstring).

    Args:
        model: Model name (label ``model``).
        summary: The monitoring summary.
        decision: The run's decision(s) (:func:`decision_counts`).
        now: Last-success time (epoch seconds) when the summary has no ``monitored_at``; default: now.
    """
    import time

    from prometheus_client import CollectorRegistry, Counter, Gauge

    v = monitoring_values(summary)
    reg = CollectorRegistry()
    drift = Gauge(
        "kfloop_feature_drift",
        "Drift score of a feature in the last monitoring run",
        ["model", "feature"],
        registry=reg,
    )
    thr = Gauge(
        "kfloop_feature_drift_threshold",
        "The drift threshold of a feature (the spec's)",
        ["model", "feature"],
        registry=reg,
    )
    for feature, score in v["drift"].items():
        drift.labels(model, feature).set(score)
        if feature in v["thresholds"]:
            thr.labels(model, feature).set(v["thresholds"][feature])
    live = Gauge(
        "kfloop_live_metric", "Live metric of the last monitoring run", ["model", "metric"], registry=reg
    )
    for metric, value in v["live"].items():
        live.labels(model, metric).set(value)
    rows = Gauge("kfloop_rows_monitored", "Rows in the last monitoring window", ["model"], registry=reg)
    labelled = Gauge(
        "kfloop_labelled_rows", "Labelled rows in the last monitoring window", ["model"], registry=reg
    )
    if v["rows"] is not None:
        rows.labels(model).set(v["rows"])
    if v["labelled_rows"] is not None:
        labelled.labels(model).set(v["labelled_rows"])
    decisions = Counter(
        "kfloop_decisions",
        "Decisions made by the last monitoring run, by kind",
        ["model", "decision"],
        registry=reg,
    )
    for name, count in decision_counts(decision).items():
        decisions.labels(model, name).inc(count)
    last = Gauge(
        "kfloop_monitoring_last_success_timestamp_seconds",
        "When the last monitoring run succeeded (epoch seconds)",
        ["model"],
        registry=reg,
    )
    when = v["monitored_at"]
    last.labels(model).set(when if when is not None else (time.time() if now is None else now))
    return reg


def push_monitoring_metrics(
    gateway: str,
    model: str,
    summary: dict,
    *,
    decision=None,
    job: str = JOB,
    timeout: float = 10.0,
) -> dict:
    """Pushes a monitoring run's metrics to a Pushgateway (grouping key ``model``). Never raises.

    Args:
        gateway: ``host:port`` or URL of the Pushgateway; ``""``: the env var ``KFLOOP_PUSHGATEWAY``
            (unset or empty: nothing is pushed).
        model: Model name.
        summary: The monitoring summary (:func:`monitoring_values` says what is read).
        decision: The run's decision(s) (:func:`decision_counts`): e.g. ``"retrain.triggered"``, the
            decide step's record, or ``["retrain.held", "canary.rolled_back"]``.
        job: The Pushgateway job.
        timeout: Seconds for the push.

    Returns:
        ``{"pushed": bool, "gateway": str, "job": str, "skipped": str | None, "error": str | None,
        "series": int}`` (``series``: samples pushed).
    """
    target = str(gateway or "").strip() or os.environ.get(GATEWAY_ENV, "").strip()
    out = {"pushed": False, "gateway": target, "job": job, "skipped": None, "error": None, "series": 0}
    if not target:
        out["skipped"] = f"no Pushgateway configured (pass one or set {GATEWAY_ENV})"
        return out
    try:
        from prometheus_client import push_to_gateway

        reg = registry_for(model, summary, decision=decision)
        out["series"] = sum(len(m.samples) for m in reg.collect())
        push_to_gateway(target, job=job, registry=reg, grouping_key={"model": model}, timeout=timeout)
        out["pushed"] = True
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"[:1000]
    return out
