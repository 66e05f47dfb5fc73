"""Trigger: a ``retrain`` decision re-enters the loop by starting the training pipeline on a fresh window.

* ``local``: runs ``pipelines.training`` under kfp.local (:func:`kfloop.app.local.run_pipeline`), in this
  process (ingest → validate → train → evaluate against the champion → push).
* ``cluster``: submits it through the KFP API with ``kfp.Client``, from the pod of the monitoring run:
  host ``ClusterConfig.kfp_host`` unless given, the pod's own namespace (its Kubeflow profile) unless
  given, a KFP API token for audience ``pipelines.kubeflow.org`` (a mounted projected token, else one
  from the Kubernetes TokenRequest API for the pod's service account), and the run is created with
  ``ClusterConfig.service_account``, the account ``manifests/`` grants the deploy rights to. The training
  pipeline is compiled in the pod with exactly the images the monitoring pipeline was compiled with.
* ``off``: records what it would have started, starts nothing (dry run).

Record first: a KFP retry of this task must not start a second training run. Before starting, the
trigger looks for a record of the same ``decision_id``; it writes a ``submitting`` record before it
submits and the final record after, so a retry after a crash in between starts nothing and says so.

Any other decision (``no_retrain``, ``cooldown``, ``no_traffic``, ...) starts nothing; kfp 2.13's local
runner has no ``dsl.If``, so the gate is here. Every start is recorded in the store as
``monitoring/<model>/triggers/<time>-<id>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

from kfloop import clock, records

MODES = ("local", "cluster", "off")


class TriggerError(ValueError):
    """Bad trigger input (mode, window); the message names it."""


def fresh_window(cutoff: str, training_window_days: int, *, now: dt.datetime | None = None) -> dict:
    """The training window of a retraining: ``[cutoff - days, cutoff)``; empty cutoff = today (UTC)."""
    try:
        end = clock.parse_instant(cutoff, "cutoff") if cutoff else (now or clock.utc_now())
    except clock.ClockError as e:
        raise TriggerError(str(e)) from None
    if training_window_days < 1:
        raise TriggerError(f"training_window_days must be >= 1, got {training_window_days}")
    start = end - dt.timedelta(days=training_window_days)
    return {"window_start": f"{start:%Y-%m-%d}", "cutoff": f"{end:%Y-%m-%d}"}


def _instant(value: str) -> dt.datetime:
    return clock.parse_instant(value, "decided_at")


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


def _run_name(decision_id: str | None) -> str:
    return (
        f"kfloop-retrain-{decision_id}" if decision_id else f"kfloop-retrain-{clock.utc_now():%Y%m%d-%H%M%S}"
    )


def _earlier_attempt(store_uri: str, model_name: str, decision_id: str | None) -> dict | None:
    """The record of an earlier attempt for the same decision (a KFP retry of this task), or None.

    A ``started`` record is returned as it is (the run exists); a ``submitting`` one means the earlier
    attempt died between submitting and recording: the run may exist, so nothing is submitted again.
    """
    if not decision_id:
        return None
    for t in read_triggers(store_uri, model_name):
        if t.get("decision_id") != decision_id or not t.get("state"):
            continue
        again = dict(t)
        again["repeated"] = True
        if t.get("state") == "submitting":
            again["reason"] = (
                f"an earlier attempt for decision {decision_id} began submitting at {t.get('started_at')} and "
                f"did not record the outcome: not submitting twice (look for KFP run {_run_name(decision_id)!r})"
            )
        else:
            again["reason"] = f"already started for decision {decision_id} (a retry of this task): not again"
        return again
    return None


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
    images: dict | None = None,
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
        host: KFP API URL (cluster mode; "" = ``ClusterConfig.kfp_host``, the in-cluster API service).
        namespace: Namespace of the run (cluster mode; "" = the pod's own, i.e. its Kubeflow profile).
        experiment: KFP experiment (cluster mode).
        extra_arguments: More training-pipeline arguments (filtered to the ones it accepts).
        images: ``{"pipeline", "training", "serving"}`` the training run uses (cluster mode: those the
            monitoring pipeline was compiled with; required there).

    Returns:
        ``{"started": bool, "mode", "decision", "reason", "arguments", "run": {...}, "started_at",
        "finished_at", "seconds"}``; for local mode ``run`` holds the run directory.

    Raises:
        TriggerError: unknown mode, bad window, or local mode without ``pipeline_root``.
    """
    if mode not in MODES:
        raise TriggerError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    decision_id = decision.get("decision_id")
    record = {
        "trigger_id": f"decision-{decision_id}"
        if decision_id
        else f"{clock.utc_now():%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}",
        "mode": mode,
        "decision": decision.get("decision"),
        "decision_id": decision.get("decision_id"),
        "reason": decision.get("summary", ""),
        "started": False,
        "started_at": clock.iso(clock.utc_now()),
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
        earlier = _earlier_attempt(store_uri, model_name, record["decision_id"])
        if earlier is not None:
            return earlier
        job = {
            "mode": mode,
            "arguments": wanted,
            "pipeline_root": pipeline_root,
            "host": host,
            "namespace": namespace,
            "experiment": experiment,
            "images": images or {},
            "run_name": _run_name(record["decision_id"]),
        }
        record.update({"state": "submitting", "arguments": wanted})
        if record["decision_id"]:
            records.write(store_uri, model_name, "triggers", record["trigger_id"], record)
        done = start_in_fresh_interpreter(job)
        record["arguments"], record["run"], record["started"] = done["arguments"], done["run"], True
        record["state"] = "started"
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["finished_at"] = clock.iso(clock.utc_now())
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
        from kfloop.app.local import run_pipeline

        run = {"root": str(run_pipeline(func, job["pipeline_root"], **args).root)}
    else:
        run = submit_from_pod(job, args)
    return {"arguments": args, "run": run}


#: Where Kubernetes mounts a pod's own service-account credentials.
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def pod_identity(sa_dir: str = SA_DIR) -> tuple[str, str]:
    """``(namespace, service account)`` of this pod, from its mounted service-account token.

    Raises:
        TriggerError: not in a pod (no token mounted).
    """
    import base64
    import os

    try:
        with open(os.path.join(sa_dir, "namespace")) as f:
            namespace = f.read().strip()
        with open(os.path.join(sa_dir, "token")) as f:
            payload = f.read().strip().split(".")[1]
    except (OSError, IndexError):
        raise TriggerError(
            f"no service-account token under {sa_dir}: not running in a Kubernetes pod"
        ) from None
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    subject = claims.get("sub", "")  # system:serviceaccount:<namespace>:<name>
    parts = subject.split(":")
    if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
        raise TriggerError(
            f"service-account token of this pod has subject {subject!r}, not a service account"
        )
    return namespace or parts[2], parts[3]


def token_request(audience: str, seconds: int = 600) -> dict:
    """The ``TokenRequest`` the trigger sends for its KFP API token."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": int(seconds)},
    }


def kfp_token(namespace: str, service_account: str, *, api_client=None, cluster=None) -> str:
    """A KFP API token of this pod: the mounted projected token (audience ``pipelines.kubeflow.org``) if
    there is one, else a short-lived one from the TokenRequest API (``create serviceaccounts/token``).

    Raises:
        TriggerError: the API refused (names the missing right).
    """
    import os

    from kfloop import config

    cluster = cluster or config.ClusterConfig()
    path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or cluster.kfp_token_path
    if os.path.isfile(path):
        with open(path) as f:
            return f.read().strip()
    from kubernetes.client.exceptions import ApiException

    if api_client is None:
        from kubernetes import client
        from kubernetes import config as kconfig

        kconfig.load_incluster_config()
        api_client = client.ApiClient()
    body = token_request(cluster.kfp_audience)
    try:
        out = api_client.call_api(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            "POST",
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as e:
        raise TriggerError(
            f"TokenRequest for {namespace}/{service_account} (audience {cluster.kfp_audience}): HTTP {e.status} "
            f"{e.reason}; manifests/base/rbac.yaml grants 'create serviceaccounts/token' for it"
        ) from None
    return out["status"]["token"]


def submit_from_pod(job: dict, args: dict, *, sa_dir: str = SA_DIR, api_client=None) -> dict:
    """Compiles the training pipeline with the job's images and creates a KFP run of it, as the pod's
    identity, in the pod's namespace, with the service account that holds the deploy rights.

    Raises:
        TriggerError: images missing, not in a pod, or the KFP API refused.
    """
    import tempfile
    import warnings

    import kfp

    from kfloop import config
    from kfloop.app import compile as kc
    from kfloop.app import submit as ks

    cluster = config.ClusterConfig()
    try:
        imgs = kc.Images.from_dict(job.get("images") or {})
    except kc.CompileError as e:
        raise TriggerError(f"cluster mode needs the compiled images: {e}") from None
    pod_ns, pod_sa = pod_identity(sa_dir)
    namespace = job.get("namespace") or pod_ns
    host = ks.normalize_host(job.get("host") or cluster.kfp_host)
    token = kfp_token(namespace, pod_sa, api_client=api_client, cluster=cluster)
    with tempfile.TemporaryDirectory() as tmp:
        package = kc.compile_all(tmp, names=["training"], imgs=imgs)["training"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host, namespace=namespace, existing_token=token)
        try:
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=args,
                run_name=job["run_name"],
                experiment_name=job["experiment"],
                namespace=namespace,
                pipeline_root=job.get("pipeline_root") or None,
                enable_caching=None,
                service_account=cluster.service_account,
            )
        except Exception as e:
            if type(e).__name__ == "ApiException":
                raise TriggerError(
                    f"KFP API {host} refused the run in {namespace}: HTTP {getattr(e, 'status', '?')} "
                    f"{getattr(e, 'reason', '')}"
                ) from None
            raise
    return {
        "run_id": result.run_id,
        "run_name": job["run_name"],
        "host": host,
        "namespace": namespace,
        "service_account": cluster.service_account,
        "images": imgs.as_dict(),
    }
