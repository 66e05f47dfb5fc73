"""KFP wrapper of :func:`components.decide.decide.decide`."""

from kfp.dsl import HTML, Artifact, Input, Markdown, Output

from components._kfp import component


@component
def decide_op(
    summary: Input[Artifact],
    canary: Input[Artifact],
    store_uri: str,
    model_name: str,
    now: str,
    scheduled_time: str,
    min_live_auc: float,
    cooldown_hours: float,
    stale_after_hours: float,
    notify_config: str,
    pushgateway: str,
    decision: Output[Artifact],
    report: Output[Markdown],
    page: Output[HTML],
):
    """Decides whether the window's findings start a retraining (with reasons, a cooldown and a backoff).

    Args:
        summary: The monitoring summary (JSON) of ``monitor_op``.
        canary: This run's canary verdict (JSON) of ``canary_op``: no retraining while one is pending.
        store_uri: Model store root (decisions are recorded under ``monitoring/<model>/decisions/``).
        model_name: Model name.
        now: The monitoring clock, ISO UTC ("" = ``scheduled_time``; see :mod:`kfloop.clock`).
        scheduled_time: The scheduler's time (KFP placeholder on a cluster).
        min_live_auc: Live AUC below this triggers.
        cooldown_hours: No second retraining within this many hours of the last one (monitoring clock).
        stale_after_hours: A gap longer than this since the last successful monitoring run (wall clock)
            sends ``monitoring.stale``.
        notify_config: Notification channels (:mod:`kfloop.notify`): retrain triggered / held.
        pushgateway: Prometheus Pushgateway URL for the run's metrics ("" = ``$KFLOOP_PUSHGATEWAY``; unset:
            none pushed).

    Returns:
        decision: The decision JSON (``decision``, ``retrain``, ``reasons``...).
        report: The decision and its reasons as Markdown (KFP dashboard).
        page: The same as HTML.
    """
    import dataclasses
    import json

    from components.decide import decide as D
    from kfloop import clock, config, store

    with open(summary.path) as f:
        found = json.load(f)
    with open(canary.path) as f:
        verdict = json.load(f)
    when, source = clock.resolve(now, scheduled_time)
    cfg = dataclasses.replace(
        config.MonitoringConfig(), min_live_auc=min_live_auc, cooldown_hours=cooldown_hours
    )
    result = D.decide(
        found,
        cfg,
        history=D.read_decisions(store_uri, model_name),
        now=when,
        known_outcomes=D.outcomes(store.ModelStore(store_uri).history(model_name)),
        canary=verdict,
    )
    result["clock_source"] = source
    D.record_decision(store_uri, model_name, result)
    from components.decide import notices

    sent = [notices.notify_decision(store_uri, model_name, result, config=notify_config)]
    sent.append(
        notices.notify_stale(
            store_uri, model_name, found, stale_after_hours=stale_after_hours, config=notify_config
        )
    )
    result["notifications"] = [n.get("event_id") for n in sent if n]
    result["metrics_push"] = notices.push_metrics(pushgateway, model_name, found, result, verdict)
    with open(decision.path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    decision.metadata.update(
        {"decision": result["decision"], "retrain": result["retrain"], "summary": result["summary"]}
    )
    with open(report.path, "w") as f:
        f.write(D.to_markdown(result, found))
    with open(page.path, "w") as f:
        f.write(D.to_html(result, found))
