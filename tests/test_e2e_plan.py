"""``make e2e`` without a cluster: skipped with a reason by make, and its dry run walks every step (images
from ``kfloop compile --print-images``' source, compile, manifests, training, serving, V1 + V2 requests,
feedback, monitoring, cleanup) and builds nothing."""

import os
import subprocess
import sys

from tests.cluster_checks import ROOT


def test_make_e2e_skips_without_kfp_host():
    env = {k: v for k, v in os.environ.items() if k != "KFP_HOST"}
    proc = subprocess.run(
        ["make", "-s", "-o", ".venv/.stamp", "-o", "tools", "e2e"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "make e2e: skipped" in proc.stdout, proc.stdout + proc.stderr


def test_dry_run_plan_has_every_step():
    env = {k: v for k, v in os.environ.items() if k != "KFP_HOST"}
    env["KFLOOP_E2E_REGISTRY"], env["KFLOOP_E2E_TAG"] = "eu.gcr.io/acme", "sha-7"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.e2e.loop", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [line.split(":")[0] for line in proc.stdout.splitlines() if line.startswith("e2e ")]
    assert steps == [
        "e2e images",
        "e2e compile",
        "e2e manifests",
        "e2e training",
        "e2e serving",
        "e2e predict",
        "e2e feedback",
        "e2e monitoring",
        "e2e cleanup",
    ]
    assert "eu.gcr.io/acme/kfloop-training:sha-7" in proc.stdout and "not built here" in proc.stdout
    assert "kfloop.dev/e2e=" in proc.stdout
    assert "docker" not in proc.stdout
