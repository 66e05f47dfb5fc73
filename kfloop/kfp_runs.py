"""The one path that creates a Kubeflow Pipelines run (``kfp.Client``): ``kfloop submit`` and the retrain
trigger both go through :func:`create_run`.

What to run (:class:`Target`, from :func:`parse_target`): a compiled pipeline package (a local path or a
``gs://`` URI of the YAML ``kfloop compile`` wrote) or an uploaded pipeline version, named
``pipelines/<pipeline id>/versions/<version id>``. Runs are created with ``enable_caching=None``, which
keeps the per-task caching compiled into the IR.

The caller builds the ``kfp.Client`` (its host, namespace and token are the caller's business: a
workstation's token, a pod's service-account token); ``kfp`` and ``yaml`` are imported by the functions
that need them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

_VERSION = re.compile(r"^pipelines/(?P<pipeline>[^/\s]+)/versions/(?P<version>[^/\s]+)$")


class RunError(RuntimeError):
    """A run cannot be created as asked; the message names the target or what the API answered."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A compiled package (``package``) or an uploaded version (``pipeline_id`` + ``version_id``)."""

    package: str = ""
    pipeline_id: str = ""
    version_id: str = ""


def parse_target(text: str) -> Target:
    """``pipelines/<id>/versions/<id>`` → an uploaded version; anything else → a package path / URI.

    Raises:
        RunError: empty.
    """
    text = str(text or "").strip()
    if not text:
        raise RunError("no pipeline to run: give a compiled package or pipelines/<id>/versions/<id>")
    m = _VERSION.match(text)
    if m:
        return Target(pipeline_id=m["pipeline"], version_id=m["version"])
    return Target(package=text)


def normalize_host(host: str | None) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash.

    Raises:
        RunError: empty, or not an http(s) URL.
    """
    if not host:
        raise RunError("the KFP API URL is empty (e.g. http://localhost:8080)")
    if not re.match(r"^https?://[^/\s]+", host):
        raise RunError(f"{host!r}: expected an http:// or https:// URL of the KFP API")
    return host.rstrip("/")


def ir_inputs(ir: dict) -> dict[str, str]:
    """``{parameter: IR type}`` (``STRING``, ``NUMBER_INTEGER``, ...) of a compiled pipeline's root."""
    params = ((ir.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    return {name: p.get("parameterType", "STRING") for name, p in params.items()}


def read_package(uri: str) -> dict:
    """The IR of a compiled package (local path or ``gs://``).

    Raises:
        RunError: missing, not YAML, or not a compiled pipeline.
    """
    import yaml

    from kfloop import fs

    try:
        text = fs.read_text(uri)
    except (FileNotFoundError, OSError) as e:
        raise RunError(f"compiled pipeline {uri}: cannot be read ({e})") from None
    try:
        ir = next(iter(yaml.safe_load_all(text)), None)
    except yaml.YAMLError as e:
        raise RunError(f"compiled pipeline {uri}: not YAML ({type(e).__name__})") from None
    if not isinstance(ir, dict) or "pipelineInfo" not in ir or "root" not in ir:
        raise RunError(f"compiled pipeline {uri}: not a compiled KFP pipeline (no pipelineInfo / root)")
    return ir


def target_inputs(client, target: Target) -> dict[str, str]:
    """The inputs of what ``target`` runs (``{}`` when an uploaded version does not say)."""
    if target.package:
        return ir_inputs(read_package(target.package))
    try:
        version = client.get_pipeline_version(target.pipeline_id, target.version_id)
    except Exception as e:
        raise _api_error(e, f"reading pipeline version {target.pipeline_id}/{target.version_id}") from None
    spec = getattr(version, "pipeline_spec", None)
    return ir_inputs(spec) if isinstance(spec, dict) else {}


def _api_error(e: Exception, what: str) -> Exception:
    if type(e).__name__ != "ApiException" and not isinstance(e, ValueError):
        return e
    status = getattr(e, "status", None)
    body = getattr(e, "body", None)
    detail = ""
    if body:
        try:
            parsed = json.loads(body)
            detail = parsed.get("message") or parsed.get("error") or ""
        except (ValueError, AttributeError):
            detail = str(body)[:200]
    where = f"HTTP {status}" if status else type(e).__name__
    return RunError(f"{what}: KFP API answered {where}{': ' + detail if detail else ''}")


@dataclasses.dataclass(frozen=True)
class Created:
    """The run the API created: its id and experiment."""

    run_id: str
    experiment_id: str


def create_run(
    client,
    target: Target,
    *,
    arguments: dict[str, Any],
    run_name: str,
    experiment: str,
    namespace: str | None = None,
    pipeline_root: str | None = None,
    service_account: str | None = None,
    what: str = "",
) -> Created:
    """Creates one run of ``target`` (its experiment created if missing).

    Args:
        client: A ``kfp.Client``.
        target: What to run (:func:`parse_target`).
        arguments: Pipeline parameters, already typed.
        run_name: Display name of the run.
        experiment: Experiment name.
        namespace: Kubernetes namespace (multi-user Kubeflow); ``None`` for single-user.
        pipeline_root: Overrides the compiled default pipeline root.
        service_account: Kubernetes service account of the run's pods.
        what: How an error names this action (default ``creating run '<run_name>'``).

    Raises:
        RunError: the target cannot be read, or the API refused (status and message).
    """
    import os
    import tempfile

    from kfloop import fs

    what = what or f"creating run {run_name!r}"
    try:
        if target.package:
            with tempfile.TemporaryDirectory(prefix="kfloop-run-") as tmp:
                path = target.package
                if fs.is_gcs(path):
                    path = os.path.join(tmp, "pipeline.yaml")
                    fs.write_text(path, fs.read_text(target.package))
                elif not os.path.isfile(path):
                    raise RunError(f"compiled pipeline {path}: no such file (run `kfloop compile` first)")
                result = client.create_run_from_pipeline_package(
                    str(path),
                    arguments=arguments,
                    run_name=run_name,
                    experiment_name=experiment,
                    namespace=namespace,
                    pipeline_root=pipeline_root,
                    enable_caching=None,  # keep the per-task choices compiled into the IR
                    service_account=service_account,
                )
            run = result.run_info
            return Created(run_id=run.run_id, experiment_id=run.experiment_id or "")
        exp = client.create_experiment(name=experiment, namespace=namespace)
        run = client.run_pipeline(
            experiment_id=exp.experiment_id,
            job_name=run_name,
            params=arguments,
            pipeline_id=target.pipeline_id,
            version_id=target.version_id,
            pipeline_root=pipeline_root,
            enable_caching=None,
            service_account=service_account,
        )
        return Created(run_id=run.run_id, experiment_id=exp.experiment_id)
    except RunError:
        raise
    except Exception as e:
        raise _api_error(e, what) from None
