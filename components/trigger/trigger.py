"""Trigger: a ``retrain`` decision re-enters the loop by asking for the training pipeline on a fresh window.

A leaf: it imports nothing from ``pipelines/`` or ``kfloop.app`` and builds no pipeline.

* ``local``: records the request (``state: requested``, with the training-pipeline arguments); the local
  loop driver (:mod:`kfloop.app.loop`) reads the record, starts the training run under kfp.local itself and
  marks the record started (:func:`mark_started`). No kfp.local run nests inside the monitoring task.
* ``cluster``: creates a run of an already compiled / uploaded training pipeline through the KFP API
  (:func:`kfloop.kfp_runs.create_run`, the one run-creation path, also used by ``kfloop submit``), from the
  pod of the monitoring run: host ``ClusterConfig.kfp_host`` unless given, the pod's own namespace (its
  Kubeflow profile) unless given, a KFP API token for audience ``pipelines.kubeflow.org`` (a mounted
  projected token, else one from the Kubernetes TokenRequest API for the pod's service account), and the
  run is created with ``ClusterConfig.service_account``, the account ``manifests/`` grants the deploy
  rights to. ``training_pipeline`` names what to run: a compiled package (path or ``gs://`` URI, written
  by ``kfloop compile`` with the images the monitoring pipeline was compiled with) or an uploaded version
  ``pipelines/<pipeline id>/versions/<version id>``.
* ``off``: records what it would have started, starts nothing (dry run).

The training run gets the champion's dataset spec and TFDV schema (the ``spec.yaml`` / ``schema.pbtxt``
stored with its version) unless the arguments name others.

Record first: a KFP retry of this task must not start a second training run. Before starting, the
trigger looks for a record of the same ``decision_id``; it writes a ``submitting`` record before it
submits and the final record after, so a retry after a crash in between starts nothing and says so.

Any other decision (``no_retrain``, ``cooldown``, ``no_traffic``, ...) starts nothing; kfp 2.13's local
runner has no ``dsl.If``, so the gate is here. Every request is recorded in the store as
``monitoring/<model>/triggers/<time>-<id>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

from kfloop import clock, layout, records

MODES = ("local", "cluster", "off")


class TriggerError(ValueError):
    """Bad trigger input (mode, window); the message names it."""


def _day_or_instant(when: dt.datetime) -> str:
    """``2015-07-01`` at midnight UTC, else the ISO instant (data whose windows are hours long)."""
    if (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0):
        return f"{when:%Y-%m-%d}"
    return clock.iso(when)


def fresh_window(cutoff: str, training_window_days: float, *, now: dt.datetime | None = None) -> dict:
    """The training window of a retraining: ``[cutoff - days, cutoff)``; empty cutoff = ``now`` (the
    monitoring clock), else today (UTC). Days may be fractional (data in its own time)."""
    try:
        end = clock.parse_instant(cutoff, "cutoff") if cutoff else (now or clock.utc_now())
    except clock.ClockError as e:
        raise TriggerError(str(e)) from None
    if not training_window_days > 0:
        raise TriggerError(f"training_window_days must be > 0, got {training_window_days}")
    start = end - dt.timedelta(days=training_window_days)
    return {"window_start": _day_or_instant(start), "cutoff": _day_or_instant(end)}


def _instant(value: str) -> dt.datetime:
    return clock.parse_instant(value, "decided_at")


def training_arguments(pipeline, wanted: dict) -> dict:
    """The subset of ``wanted`` that the training pipeline accepts, typed as it declares them.

    Its inputs may grow over time; values that crossed a KFP ``dict`` parameter come back as JSON numbers
    (``8`` → ``8.0``), so integers are restored where the pipeline wants an ``Integer``.

    Args:
        pipeline: A ``@dsl.pipeline`` function (the caller builds it; this module builds none), or its
            inputs as ``{name: type}`` (``Integer`` / ``Float`` / ``String`` ..., or the IR's
            ``NUMBER_INTEGER`` / ``NUMBER_DOUBLE`` / ``STRING``: :func:`kfloop.kfp_runs.pipeline_inputs`).
        wanted: The arguments.

    Raises:
        TriggerError: a value does not fit the declared type (names the parameter).
    """
    if isinstance(pipeline, dict):
        ir = {"NUMBER_INTEGER": "Integer", "NUMBER_DOUBLE": "Float", "STRING": "String"}
        inputs = {k: _Typed(ir.get(v, v)) for k, v in pipeline.items()}
    else:
        spec = getattr(pipeline, "component_spec", None)
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


class _Typed:
    def __init__(self, kind: str):
        self.type = kind


def read_triggers(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded trigger, oldest first."""
    return records.read_all(
        store_uri, model_name, layout.TRIGGERS, sort_key=lambda t: t.get("started_at", "")
    )


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
        elif t.get("state") == "requested":
            again["reason"] = (
                f"already requested for decision {decision_id} (a retry of this task): not again"
            )
        else:
            again["reason"] = f"already started for decision {decision_id} (a retry of this task): not again"
        return again
    return None


def champion_spec_uri(store_uri: str, model_name: str) -> str:
    """The URI of the dataset spec stored with the champion's version ("" without a champion)."""
    from kfloop import contract
    from kfloop import store as kstore

    st = kstore.ModelStore(store_uri)
    try:
        version = st.resolve(model_name, kstore.CHAMPION)
    except kstore.StoreError:
        return ""
    return contract.spec_uri(st.model_uri(model_name, version))


def trigger(
    decision: dict,
    *,
    mode: str,
    source: str,
    store_uri: str,
    model_name: str,
    cutoff: str = "",
    training_window_days: float = 365,
    pipeline_root: str = "",
    host: str = "",
    namespace: str = "",
    experiment: str = "kfloop",
    extra_arguments: dict | None = None,
    training_pipeline: str = "",
) -> dict:
    """Asks for the training pipeline when ``decision`` says ``retrain``; returns (and records) what it did.

    Args:
        decision: A decision (:func:`components.decide.decide.decide`).
        mode: ``local``, ``cluster`` or ``off``.
        source: Raw CSV the training pipeline ingests.
        store_uri: Model store root (the new model is pushed there).
        model_name: Model name (the spec's ``name``).
        cutoff: End of the fresh training window (ISO date / instant; "" = the decision's time).
        training_window_days: Length of the fresh training window, in days of the data's time.
        pipeline_root: kfp.local root of the training run (local mode, for the loop driver) or the cluster
            pipeline-root override.
        host: KFP API URL (cluster mode; "" = ``ClusterConfig.kfp_host``, the in-cluster API service).
        namespace: Namespace of the run (cluster mode; "" = the pod's own, i.e. its Kubeflow profile).
        experiment: KFP experiment (cluster mode).
        extra_arguments: More training-pipeline arguments (cluster: filtered to the ones it accepts).
        training_pipeline: Cluster mode: the compiled training pipeline (package path / ``gs://`` URI) or
            the uploaded version ``pipelines/<id>/versions/<id>`` to run; required there.

    Returns:
        ``{"started": bool, "state", "mode", "decision", "reason", "task", "triggers" (the firing reasons:
        kind, feature, measure, value, threshold, units), "arguments", "run": {...},
        "started_at", "finished_at", "seconds"}``. Local mode: ``state`` is ``requested`` (the loop driver
        starts the run and calls :func:`mark_started`); cluster: ``started`` with the KFP run id.

    Raises:
        TriggerError: unknown mode, bad window, or cluster mode without ``training_pipeline``.
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
        "task": decision.get("task") or "binary",
        # what fired, with the task's metric names and units (e.g. live_rmse in label units)
        "triggers": [
            {k: r.get(k) for k in ("kind", "feature", "measure", "value", "threshold", "units") if k in r}
            for r in decision.get("reasons") or []
            if r.get("kind") in ("drift", "anomaly", "performance")
        ],
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
    spec_uri = champion_spec_uri(store_uri, model_name)
    if spec_uri:
        wanted["spec"] = spec_uri
        from kfloop import contract, fs

        schema_uri = contract.schema_uri(spec_uri.rsplit("/", 1)[0])
        if fs.exists(schema_uri):  # the schema that validated the champion's data validates the retrain's
            wanted["schema"] = schema_uri
    if mode == "local":
        wanted["deploy_mode"] = "local"  # a local run rolls out by moving aliases (the local server follows)
    wanted["trigger_id"] = record["trigger_id"]  # the version it makes records it (lineage: kfloop why)
    wanted.update(extra_arguments or {})
    t0 = time.perf_counter()
    if mode == "cluster" and not training_pipeline:
        raise TriggerError(
            "cluster mode needs training_pipeline: the compiled training pipeline (kfloop compile) or its "
            "uploaded version pipelines/<id>/versions/<id>"
        )
    if mode == "off":
        record["arguments"] = wanted
        record["reason"] = "mode 'off': would have started the training pipeline with these arguments"
    else:
        earlier = _earlier_attempt(store_uri, model_name, record["decision_id"])
        if earlier is not None:
            return earlier
        if mode == "local":
            record.update(
                state="requested",
                arguments=wanted,
                pipeline_root=pipeline_root,
                reason=f"{record['reason']} (local: the loop driver starts the training run from this record)",
            )
        else:
            job = {
                "mode": mode,
                "arguments": wanted,
                "pipeline_root": pipeline_root,
                "host": host,
                "namespace": namespace,
                "experiment": experiment,
                "training_pipeline": training_pipeline,
                "run_name": _run_name(record["decision_id"]),
            }
            record.update({"state": "submitting", "arguments": wanted})
            if record["decision_id"]:
                records.write(store_uri, model_name, layout.TRIGGERS, record["trigger_id"], record)
            done = start_run(job)
            record["arguments"], record["run"], record["started"] = done["arguments"], done["run"], True
            record["state"] = "started"
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["finished_at"] = clock.iso(clock.utc_now())
    record["record_uri"] = records.write(store_uri, model_name, layout.TRIGGERS, record["trigger_id"], record)
    return record


def pending_requests(store_uri: str, model_name: str) -> list[dict]:
    """Local-mode requests no one has started yet (``state: requested``), oldest first."""
    return [t for t in read_triggers(store_uri, model_name) if t.get("state") == "requested"]


def mark_started(
    store_uri: str, model_name: str, record: dict, run: dict, *, seconds: float | None = None
) -> dict:
    """Records that the loop driver started the training run a local-mode request asked for.

    Args:
        record: The request (:func:`trigger` / :func:`pending_requests`).
        run: What was started (``{"root": <kfp.local run directory>}``).
        seconds: How long the run took.

    Returns:
        The updated record (also written over the request's file).
    """
    done = dict(record, state="started", started=True, run=dict(run), finished_at=clock.iso(clock.utc_now()))
    if seconds is not None:
        done["seconds"] = round(float(seconds), 3)
    done["record_uri"] = records.write(store_uri, model_name, layout.TRIGGERS, record["trigger_id"], done)
    return done


def start_run(job: dict) -> dict:
    """Creates the cluster training run of ``job`` (see :func:`submit_from_pod`).

    Returns:
        ``{"arguments": <accepted arguments>, "run": {...}}``.
    """
    run = submit_from_pod(job, job["arguments"])
    return {"arguments": run.pop("arguments"), "run": run}


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
    """Creates a KFP run of the compiled / uploaded training pipeline ``job["training_pipeline"]``, as the
    pod's identity, in the pod's namespace, with the service account that holds the deploy rights.

    Returns:
        The created run (``run_id``, ``run_name``, ``host``, ``namespace``, ``service_account``,
        ``training_pipeline``) and ``arguments``: those it got (filtered and typed to the pipeline's inputs).

    Raises:
        TriggerError: no training pipeline named, not in a pod, or the KFP API refused.
    """
    import warnings

    import kfp

    from kfloop import config, kfp_runs

    cluster = config.ClusterConfig()
    target = job.get("training_pipeline") or ""
    if not target:
        raise TriggerError("cluster mode needs training_pipeline (a compiled package or an uploaded version)")
    try:
        which = kfp_runs.parse_target(target)
    except kfp_runs.RunError as e:
        raise TriggerError(str(e)) from None
    pod_ns, pod_sa = pod_identity(sa_dir)
    namespace = job.get("namespace") or pod_ns
    host = kfp_runs.normalize_host(job.get("host") or cluster.kfp_host)
    token = kfp_token(namespace, pod_sa, api_client=api_client, cluster=cluster)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(host=host, namespace=namespace, existing_token=token)
    try:
        inputs = kfp_runs.target_inputs(client, which)
        if inputs:
            args = training_arguments(inputs, args)
        result = kfp_runs.create_run(
            client,
            which,
            arguments=args,
            run_name=job["run_name"],
            experiment=job.get("experiment") or "kfloop",
            namespace=namespace,
            pipeline_root=job.get("pipeline_root") or None,
            service_account=cluster.service_account,
        )
    except kfp_runs.RunError as e:
        raise TriggerError(f"KFP API {host} refused the run in {namespace}: {e}") from None
    run = {
        "run_id": result.run_id,
        "run_name": job["run_name"],
        "host": host,
        "namespace": namespace,
        "service_account": cluster.service_account,
        "training_pipeline": target,
        "arguments": args,
    }
    return run
