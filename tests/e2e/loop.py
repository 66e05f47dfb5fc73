"""``make e2e``: the whole loop on a real Kubeflow Pipelines + KServe cluster, one line per step.

Builds and pushes nothing: the images must already be in the registry (``kfloop compile --print-images``
names them; CI pushes them). Steps: images → compile → apply manifests → training run (deploys the
model) → InferenceService Ready → a V1 and a V2 request through its URL → feedback for them → one
monitoring run → cleanup. Everything it creates carries the label ``kfloop.dev/e2e=<id>`` (Kubernetes
objects it created, the KFP experiment ``kfloop-e2e-<id>``, a fresh store prefix ``<store>/e2e-<id>``) and
is deleted at the end unless ``--keep``; objects that existed before (an installed kfloop) are left alone.

Environment: ``KFP_HOST`` (required), ``KFP_TOKEN`` (bearer token if the API needs one),
``KFP_NAMESPACE`` (profile namespace, default ``kfloop``), ``KFLOOP_E2E_SOURCE`` (taxi CSV the cluster
can read, ``gs://...``), ``KFLOOP_E2E_STORE`` (a ``gs://`` prefix for a scratch store),
``KFLOOP_E2E_PIPELINE_ROOT`` (``gs://...``), ``KFLOOP_E2E_REGISTRY`` / ``KFLOOP_E2E_TAG`` (pushed images),
``KFLOOP_E2E_OVERLAY`` (default ``manifests/overlays/gke``), ``KFLOOP_E2E_INGRESS`` (optional: send the
requests to this URL with the InferenceService's host in the ``Host`` header, e.g. the Istio ingress
gateway), ``KFLOOP_E2E_TIMEOUT`` (seconds per run, default 3600).

``--dry-run`` prints the plan (the commands and requests, nothing sent); ``--keep`` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LABEL = "kfloop.dev/e2e"


class E2EError(RuntimeError):
    """A step failed; the message says what it saw."""


def say(step: str, what: str) -> None:
    print(f"e2e {step}: {what}", flush=True)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        raise E2EError(f"{name} is not set (see tests/e2e/loop.py)")
    return value


def sh(argv: list[str], *, stdin: str | None = None, dry: bool = False) -> str:
    if dry:
        return ""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise E2EError(f"{' '.join(argv[:4])} ...: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def e2e_spec():
    """The dataset spec of the e2e run: ``$KFLOOP_E2E_SPEC`` (default the taxi example's)."""
    from kfloop import spec as kspec

    return kspec.load(os.environ.get("KFLOOP_E2E_SPEC") or str(ROOT / "examples" / "taxi" / "spec.yaml"))


def sample_rows(n: int = 3, spec=None) -> list[dict]:
    """``n`` raw rows of the local CSV (``$KFLOOP_E2E_DATA``, default the first under data/: ``make data``),
    the spec's model features only, JSON-ready."""
    import csv

    spec = spec or e2e_spec()
    path = os.environ.get("KFLOOP_E2E_DATA") or next((ROOT / "data").rglob("*.csv"), None)
    if path is None:
        raise E2EError("no CSV under data/ (run `make data`, or set KFLOOP_E2E_DATA)")
    names = list(spec.input_names)
    rows = []
    with open(path) as f:
        for rec in csv.DictReader(f):
            rows.append({k: _num(rec.get(k)) for k in names})
            if len(rows) == n:
                break
    return rows


def _num(v):
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def post(
    url: str, body: dict, *, host: str | None, request_id: str | None = None, token: str | None = None
) -> tuple[int, dict, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if host:
        req.add_header("Host", host)
    if request_id:
        req.add_header("X-Request-Id", request_id)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make e2e", description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep everything created (for inspection)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    args = p.parse_args(argv)
    dry = args.dry_run
    from kfloop import config
    from kfloop.app import compile as kc
    from kfloop.app import submit as ks

    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    host = os.environ.get("KFP_HOST", "http://KFP_HOST" if dry else None) or env("KFP_HOST")
    ns = os.environ.get("KFP_NAMESPACE", config.ClusterConfig().namespace)
    get = (lambda n: os.environ.get(n, f"gs://{n}")) if dry else env
    source, store_root, root = (
        get("KFLOOP_E2E_SOURCE"),
        get("KFLOOP_E2E_STORE"),
        get("KFLOOP_E2E_PIPELINE_ROOT"),
    )
    store = f"{store_root.rstrip('/')}/e2e-{run_id}"
    overlay = ROOT / os.environ.get("KFLOOP_E2E_OVERLAY", "manifests/overlays/gke")
    timeout = float(os.environ.get("KFLOOP_E2E_TIMEOUT", "3600"))
    experiment = f"kfloop-e2e-{run_id}"
    created: list[str] = []  # kind/name of Kubernetes objects this run created
    runs: list[str] = []
    registry, tag = os.environ.get("KFLOOP_E2E_REGISTRY"), os.environ.get("KFLOOP_E2E_TAG")
    ok = False
    try:
        imgs = kc.images(registry, tag)
        say(
            "images",
            " ".join(f"{k}={v}" for k, v in imgs.as_dict().items()) + " (not built here: must be pushed)",
        )
        out = ROOT / "build" / "e2e"
        packages = kc.compile_all(out, registry=registry, tag=tag, pipeline_root=root)
        say("compile", ", ".join(f"{k}={v.relative_to(ROOT)}" for k, v in packages.items()))

        import yaml

        objs = [d for d in yaml.safe_load_all(sh(["kubectl", "kustomize", str(overlay)])) if d]
        fresh = []
        for o in objs:
            ref = f"{o['kind'].lower()}/{o['metadata']['name']}"
            where = ["-n", o["metadata"].get("namespace", ns)] if o["kind"] != "Namespace" else []
            exists = (
                not dry
                and subprocess.run(["kubectl", "get", ref, *where], capture_output=True).returncode == 0
            )
            if not exists:
                o["metadata"].setdefault("labels", {})[LABEL] = run_id
                fresh.append(o)
                created.append(ref)
        sh(["kubectl", "apply", "-f", "-"], stdin=yaml.safe_dump_all(objs), dry=dry)
        # The predictor mounts the labelers' token Secret (no Secret, no pod): an e2e token if none exists
        # (deleted with the rest), else the admin's, given as KFLOOP_E2E_FEEDBACK_TOKEN.
        secret = config.FeedbackConfig().tokens_secret
        feedback_token = os.environ.get("KFLOOP_E2E_FEEDBACK_TOKEN")
        has_secret = not dry and (
            subprocess.run(["kubectl", "get", f"secret/{secret}", "-n", ns], capture_output=True).returncode
            == 0
        )
        if not has_secret:
            feedback_token = uuid.uuid4().hex + uuid.uuid4().hex
            sh(
                [
                    "kubectl",
                    "-n",
                    ns,
                    "create",
                    "secret",
                    "generic",
                    secret,
                    f"--from-literal=e2e={feedback_token}",
                ],
                dry=dry,
            )
            sh(["kubectl", "-n", ns, "label", f"secret/{secret}", f"{LABEL}={run_id}"], dry=dry)
            created.append(f"secret/{secret}")
        say(
            "manifests",
            f"applied {len(objs)} objects from {overlay.relative_to(ROOT)}; created {created or 'none'}",
        )

        sa = config.ClusterConfig().service_account
        from kfloop import spec as kspec

        spec = e2e_spec()
        params = {"source": source, "store_uri": store, "namespace": ns, "canary_percent": 0}
        params.update(spec=kspec.dump(spec), model_name=spec.name)  # the spec's text: no file to ship
        if dry:
            say("training", f"would submit {packages['training'].name} as {sa} in {ns} with {params}")
        else:
            made = ks.submit(
                packages["training"],
                host=host,
                arguments=params,
                namespace=ns,
                experiment=experiment,
                run_name=f"kfloop-e2e-train-{run_id}",
                service_account=sa,
            )
            runs.append(made.run_id)
            state = ks.wait(host, made.run_id, timeout_s=timeout, namespace=ns)
            say("training", f"run {made.run_id} {state} ({made.url})")
            if state != "SUCCEEDED":
                raise E2EError(f"training run {made.run_id} finished {state}")

        name = spec.name
        if dry:
            url, isvc_host = "http://ISVC_URL", None
            say("serving", f"would wait for InferenceService {ns}/{name} Ready and read status.url")
        else:
            live = json.loads(sh(["kubectl", "get", "inferenceservice", name, "-n", ns, "-o", "json"]))
            if "inferenceservice/" + name not in created and LABEL not in live["metadata"].get("labels", {}):
                sh(["kubectl", "label", "inferenceservice", name, "-n", ns, f"{LABEL}={run_id}"])
                created.append(f"inferenceservice/{name}")
            ready = {c["type"]: c["status"] for c in live.get("status", {}).get("conditions", [])}
            if ready.get("Ready") != "True":
                raise E2EError(f"InferenceService {ns}/{name} not Ready: {ready}")
            url = live["status"]["url"]
            isvc_host = None
            if os.environ.get("KFLOOP_E2E_INGRESS"):
                isvc_host, url = (
                    url.split("://", 1)[1].split("/")[0],
                    os.environ["KFLOOP_E2E_INGRESS"].rstrip("/"),
                )
            version = live["metadata"]["labels"].get("kfloop.dev/model-version")
            say("serving", f"{ns}/{name} Ready at {live['status']['url']} serving {version}")

        rows = sample_rows(spec=spec) if not dry else [{}]
        v1 = {"instances": rows}
        v2 = {
            "id": f"e2e-{run_id}-v2",
            "inputs": [
                {
                    "name": f.name,
                    "datatype": f.v2_datatype,
                    "shape": [len(rows)],
                    "data": [r.get(f.name) for r in rows],
                }
                for f in spec.model_features
            ],
        }
        ids = {"v1": f"e2e-{run_id}-v1", "v2": v2["id"]}
        if dry:
            say("predict", f"would POST {url}/v1/models/{name}:predict and {url}/v2/models/{name}/infer")
        else:
            code, _, body = post(f"{url}/v1/models/{name}:predict", v1, host=isvc_host, request_id=ids["v1"])
            say("predict v1", f"HTTP {code}, {len(body.get('predictions', []))} predictions")
            code, _, body = post(f"{url}/v2/models/{name}/infer", v2, host=isvc_host)
            say("predict v2", f"HTTP {code}, outputs {[o.get('name') for o in body.get('outputs', [])]}")

        feedback = {
            "feedback": [
                {"request_id": ids[k], "row": i, "label": i % 2} for k in ids for i in range(len(rows))
            ]
        }
        if dry:
            say(
                "feedback",
                f"would POST {url}/v1/models/{name}:feedback with {len(feedback['feedback'])} labels",
            )
        else:
            code, _, body = post(
                f"{url}/v1/models/{name}:feedback", feedback, host=isvc_host, token=feedback_token
            )
            say("feedback", f"HTTP {code} {body}")

        mparams = {"store_uri": store, "source": source, "namespace": ns, "trigger_mode": "off"}
        mparams["model_name"] = spec.name
        if dry:
            say("monitoring", f"would submit {packages['monitoring'].name} once with {mparams}")
        else:
            made = ks.submit(
                packages["monitoring"],
                host=host,
                arguments=mparams,
                namespace=ns,
                experiment=experiment,
                run_name=f"kfloop-e2e-monitor-{run_id}",
                service_account=sa,
            )
            runs.append(made.run_id)
            state = ks.wait(host, made.run_id, timeout_s=timeout, namespace=ns)
            say("monitoring", f"run {made.run_id} {state} ({made.url})")
            if state != "SUCCEEDED":
                raise E2EError(f"monitoring run {made.run_id} finished {state}")
        ok = True
    except (E2EError, ks.SubmitError, kc.CompileError, OSError) as e:
        say("FAILED", str(e))
    finally:
        if args.keep or dry:
            say(
                "cleanup",
                f"kept ({'dry run' if dry else '--keep'}): label {LABEL}={run_id}, store {store}, experiment {experiment}",
            )
        else:
            _cleanup(host, ns, run_id, created, runs, experiment, store)
    return 0 if ok else 1


def _cleanup(host, ns, run_id, created, runs, experiment, store) -> None:
    from kfloop.app import submit as ks

    done = []
    for ref in reversed(created):
        kind = ref.split("/")[0]
        where = [] if kind == "namespace" else ["-n", ns]
        r = subprocess.run(
            ["kubectl", "delete", ref, *where, "-l", f"{LABEL}={run_id}", "--wait=false"],
            capture_output=True,
            text=True,
        )
        done.append(f"{ref}:{'deleted' if r.returncode == 0 else 'left'}")
    try:
        client = ks.client(host, namespace=ns)
        for run in runs:
            client.delete_run(run)
        exp = client.get_experiment(experiment_name=experiment, namespace=ns)
        client.delete_experiment(exp.experiment_id)
        done.append(f"{len(runs)} runs + experiment deleted")
    except Exception as e:  # cleanup goes on; the line says what was left
        done.append(f"KFP cleanup incomplete: {type(e).__name__}")
    try:
        from google.cloud import storage

        bucket, _, prefix = store.removeprefix("gs://").partition("/")
        blobs = list(storage.Client().list_blobs(bucket, prefix=prefix + "/"))
        for b in blobs:
            b.delete()
        done.append(f"{len(blobs)} store objects deleted")
    except Exception as e:
        done.append(f"store cleanup incomplete: {type(e).__name__}")
    say("cleanup", "; ".join(done))


if __name__ == "__main__":
    sys.exit(main())
