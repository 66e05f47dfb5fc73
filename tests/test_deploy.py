"""Deployment: rendered InferenceService / ServingRuntime, RawDeployment refusal, local alias moves, and
cluster applies recorded by a real HTTP server standing in for the Kubernetes API."""

from __future__ import annotations

import dataclasses

import pytest

from kfloop import config, deploy
from kfloop.deploy import CanaryRefused, DeployError
from kfloop.store import ModelStore
from tests.fake_apis import FakeKubeApi as _FakeApiServer
from tests.test_store import make_model_dir

NAME = "taxi-tips"


def predictor_container(isvc: dict) -> dict:
    return isvc["spec"]["predictor"]["model"]


def test_inference_service_fields():
    cfg = config.DeployConfig(namespace="ml", drain_seconds=7)
    isvc = deploy.render_inference_service(NAME, "gs://bkt/store", "v0003", cfg=cfg, canary_percent=25)
    assert isvc["kind"] == "InferenceService" and isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["namespace"] == "ml" and isvc["metadata"]["name"] == NAME
    assert isvc["metadata"]["annotations"][deploy.MODE_ANNOTATION] == "Serverless"
    pred = isvc["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 25 and pred["serviceAccountName"] == cfg.service_account
    m = predictor_container(isvc)
    assert "storageUri" not in m  # the predictor downloads the pinned version itself (one download)
    assert m["image"] == config.SERVING_IMAGE and m["runtime"] == deploy.RUNTIME_NAME
    assert "--model-ref=v0003" in m["args"] and "--store-uri=gs://bkt/store" in m["args"]
    assert m["readinessProbe"]["httpGet"] == {"path": "/v2/models/taxi-tips/ready"}  # Knative picks the port
    assert m["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # Serverless: no lifecycle / grace period / pod securityContext (Knative rejects them).
    assert (
        "lifecycle" not in m and "terminationGracePeriodSeconds" not in pred and "securityContext" not in pred
    )
    assert m["securityContext"]["runAsUser"] == cfg.run_as_user == 10001
    assert m["resources"]["requests"] == {"cpu": cfg.cpu_request, "memory": cfg.memory_request}
    assert m["resources"]["limits"] == {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit}
    sc = m["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    # A full rollout sends 100 %; RawDeployment carries no canary field at all.
    full = deploy.render_inference_service(NAME, "gs://bkt/store", "v0003", canary_percent=0)
    assert full["spec"]["predictor"]["canaryTrafficPercent"] == 100
    raw = dataclasses.replace(cfg, deployment_mode="RawDeployment")
    rendered = deploy.render_inference_service(NAME, "gs://b/s", "v0001", cfg=raw, canary_percent=100)
    assert "canaryTrafficPercent" not in rendered["spec"]["predictor"]
    assert rendered["metadata"]["annotations"][deploy.MODE_ANNOTATION] == "RawDeployment"
    # RawDeployment is a plain Deployment: drain on preStop, grace period, fsGroup, probe ports.
    rm = predictor_container(rendered)
    assert rm["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    assert rendered["spec"]["predictor"]["terminationGracePeriodSeconds"] > 7
    assert rendered["spec"]["predictor"]["securityContext"] == {"fsGroup": 10001}
    assert rm["readinessProbe"]["httpGet"]["port"] == 8080


def test_serving_runtime_fields():
    rt = deploy.render_serving_runtime(namespace="ml")
    c = rt["spec"]["containers"][0]
    assert rt["metadata"]["name"] == deploy.RUNTIME_NAME and rt["metadata"]["namespace"] == "ml"
    assert c["image"] == config.SERVING_IMAGE and c["command"] == ["python", "-m", "serving"]
    assert "--model-name={{.Name}}" in c["args"]
    assert rt["spec"]["supportedModelFormats"][0]["name"] == deploy.MODEL_FORMAT
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["resources"]["limits"]


def test_raw_deployment_refuses_canary():
    raw = config.DeployConfig(deployment_mode="RawDeployment")
    with pytest.raises(CanaryRefused, match=r"RawDeployment.*ignores canaryTrafficPercent"):
        deploy.render_inference_service(NAME, "gs://b/s", "v0002", cfg=raw, canary_percent=10)
    live = {"metadata": {"annotations": {deploy.MODE_ANNOTATION: "RawDeployment"}}}
    assert deploy.is_raw_deployment(config.DeployConfig(), live)
    assert not deploy.is_raw_deployment(config.DeployConfig(), {"metadata": {}})
    with pytest.raises(DeployError, match="within 0..100"):
        deploy.render_inference_service(NAME, "gs://b/s", "v0002", canary_percent=101)


@pytest.fixture
def three_versions(tmp_path):
    root = str(tmp_path / "store")
    ms = ModelStore(root)
    vs = [ms.publish(NAME, str(make_model_dir(tmp_path, t)), {}) for t in "abc"]
    return root, ms, vs


def test_local_deploy_promote_rollback(three_versions):
    root, ms, (v1, v2, v3) = three_versions
    out = deploy.deploy(root, NAME, version=v1)
    assert (out.alias, out.version, out.canary_percent) == ("champion", v1, 100)
    out = deploy.deploy(root, NAME, version=v2, canary_percent=20)
    assert (out.alias, out.previous) == ("canary", None)
    assert ms.aliases(NAME) == {"champion": v1, "canary": v2}
    dry = deploy.promote(root, NAME, dry_run=True)
    assert dry.dry_run and ms.get_alias(NAME, "champion") == v1  # nothing moved
    deploy.promote(root, NAME)
    assert ms.aliases(NAME) == {"champion": v2}
    with pytest.raises(DeployError, match="no canary to promote"):
        deploy.promote(root, NAME)
    deploy.deploy(root, NAME, version=v3, canary_percent=0)  # straight to champion
    assert ms.aliases(NAME) == {"champion": v3}
    out = deploy.rollback(root, NAME)
    assert (out.previous, out.version) == (v3, v2) and ms.get_alias(NAME, "champion") == v2
    deploy.rollback(root, NAME)
    assert ms.get_alias(NAME, "champion") == v1
    with pytest.raises(DeployError, match="no earlier champion"):
        deploy.rollback(root, NAME)
    outcomes = [(h["action"], h["alias"], h["to"]) for h in ms.history(NAME) if h["event"] == "alias"]
    assert ("rollback", "champion", v2) in outcomes and ("promote", "champion", v2) in outcomes
    raw = config.DeployConfig(deployment_mode="RawDeployment")
    with pytest.raises(CanaryRefused):
        deploy.deploy(root, NAME, version=v3, canary_percent=10, cfg=raw)
    assert ms.get_alias(NAME, "canary") is None


def test_every_transition_records_its_moves_actions_and_reasons(three_versions):
    """deploy / promote / reject_canary / rollback go through one transition step: each alias move it makes
    (and the canary clear after it) is in the history under the operation's action, with its reason."""
    root, ms, (v1, v2, v3) = three_versions
    deploy.deploy(root, NAME, version=v1)
    deploy.deploy(root, NAME, version=v2, canary_percent=20)
    deploy.promote(root, NAME)
    deploy.deploy(root, NAME, version=v3, canary_percent=20)
    out = deploy.reject_canary(root, NAME, reason="latency")
    assert (out.action, out.alias, out.previous, out.version, out.canary_percent) == (
        "reject",
        "canary",
        v3,
        v2,
        100,
    )
    assert out.summary() == f"reject: moved canary {v3} -> {v2} [local: local server]"
    deploy.deploy(root, NAME, version=v3, canary_percent=20)
    deploy.deploy(root, NAME, version=v3, canary_percent=0)  # full: the canary at v3 is done
    deploy.deploy(root, NAME, version=v1, canary_percent=20)
    deploy.rollback(root, NAME)  # clears whatever canary is set
    moves = [
        (h["action"], h["alias"], h["from"], h["to"], h["reason"])
        for h in ms.history(NAME)
        if h["event"] == "alias"
    ]
    assert moves == [
        ("deploy", "champion", None, v1, "deploy (100%)"),
        ("deploy", "canary", None, v2, "deploy (20%)"),
        ("promote", "champion", v1, v2, "promote canary"),
        ("promote", "canary", v2, None, "promoted"),
        ("deploy", "canary", None, v3, "deploy (20%)"),
        ("reject", "canary", v3, None, "latency"),
        ("deploy", "canary", None, v3, "deploy (20%)"),
        ("deploy", "champion", v2, v3, "deploy (100%)"),
        ("deploy", "canary", v3, None, "rolled out fully"),
        ("deploy", "canary", None, v1, "deploy (20%)"),
        ("rollback", "champion", v3, v2, f"rollback from {v3}"),
        ("rollback", "canary", v1, None, "rollback"),
    ]
    assert ms.aliases(NAME) == {"champion": v2}
    with pytest.raises(DeployError, match="no canary to roll back"):
        deploy.reject_canary(root, NAME)


def _patches(api) -> list[dict]:
    return [r for r in api.requests if r["method"] == "PATCH"]


def test_cluster_mode_applies_canary_promote_rollback(three_versions):
    root, ms, (v1, v2, _v3) = three_versions
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{NAME}"
    with _FakeApiServer() as api:
        c = api.cluster()
        ms.set_alias(NAME, "champion", v1)
        with pytest.raises(DeployError, match="does not exist yet"):
            deploy.deploy(
                root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=10
            )
        assert ms.get_alias(NAME, "canary") is None  # refused before any alias moved

        deploy.deploy(root, NAME, version=v1, mode="cluster", namespace="ml", cluster=c)
        patch = _patches(api)[-1]
        assert patch["method"] == "PATCH" and patch["type"] == "application/apply-patch+yaml"
        assert patch["path"] == path and patch["query"]["fieldManager"] == ["kfloop"]
        assert f"--model-ref={v1}" in predictor_container(patch["body"])["args"]
        assert api.requests[-1]["method"] == "GET"  # waited for Ready before moving the alias

        out = deploy.deploy(
            root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=15
        )
        body = _patches(api)[-1]["body"]
        assert out.alias == "canary" and body["spec"]["predictor"]["canaryTrafficPercent"] == 15
        assert "--model-ref=v0002" in predictor_container(body)["args"]

        deploy.promote(root, NAME, mode="cluster", namespace="ml", cluster=c)
        body = _patches(api)[-1]["body"]
        assert body["spec"]["predictor"]["canaryTrafficPercent"] == 100
        assert ms.aliases(NAME) == {"champion": v2}

        deploy.rollback(root, NAME, mode="cluster", namespace="ml", cluster=c)
        body = _patches(api)[-1]["body"]
        assert (
            "--model-ref=v0001" in predictor_container(body)["args"] and ms.get_alias(NAME, "champion") == v1
        )

        # The live object says RawDeployment (set outside kfloop): a canary is refused, nothing applied.
        api.live["metadata"]["annotations"][deploy.MODE_ANNOTATION] = "RawDeployment"
        n = len(api.requests)
        with pytest.raises(CanaryRefused, match="kserve#5335"):
            deploy.deploy(
                root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=10
            )
        assert [r["method"] for r in api.requests[n:]] == ["GET"]
        assert ms.get_alias(NAME, "canary") is None


def test_cluster_rollout_waits_for_ready_then_moves_the_alias(three_versions):
    root, ms, (v1, v2, _v3) = three_versions
    with _FakeApiServer(ready_after=3) as api:
        c = api.cluster()
        deploy.deploy(root, NAME, version=v1, mode="cluster", namespace="ml", cluster=c)
        # PATCH, then GETs until the status shows the new generation Ready on a new ready revision.
        methods = [r["method"] for r in api.requests]
        patch_at = methods.index("PATCH")
        assert set(methods[:patch_at]) == {"GET"} and methods[patch_at + 1 :] == ["GET"] * 4
        assert ms.get_alias(NAME, "champion") == v1
        first_rev = api.live["status"]["components"]["predictor"]["latestReadyRevision"]
        deploy.deploy(root, NAME, version=v2, mode="cluster", namespace="ml", cluster=c, canary_percent=10)
        pred = api.live["status"]["components"]["predictor"]
        assert pred["latestReadyRevision"] != first_rev and pred["traffic"][0]["percent"] == 10
        assert ms.aliases(NAME) == {"champion": v1, "canary": v2}


def test_cluster_rollout_that_never_gets_ready_is_undone_and_moves_no_alias(
    three_versions, tmp_path, receiver
):
    from kfloop import notify

    root, ms, (v1, v2, _v3) = three_versions
    hook = tmp_path / "notify.yaml"
    hook.write_text(f'{{"channels": ["json://127.0.0.1:{receiver.server_port}/hook"], "backoff_seconds": 0}}')
    with _FakeApiServer() as api:
        deploy.deploy(root, NAME, version=v1, mode="cluster", namespace="ml", cluster=api.cluster())
        good_spec = api.live["spec"]
        api.fail = True  # the new revision crash-loops
        with pytest.raises(
            DeployError, match=r"RevisionFailed.*CrashLoopBackOff.*previous spec was applied again"
        ):
            deploy.deploy(
                root,
                NAME,
                version=v2,
                mode="cluster",
                namespace="ml",
                cluster=api.cluster(),
                canary_percent=10,
                notify_config=str(hook),
            )
        assert ms.aliases(NAME) == {"champion": v1}  # the canary alias never moved
        # on the record and told: a history record and a deploy.undone event, received by the webhook
        undone = [h for h in ms.history(NAME) if h["event"] == "rollout_undone"]
        assert len(undone) == 1 and undone[0]["version"] == v2 and "CrashLoopBackOff" in undone[0]["error"]
        (event,) = notify.read_events(root, NAME)
        assert event["type"] == "deploy.undone" and event["version"] == v2 and event["outcome"] == "delivered"
        assert len(receiver.requests) == 1 and b"deploy.undone" in receiver.requests[0]["body"]
        patches = _patches(api)
        assert f"--model-ref={v2}" in predictor_container(patches[-2]["body"])["args"]
        assert patches[-1]["body"]["spec"] == good_spec  # undone: the earlier spec applied again


def test_cluster_rollout_times_out_when_status_never_catches_up(three_versions):
    root, ms, (v1, _v2, _v3) = three_versions
    with _FakeApiServer(ready_after=10**9) as api:
        with pytest.raises(DeployError, match=r"not Ready after 0.2s.*first rollout, left in place"):
            deploy.deploy(
                root,
                NAME,
                version=v1,
                mode="cluster",
                namespace="ml",
                cluster=api.cluster(ready_timeout_s=0.2),
            )
        assert ms.get_alias(NAME, "champion") is None


def test_rollout_state_and_raw_detection():
    ready = {
        "status": {
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {"latestCreatedRevision": "r2", "latestReadyRevision": "r2"}},
        },
        "spec": {"predictor": {}},
    }
    assert deploy.rollout_state(ready, 2, "r1") == "ready"
    assert deploy.rollout_state(ready, 3, "r1") == "waiting"  # status is of an older generation
    assert deploy.rollout_state(ready, 2, "r2") == "ready"  # same revision, traffic-only change
    stale = {
        **ready,
        "status": {
            **ready["status"],
            "components": {"predictor": {"latestCreatedRevision": "r3", "latestReadyRevision": "r2"}},
        },
    }
    assert deploy.rollout_state(stale, 2, "r2") == "waiting"
    for live in (
        {"metadata": {"annotations": {deploy.MODE_ANNOTATION: "Standard"}}},
        {"metadata": {}, "status": {"deploymentMode": "RawDeployment"}},
    ):
        assert deploy.is_raw_deployment(config.DeployConfig(), live)
    assert not deploy.is_raw_deployment(config.DeployConfig(), {"status": {"deploymentMode": "Serverless"}})


def test_kserve_016_mode_names_render_like_their_old_names():
    for new, old in (("Standard", "RawDeployment"), ("Knative", "Serverless")):
        a = deploy.render_inference_service(
            NAME, "gs://b/s", "v0001", cfg=config.DeployConfig(deployment_mode=new)
        )
        b = deploy.render_inference_service(
            NAME, "gs://b/s", "v0001", cfg=config.DeployConfig(deployment_mode=old)
        )
        assert a["spec"] == b["spec"] and a["metadata"]["annotations"][deploy.MODE_ANNOTATION] == new
    with pytest.raises(CanaryRefused):
        deploy.render_inference_service(
            NAME, "gs://b/s", "v0001", cfg=config.DeployConfig(deployment_mode="Standard"), canary_percent=10
        )
    with pytest.raises(DeployError, match="Serverless, Knative, RawDeployment, Standard"):
        deploy.render_inference_service(
            NAME, "gs://b/s", "v0001", cfg=config.DeployConfig(deployment_mode="Raw")
        )
