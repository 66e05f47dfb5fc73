"""Submits compiled pipelines to a Kubeflow Pipelines API with ``kfp.Client`` (``kfloop submit``).

Before anything is sent, the arguments are checked against the compiled pipeline's inputs (a missing
required parameter, an unknown name or a value of the wrong type is an error naming the parameter) and
the host is probed (``GET /apis/v2beta1/healthz``, short timeout), so a wrong host is one clear error
instead of kfp's retries and tracebacks.

Per-task caching chosen at compile time (``pipelines/settings.py``) is kept: runs are created with
``enable_caching=None``, which leaves the compiled ``cachingOptions`` alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

#: Experiment runs go to unless told otherwise.
DEFAULT_EXPERIMENT = "kfloop"
#: Environment variable with a bearer token for the KFP API (e.g. from ``gcloud auth print-access-token``).
TOKEN_ENV = "KFP_TOKEN"
HEALTHZ_PATH = "/apis/v2beta1/healthz"
_FINISHED = ("succeeded", "failed", "skipped", "error", "canceled")


class SubmitError(RuntimeError):
    """The run cannot be submitted as asked; the message names the host, file or parameter."""


@dataclasses.dataclass(frozen=True)
class Submitted:
    """What the KFP API created.

    Attributes:
        run_id: ID of the run (or of the recurring run for a schedule).
        experiment_id: Experiment it belongs to.
        url: Where to see it in the KFP UI.
    """

    run_id: str
    experiment_id: str
    url: str


def parse_params(items: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}`` (values stay strings; see :func:`coerce_arguments`).

    Raises:
        SubmitError: an item without ``=``, an empty name, or a name given twice.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SubmitError(f"--param {item!r}: expected NAME=VALUE")
        if name in out:
            raise SubmitError(f"--param {name}: given twice")
        out[name] = value
    return out


def with_spec(package_path: str | os.PathLike, raw: dict[str, str], spec_source: str) -> dict[str, str]:
    """``raw`` plus what a dataset spec file gives the pipeline: its YAML text as ``spec`` and its name as
    ``model_name``, each only where the compiled pipeline takes that input and ``raw`` does not set it.

    The text (not the path) is passed, so the run does not depend on a file on the submitting machine.

    Raises:
        SubmitError: the spec is missing or invalid (one line naming the key), or the pipeline takes
            neither input.
    """
    from kfloop import spec as kspec

    try:
        if spec_source.startswith("gs://"):
            from kfloop import fs

            text = fs.read_text(spec_source)
        else:
            with open(spec_source, encoding="utf-8") as f:
                text = f.read()
        spec = kspec.loads(text, origin=spec_source)
    except (OSError, UnicodeDecodeError) as e:
        raise SubmitError(f"--spec {spec_source}: cannot be read ({e.__class__.__name__})") from None
    except kspec.SpecError as e:
        raise SubmitError(f"--spec {e}") from None
    inputs = pipeline_inputs(package_path)
    given = {"spec": text, "model_name": spec.name}
    if not set(given) & set(inputs):
        raise SubmitError(f"--spec: {os.path.basename(package_path)} takes no spec or model_name")
    out = dict(raw)
    for name, value in given.items():
        if name in inputs and name not in out:
            out[name] = value
    return out


def pipeline_inputs(package_path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Inputs of a compiled pipeline: ``{name: {"type", "optional", "default"}}``.

    Raises:
        SubmitError: the file is missing or is not a compiled pipeline.
    """
    import yaml

    try:
        with open(package_path) as f:
            spec = next(iter(yaml.safe_load_all(f)), None)
    except FileNotFoundError:
        raise SubmitError(f"{package_path}: no such file (run `kfloop compile` first)") from None
    except yaml.YAMLError as e:
        raise SubmitError(f"{package_path}: not YAML ({e.__class__.__name__})") from None
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise SubmitError(f"{package_path}: not a compiled KFP pipeline (no pipelineInfo / root)")
    params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {
        name: {
            "type": p.get("parameterType", "STRING"),
            "optional": bool(p.get("isOptional", False)),
            "default": p.get("defaultValue"),
        }
        for name, p in params.items()
    }


def _coerce(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "NUMBER_INTEGER":
            return int(raw)
        if kind == "NUMBER_DOUBLE":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        if kind == "BOOLEAN":
            lowered = raw.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if kind in ("STRUCT", "LIST"):
            value = json.loads(raw)
            if not isinstance(value, dict if kind == "STRUCT" else list):
                raise ValueError
            return value
    except ValueError:
        raise SubmitError(f"--param {name}={raw!r}: not a valid {kind} value") from None
    return raw


def coerce_arguments(package_path: str | os.PathLike, raw: dict[str, str]) -> dict[str, Any]:
    """Checks ``raw`` against the pipeline's inputs and converts each value to its parameter type.

    Raises:
        SubmitError: an unknown parameter, a missing required one, or a value of the wrong type.
    """
    inputs = pipeline_inputs(package_path)
    unknown = sorted(set(raw) - set(inputs))
    if unknown:
        raise SubmitError(
            f"unknown parameter {', '.join(unknown)} for {os.path.basename(package_path)} "
            f"(it takes: {', '.join(sorted(inputs))})"
        )
    missing = sorted(n for n, p in inputs.items() if not p["optional"] and n not in raw)
    if missing:
        raise SubmitError(
            f"missing parameter {', '.join(missing)} (required by {os.path.basename(package_path)}; "
            f"pass --param {missing[0]}=...)"
        )
    return {name: _coerce(name, inputs[name]["type"], value) for name, value in raw.items()}


def normalize_host(host: str | None) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash.

    Raises:
        SubmitError: empty, or not an http(s) URL.
    """
    if not host:
        raise SubmitError("--host is required (the KFP API URL, e.g. http://localhost:8080; or set KFP_HOST)")
    if not re.match(r"^https?://[^/\s]+", host):
        raise SubmitError(f"--host {host!r}: expected an http:// or https:// URL of the KFP API")
    return host.rstrip("/")


def check_host(host: str, *, token: str | None = None, timeout: float = 10.0) -> dict:
    """Probes the KFP API's healthz endpoint once.

    Returns:
        The healthz JSON (e.g. ``{"multi_user": false}``).

    Raises:
        SubmitError: unreachable host, HTTP error, or a response that is not the KFP API's.
    """
    host = normalize_host(host)
    req = urllib.request.Request(host + HEALTHZ_PATH, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:
        hint = " (authentication needed: set KFP_TOKEN)" if e.code in (401, 403) else ""
        raise SubmitError(
            f"{host} is not a reachable KFP API: GET {HEALTHZ_PATH} returned HTTP {e.code}{hint}"
        ) from None
    except urllib.error.URLError as e:
        raise SubmitError(f"cannot reach the KFP API at {host}: {e.reason}") from None
    except (TimeoutError, OSError) as e:
        raise SubmitError(f"cannot reach the KFP API at {host}: {e}") from None
    try:
        health = json.loads(body or b"{}")
    except ValueError:
        health = None
    if not isinstance(health, dict):
        raise SubmitError(f"{host} is not a KFP API: GET {HEALTHZ_PATH} did not return a JSON object")
    return health


def client(host: str, *, namespace: str | None = None, token: str | None = None):
    """A ``kfp.Client`` for a host that :func:`check_host` accepted."""
    import warnings

    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return kfp.Client(
            host=normalize_host(host),
            namespace=namespace or "kubeflow",
            existing_token=token or os.environ.get(TOKEN_ENV) or None,
        )


def _api_error(e: Exception, what: str) -> SubmitError:
    status = getattr(e, "status", None)
    body = getattr(e, "body", None)
    detail = ""
    if body:
        try:
            detail = json.loads(body).get("message") or json.loads(body).get("error") or ""
        except (ValueError, AttributeError):
            detail = str(body)[:200]
    where = f"HTTP {status}" if status else type(e).__name__
    return SubmitError(f"{what}: KFP API answered {where}{': ' + detail if detail else ''}")


def _checked_root(pipeline_root: str | None) -> str | None:
    from kfloop.app import compile as kc

    if pipeline_root is None:
        return None
    try:
        return kc.check_pipeline_root(pipeline_root)
    except kc.CompileError as e:
        raise SubmitError(str(e)) from None


def _prepare(package_path, host, arguments, token):
    token = token or os.environ.get(TOKEN_ENV) or None
    args = coerce_arguments(package_path, {k: str(v) for k, v in (arguments or {}).items()})
    check_host(host, token=token)
    return args, token


def submit(
    package_path: str | os.PathLike,
    *,
    host: str,
    arguments: dict[str, Any] | None = None,
    namespace: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    pipeline_root: str | None = None,
    service_account: str | None = None,
    token: str | None = None,
) -> Submitted:
    """Creates one run of a compiled pipeline (experiment created if missing).

    Args:
        package_path: Compiled pipeline YAML (``kfloop compile``).
        host: KFP API URL.
        arguments: Pipeline parameters; strings are converted to the parameter types.
        namespace: Kubernetes namespace (multi-user Kubeflow); ``None`` for single-user.
        experiment: Experiment name.
        run_name: Display name of the run; default ``<pipeline>-<UTC timestamp>``.
        pipeline_root: Overrides the compiled default pipeline root (``gs://bucket/prefix``).
        service_account: Kubernetes service account of the run's pods.
        token: Bearer token, default ``$KFP_TOKEN``.

    Returns:
        The created run.

    Raises:
        SubmitError: bad arguments, unreachable host, or the API refused the run.
    """
    import datetime

    args, token = _prepare(package_path, host, arguments, token)
    pipeline_root = _checked_root(pipeline_root)
    if run_name is None:
        stem = os.path.splitext(os.path.basename(package_path))[0]
        run_name = f"{stem}-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}"
    from kfloop import kfp_runs

    kfp_client = client(host, namespace=namespace, token=token)
    try:
        created = kfp_runs.create_run(
            kfp_client,
            kfp_runs.Target(package=str(package_path)),
            arguments=args,
            run_name=run_name,
            experiment=experiment,
            namespace=namespace,
            pipeline_root=pipeline_root,
            service_account=service_account,
            what=f"submitting {os.path.basename(package_path)}",
        )
    except kfp_runs.RunError as e:
        raise SubmitError(str(e)) from None
    return Submitted(
        run_id=created.run_id,
        experiment_id=created.experiment_id,
        url=f"{normalize_host(host)}/#/runs/details/{created.run_id}",
    )


def schedule(
    package_path: str | os.PathLike,
    *,
    host: str,
    cron: str,
    name: str,
    arguments: dict[str, Any] | None = None,
    namespace: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    pipeline_root: str | None = None,
    service_account: str | None = None,
    token: str | None = None,
) -> Submitted:
    """(Re)creates the recurring run ``name``: deletes those with that name in the experiment, creates one.

    Args:
        cron: KFP cron schedule, 6 fields with seconds (``"0 0 * * * *"`` = hourly).
        name: Display name of the recurring run (the key for "re"-creating it).
        Others: as :func:`submit`.

    Returns:
        The created recurring run (``run_id`` is its recurring-run ID).

    Raises:
        SubmitError: bad arguments or cron, unreachable host, or the API refused.
    """
    if len(cron.split()) != 6:
        raise SubmitError(
            f"--schedule {cron!r}: KFP cron has 6 fields (sec min hour day month weekday), e.g. '0 0 * * * *'"
        )
    args, token = _prepare(package_path, host, arguments, token)
    pipeline_root = _checked_root(pipeline_root)
    kfp_client = client(host, namespace=namespace, token=token)
    what = f"scheduling {os.path.basename(package_path)} as {name!r}"
    try:
        exp = kfp_client.create_experiment(name=experiment, namespace=namespace)
        same_name = json.dumps(
            {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
        )
        listed = kfp_client.list_recurring_runs(
            experiment_id=exp.experiment_id, page_size=100, filter=same_name
        )
        for old in listed.recurring_runs or []:
            if old.display_name == name:
                kfp_client.delete_recurring_run(old.recurring_run_id)
        created = kfp_client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=args,
            pipeline_package_path=str(package_path),
            pipeline_root=pipeline_root,
            enable_caching=None,
            service_account=service_account,
        )
    except Exception as e:
        if type(e).__name__ == "ApiException" or isinstance(e, ValueError):
            raise _api_error(e, what) from None
        raise
    return Submitted(
        run_id=created.recurring_run_id,
        experiment_id=exp.experiment_id,
        url=f"{normalize_host(host)}/#/recurringrun/details/{created.recurring_run_id}",
    )


def wait(
    host: str,
    run_id: str,
    *,
    timeout_s: float,
    namespace: str | None = None,
    token: str | None = None,
    poll_s: float = 10.0,
) -> str:
    """Polls a run until it finishes; returns its final state (``SUCCEEDED``, ``FAILED``, ...).

    Raises:
        SubmitError: not finished within ``timeout_s``, or the API refused.
    """
    import time

    kfp_client = client(host, namespace=namespace, token=token or os.environ.get(TOKEN_ENV))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            state = str(kfp_client.get_run(run_id).state or "")
        except Exception as e:
            if type(e).__name__ == "ApiException":
                raise _api_error(e, f"reading run {run_id}") from None
            raise
        if state.lower() in _FINISHED:
            return state.upper()
        if time.monotonic() >= deadline:
            raise SubmitError(
                f"run {run_id} not finished after {timeout_s:.0f} s (state {state or 'unknown'})"
            )
        time.sleep(poll_s)
