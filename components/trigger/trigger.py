"""Trigger: a ``retrain`` decision re-enters the loop by starting the training pipeline on a fresh window.

* ``local``: runs ``pipelines.training`` under kfp.local (:func:`kfloop.local.run_pipeline`), in this
  process (ingest → validate → train → evaluate against the champion → push).
* ``cluster``: submits it through the KFP API with ``kfp.Client`` (``host`` given, or in-cluster
  credentials when ``host`` is empty: the default client of a pod in the Kubeflow namespace).
* ``off``: records what it would have started, starts nothing (dry run).

Any other decision (``no_retrain``, ``cooldown``, ``no_traffic``, ...) starts nothing; kfp 2.13's local
runner has no ``dsl.If``, so the gate is here. Every start is recorded in the store as
``monitoring/<model>/triggers/<time>-<id>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

from kfloop import records
from kfloop.replay import iso_ms, utc_now

MODES = ("local", "cluster", "off")


class TriggerError(ValueError):
    """Bad trigger input (mode, window); the message names it."""


def fresh_window(cutoff: str, training_window_days: int, *, now: dt.datetime | None = None) -> dict:
    """The training window of a retraining: ``[cutoff - days, cutoff)``; empty cutoff = today (UTC)."""
    from components.monitor.monitor import MonitorError, parse_instant

    try:
        end = parse_instant(cutoff, "cutoff") if cutoff else (now or utc_now())
    except MonitorError as e:
        raise TriggerError(str(e)) from None
    if training_window_days < 1:
        raise TriggerError(f"training_window_days must be >= 1, got {training_window_days}")
    start = end - dt.timedelta(days=training_window_days)
    return {"window_start": f"{start:%Y-%m-%d}", "cutoff": f"{end:%Y-%m-%d}"}


def _instant(value: str) -> dt.datetime:
    from components.monitor.monitor import parse_instant

    return parse_instant(value, "decided_at")


def training_arguments(pipeline_func, wanted: dict) -> dict:
    """The subset of ``wanted`` that the training pipeline accepts, typed as it declares them.

    Its inputs may grow over time; values that crossed a KFP ``dict`` parameter come back as JSON numbers
    (``8`` → ``8.0``), so integers are restored where the pipeline wants an ``Integer``.

    Raises:
        TriggerError: a value does not fit the declared type (names the parameter).
    """
    spec = getattr(pipeline_func, "component_spec", None)
    inputs = dict(spec.inputs or {}) if spec is not None else {}
    out = {}
    for name, value in wanted.items():
        if value is None or (inputs and name not in inputs):
            continue
        kind = inputs[name].type if name in inputs else None
        try:
            if kind == "Integer":
                if float(value) != int(float(value)):
                    raise ValueError
                value = int(float(value))
            elif kind == "Float":
                value = float(value)
            elif kind == "String":
                value = str(value)
        except (TypeError, ValueError):
            raise TriggerError(f"training-pipeline argument {name}={value!r} is not a valid {kind}") from None
        out[name] = value
    return out


def read_triggers(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded trigger, oldest first."""
    return records.read_all(store_uri, model_name, "triggers", sort_key=lambda t: t.get("started_at", ""))


def trigger(
    decision: dict,
    *,
    mode: str,
    source: str,
    store_uri: str,
    model_name: str,
    cutoff: str = "",
    training_window_days: int = 365,
    pipeline_root: str = "",
    host: str = "",
    namespace: str = "",
    experiment: str = "kfloop",
    extra_arguments: dict | None = None,
) -> dict:
    """Starts the training pipeline when ``decision`` says ``retrain``; returns (and records) what it did.

    Args:
        decision: A decision (:func:`components.decide.decide.decide`).
        mode: ``local``, ``cluster`` or ``off``.
        source: Raw taxi CSV the training pipeline ingests.
        store_uri: Model store root (the new model is pushed there).
        model_name: Model name.
        cutoff: End of the fresh training window (ISO date; "" = today, UTC).
        training_window_days: Length of the fresh training window.
        pipeline_root: kfp.local root (local mode, required there) or the cluster pipeline root override.
        host: KFP API URL (cluster mode; "" = in-cluster client).
        namespace: Kubernetes namespace (cluster mode, multi-user Kubeflow).
        experiment: KFP experiment (cluster mode).
        extra_arguments: More training-pipeline arguments (filtered to the ones it accepts).

    Returns:
        ``{"started": bool, "mode", "decision", "reason", "arguments", "run": {...}, "started_at",
        "finished_at", "seconds"}``; for local mode ``run`` holds the run directory.

    Raises:
        TriggerError: unknown mode, bad window, or local mode without ``pipeline_root``.
    """
    if mode not in MODES:
        raise TriggerError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    record = {
        "trigger_id": f"{utc_now():%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}",
        "mode": mode,
        "decision": decision.get("decision"),
        "decision_id": decision.get("decision_id"),
        "reason": decision.get("summary", ""),
        "started": False,
        "started_at": iso_ms(utc_now()),
        "run": {},
    }
    if not decision.get("retrain"):
        record["reason"] = f"decision {decision.get('decision')!r}: nothing to start"
        return record
    # "" cutoff = the decision's time: the monitoring clock (kfloop.clock), not this pod's wall clock.
    decided = _instant(decision["decided_at"]) if decision.get("decided_at") else None
    window = fresh_window(cutoff, training_window_days, now=decided)
    wanted = {"source": source, "store_uri": store_uri, "model_name": model_name, **window}
    if mode == "local":
        wanted["deploy_mode"] = "local"  # a local run rolls out by moving aliases (the local server follows)
    wanted.update(extra_arguments or {})
    t0 = time.perf_counter()
    if mode == "local" and not pipeline_root:
        raise TriggerError("local mode needs pipeline_root (where kfp.local writes the run)")
    if mode == "off":
        record["arguments"] = wanted
        record["reason"] = "mode 'off': would have started the training pipeline with these arguments"
    else:
        job = {
            "mode": mode,
            "arguments": wanted,
            "pipeline_root": pipeline_root,
            "host": host,
            "namespace": namespace,
            "experiment": experiment,
        }
        done = start_in_fresh_interpreter(job)
        record["arguments"], record["run"], record["started"] = done["arguments"], done["run"], True
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["finished_at"] = iso_ms(utc_now())
    if record["started"] or mode == "off":
        record["record_uri"] = records.write(store_uri, model_name, "triggers", record["trigger_id"], record)
    return record


def start_in_fresh_interpreter(job: dict) -> dict:
    """Starts the training pipeline (kfp.local run or KFP API submission) from a fresh interpreter.

    Inside a KFP task (``_KFP_RUNTIME=true``) kfp's authoring API is not loaded, so the pipeline cannot be
    built there; :mod:`components.trigger.run_local` builds it in a subprocess without that flag.

    Returns:
        ``{"arguments": <accepted arguments>, "run": {...}}``.

    Raises:
        TriggerError: the run or submission failed (its last output lines are in the message).
    """
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    proc = subprocess.run(
        [sys.executable, "-m", "components.trigger.run_local", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise TriggerError(
            f"starting the training pipeline ({job['mode']}) failed (exit {proc.returncode}):\n{tail}"
        )
    return json.loads(lines[-1])


def start(job: dict) -> dict:
    """Builds the training pipeline and runs (``local``) or submits (``cluster``) it; see
    :func:`start_in_fresh_interpreter`."""
    from pipelines import training

    func = training.create_pipeline()
    args = training_arguments(func, job["arguments"])
    if job["mode"] == "local":
        from kfloop.local import run_pipeline

        run = {"root": str(run_pipeline(func, job["pipeline_root"], **args).root)}
    else:
        run = _submit(func, args, job["host"], job["namespace"], job["experiment"], job["pipeline_root"])
    return {"arguments": args, "run": run}


def _submit(
    pipeline_func, args: dict, host: str, namespace: str, experiment: str, pipeline_root: str
) -> dict:
    """Creates a KFP run of the training pipeline (``kfp.Client``; in-cluster config without ``host``)."""
    import kfp

    from kfloop import submit as ks

    if host:
        ks.check_host(host)
        client = ks.client(host, namespace=namespace or None)
    else:
        client = kfp.Client(namespace=namespace or "kubeflow")  # in-cluster service account credentials
    run_name = f"kfloop-retrain-{utc_now():%Y%m%d-%H%M%S}"
    result = client.create_run_from_pipeline_func(
        pipeline_func,
        arguments=args,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace or None,
        pipeline_root=pipeline_root or None,
    )
    run_id = result.run_id
    return {"run_id": run_id, "run_name": run_name, "host": host or "(in-cluster)"}
