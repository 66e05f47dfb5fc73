"""On a real Kubeflow cluster: compile, submit the training pipeline, wait for it to succeed.

Runs only with ``KFP_HOST`` set (tests/conftest.py skips ``e2e`` tests otherwise, with the reason shown
by ``-ra``). Knobs: ``KFP_NAMESPACE``, ``KFP_EXPERIMENT``, ``KFP_TOKEN`` (bearer token),
``KFLOOP_E2E_SOURCE`` (taxi CSV the cluster can read, e.g. ``gs://bucket/taxi.csv``; required),
``KFLOOP_E2E_PARAMS`` (more pipeline parameters, ``"name=value name=value"``),
``KFLOOP_E2E_PIPELINE_ROOT`` (``gs://...``), ``KFLOOP_E2E_REGISTRY`` / ``KFLOOP_E2E_TAG`` (images the
cluster can pull), ``KFLOOP_E2E_TIMEOUT`` (seconds, default 3600).
"""

import os

import pytest

from kfloop import compile as kc
from kfloop import submit as ks

pytestmark = pytest.mark.e2e


def test_training_pipeline_succeeds_on_cluster(tmp_path):
    host = os.environ["KFP_HOST"]
    source = os.environ.get("KFLOOP_E2E_SOURCE")
    if not source:
        pytest.fail("KFLOOP_E2E_SOURCE is not set: the taxi CSV the cluster can read (gs://...)")
    package = kc.compile_all(
        tmp_path,
        registry=os.environ.get("KFLOOP_E2E_REGISTRY"),
        tag=os.environ.get("KFLOOP_E2E_TAG"),
        pipeline_root=os.environ.get("KFLOOP_E2E_PIPELINE_ROOT"),
        names=["training"],
    )["training"]
    namespace = os.environ.get("KFP_NAMESPACE")
    made = ks.submit(
        package,
        host=host,
        arguments={**ks.parse_params(os.environ.get("KFLOOP_E2E_PARAMS", "").split()), "source": source},
        namespace=namespace,
        experiment=os.environ.get("KFP_EXPERIMENT", "kfloop-e2e"),
    )
    state = ks.wait(
        host, made.run_id, timeout_s=float(os.environ.get("KFLOOP_E2E_TIMEOUT", "3600")), namespace=namespace
    )
    assert state == "SUCCEEDED", f"run {made.run_id} finished {state}: {made.url}"
