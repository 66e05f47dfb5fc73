"""KFP wrapper of :func:`components.canary.canary.judge`."""

from kfp.dsl import HTML, Artifact, Markdown, Metrics, Output

from components._kfp import component


@component
def canary_op(
    store_uri: str,
    model_name: str,
    now: str,
    scheduled_time: str,
    window_end: str,
    mode: str,
    namespace: str,
    margin: float,
    confidence: float,
    max_rows: int,
    max_checks: int,
    serving_image: str,
    promotion_policy: str,
    approval_expiry_hours: float,
    approval_on_expiry: str,
    notify_config: str,
    verdict: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    page: Output[HTML],
):
    """Judges the ``canary`` version against the champion on live traffic: promote, keep waiting or roll back.

    Args:
        store_uri: Model store root (prediction log, feedback, aliases; verdicts are recorded under
            ``monitoring/<model>/canary/``).
        model_name: Model name.
        now: The monitoring clock, ISO UTC ("" = ``scheduled_time``).
        scheduled_time: The scheduler's time (KFP placeholder on a cluster).
        window_end: End of the log read, exclusive ("" = ``now``).
        mode: ``local`` (aliases; the local server hot-reloads) or ``cluster`` (InferenceService too).
        namespace: Kubernetes namespace of the InferenceService ("" = ``DeployConfig.namespace``).
        margin: Non-inferiority margin in AUC.
        confidence: Confidence level of the interval.
        max_rows: Labelled rows after which an undecided canary is decided by the stated rule.
        max_checks: Waiting checks after which the same happens.
        serving_image: Predictor image a cluster promote / rollback renders (``kfloop compile`` embeds the
            one it compiled for; "" = kfloop.config's default).
        promotion_policy: ``auto`` (promote on the evidence) or ``approval`` (record a pending approval and
            notify; ``kfloop approve|reject`` decides, the next run applies it).
        approval_expiry_hours: A pending approval expires after this long (monitoring clock).
        approval_on_expiry: ``keep`` (the champion stays, the canary is rolled back) or ``promote``.
        notify_config: The notification channels' config file (:mod:`kfloop.notify`; "" =
            ``$KFLOOP_NOTIFY_CONFIG``, unset: events are only recorded in the store).

    Returns:
        verdict: The verdict JSON (``action``, ``verdict``, ``reasons``, ``comparison``...).
        metrics: Both values of the task's metric (``auc`` / ``mse`` / ``log_loss``), the oriented
            difference and its interval, rows (KFP dashboard).
        report: The verdict as Markdown.
        page: The same as HTML.
    """
    import dataclasses
    import json

    from components.canary import canary as C
    from kfloop import clock, config

    when, source = clock.resolve(now, scheduled_time)
    end = clock.parse(window_end) if window_end else None
    cmp_cfg = dataclasses.replace(config.ComparisonConfig(), margin=margin, confidence=confidence)
    can_cfg = dataclasses.replace(config.CanaryConfig(), max_rows=max_rows, max_checks=max_checks)
    appr_cfg = config.ApprovalConfig(
        policy=promotion_policy, expiry_hours=approval_expiry_hours, on_expiry=approval_on_expiry
    )
    result = C.judge(
        store_uri,
        model_name,
        now=when,
        window_end=end,
        cmp_cfg=cmp_cfg,
        canary_cfg=can_cfg,
        mode=mode,
        namespace=namespace,
        image=serving_image or config.SERVING_IMAGE,
        approval_cfg=appr_cfg,
        notify_config=notify_config,
    )
    result["clock_source"] = source
    with open(verdict.path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    verdict.metadata.update({"action": result["action"], "verdict": result["verdict"]})
    c = result.get("comparison") or {}
    m = c.get("metric", "auc")  # the task's metric: auc, mse, log_loss
    names = {"challenger": f"{m}_canary", "champion": f"{m}_champion", "diff": f"{m}_diff"}
    names.update(low=f"{m}_diff_low", high=f"{m}_diff_high")
    for key, name in names.items():
        if c.get(key) is not None:
            metrics.log_metric(name, round(c[key], 6))
    if c:
        metrics.log_metric("rows", c["rows"])
    with open(report.path, "w") as f:
        f.write(C.to_markdown(result))
    with open(page.path, "w") as f:
        f.write(C.to_html(result))
