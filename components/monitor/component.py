"""KFP wrappers of :func:`components.monitor.monitor.monitor` and of the reference it compares against
(:func:`kfloop.reference.build_reference`, run by the training pipeline before push)."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components._kfp import component


@component
def monitor_op(
    store_uri: str,
    model_name: str,
    source: str,
    window_start: str,
    window_end: str,
    reference_train: str,
    reference_eval: str,
    min_examples: int,
    now: str,
    scheduled_time: str,
    summary: Output[Artifact],
    live_data: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[Markdown],
    beam_pipeline_args: list = [],  # noqa: B006 (KFP list parameter default)
    close_after_seconds: float = 10.0,
):
    """Reads the prediction log of a window (+ arrived labels) and scores drift, skew, anomalies, live AUC.

    The features, the label, the per-feature drift thresholds and modes (``trigger`` / ``record`` /
    ``off``) and the TFDV schema are those stored with the champion's version (:mod:`kfloop.contract`).

    Args:
        store_uri: Model store root holding ``predictions/`` and ``feedback/``.
        model_name: Model name (the spec's ``name``).
        source: Raw CSV of the data (to rebuild the reference of a champion pushed without one).
        window_start: Window start, ISO UTC ("" = the end of the previous monitoring run, else 24 h back).
        window_end: Window end, exclusive ("" = now).
        reference_train: The champion's reference folder or training Dataset CSV ("" = the reference
            stored with the champion's version at push time).
        reference_eval: With a training CSV: the eval Dataset CSV.
        min_examples: Fewer predictions → reported, not acted upon.
        now: The monitoring clock, ISO UTC: the default ``window_end`` ("" = ``scheduled_time``).
        scheduled_time: The scheduler's time (KFP placeholder on a cluster); see :mod:`kfloop.clock`.
        beam_pipeline_args: Beam options of the statistics pipeline (e.g. a Dataflow runner for a window
            too big for one machine).
        close_after_seconds: The watermark (``MonitoringConfig.close_after_seconds``): a window closes
            only this long after its end by the wall clock. The local loop, whose servers flush every
            0.5 s and which waits for them, passes less than the cluster default.

    Returns:
        summary: The monitoring summary (JSON).
        live_data: The live dataset (CSV; labels where arrived).
        metrics: Rows, labelled rows, live AUC, every feature's drift score.
        report: Markdown table of the scores.
    """
    import dataclasses
    import json
    import os
    import tempfile

    from components.monitor import monitor as M
    from kfloop import clock, config
    from kfloop.reference import champion_reference

    window_end = window_end or clock.iso(clock.resolve(now, scheduled_time)[0])
    cfg = dataclasses.replace(
        config.MonitoringConfig(), min_examples=min_examples, close_after_seconds=close_after_seconds
    )
    version, spec, schema_path = M.version_spec(store_uri, model_name)
    if not window_start:
        window = M.next_window(store_uri, model_name, window_end or None)
        window_start, window_end = window.start.isoformat(), window.end.isoformat()
    elif not window_end:
        window_end = clock.utc_now().isoformat()
    ref = None
    if not reference_train:
        ref = champion_reference(
            store_uri,
            model_name,
            source,
            tempfile.mkdtemp(prefix="kfloop-ref-"),
            spec=spec,
            cfg=cfg,
            schema_path=schema_path,
            beam_pipeline_args=list(beam_pipeline_args),
        )
    os.makedirs(os.path.dirname(live_data.path), exist_ok=True)
    result = M.monitor(
        store_uri,
        model_name,
        window_start,
        window_end,
        reference_train,
        reference_eval,
        spec=spec,
        cfg=cfg,
        schema_path=schema_path,
        live_uri=live_data.path,
        champion_version=version,
        reference=ref,
        beam_pipeline_args=list(beam_pipeline_args),
    )
    with open(summary.path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    summary.metadata.update(
        {k: result[k] for k in ("status", "rows", "labelled_rows", "window_start", "window_end")}
    )
    metrics.log_metric("rows", result["rows"])
    metrics.log_metric("labelled_rows", result["labelled_rows"])
    metrics.log_metric("bad_records", result["bad_records"])
    if result["live_auc"] is not None:
        metrics.log_metric("live_auc", round(result["live_auc"], 6))
    for s in result["drift"]:
        if s["value"] is not None:
            metrics.log_metric(f"drift_{s['feature']}", s["value"])
    lines = [
        f"# Monitoring {model_name} ({spec.description or spec.name}): {result['status']}",
        "",
        f"Window {result['window_start']} .. {result['window_end']}: {result['rows']} predictions, "
        f"{result['labelled_rows']} labels arrived, live AUC {result['live_auc']}.",
        "",
        "| feature | measure | drift | skew | threshold | crossed |",
        "|---|---|---|---|---|---|",
    ]
    skew = {s["feature"]: s["value"] for s in result["skew"]}
    for s in result["drift"]:
        crossed = "**yes**" if s["exceeded"] else "no"
        flag = f"{crossed} (recorded only)" if s["ignored"] else crossed
        lines.append(
            f"| {s['feature']} | {s['measure']} | {s['value']} | {skew.get(s['feature'])} | {s['threshold']} | {flag} |"
        )
    if result["bad_records"]:
        reasons = {**result["bad_reasons"]["predictions"]}
        reasons.update({f"feedback: {k}": v for k, v in result["bad_reasons"]["feedback"].items()})
        listed = "; ".join(f"{k}: {v}" for k, v in reasons.items())
        lines.append(
            f"\nSkipped {result['bad_records']} bad records (not in the statistics): {listed or '-'}"
        )
    for c in result["corrupt_files"]:
        lines.append(f"\nCorrupt log file skipped: `{c['uri']}`: {c['reason']}")
    for a in result["anomalies"]:
        lines.append(
            f"\nAnomaly: {a['feature']}: {a['type']}: {a['description']} (blocking: {a['blocking']})"
        )
    with open(report.path, "w") as f:
        f.write("\n".join(lines) + "\n")


@component
def reference_op(
    spec: str,
    train_data: Input[Dataset],
    eval_data: Input[Dataset],
    reference: Output[Artifact],
    report: Output[Markdown],
    model: Input[Model] = None,
    beam_pipeline_args: list = [],  # noqa: B006 (KFP list parameter default)
):
    """The monitoring reference of a model: TFDV statistics of its (clipped) train and eval splits, and the
    distribution of its output on the eval split (output drift; when ``model`` is given).

    Push stores it beside the model version; the monitor compares live traffic against it.

    Args:
        spec: The dataset spec (YAML text or URI): which features are numeric (clipped).
        train_data: The training split (Dataset CSV).
        eval_data: The eval split (Dataset CSV).
        model: The trained SavedModel: its eval predictions are kept (output drift, eval metrics).
        beam_pipeline_args: Beam options of the statistics pipeline.

    Returns:
        reference: A folder: ``reference.json`` (clip bounds), ``train_stats.pb``, ``eval_stats.pb``.
        report: The clip bounds and row counts (Markdown).
    """
    import os

    from kfloop import spec as kspec
    from kfloop.reference import build_reference

    os.makedirs(reference.path, exist_ok=True)
    meta = build_reference(
        train_data.path,
        eval_data.path,
        reference.path,
        spec=kspec.load(spec),
        beam_pipeline_args=list(beam_pipeline_args),
        model_dir=model.path if model is not None else None,
    )
    reference.metadata.update({k: meta[k] for k in ("train_rows", "eval_rows", "clip_quantile")})
    lines = [
        "# Monitoring reference",
        "",
        f"TFDV statistics of the training split ({meta['train_rows']} rows) and the eval split "
        f"({meta['eval_rows']} rows), numeric features clipped to the training split's "
        f"[{meta['clip_quantile']}, {1 - meta['clip_quantile']}] quantiles; push stores them with the version.",
        "",
        "| feature | clip low | clip high |",
        "|---|---|---|",
        *(f"| {k} | {lo:.6g} | {hi:.6g} |" for k, (lo, hi) in sorted(meta["bounds"].items())),
    ]
    out = meta.get("output")
    lines += [
        "",
        f"Model output on the eval split ({out['task']}, {out['rows']} rows): kept for output drift."
        if out
        else "No model given: no eval predictions kept (output drift unavailable for this version).",
    ]
    with open(report.path, "w") as f:
        f.write("\n".join(lines) + "\n")
