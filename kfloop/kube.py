"""The Kubernetes side of a rollout: server-side apply of an InferenceService, wait until KServe reports
the new generation Ready on a new ready revision, undo a rollout that does not get there.

Every call is a ``get`` or a ``patch`` of ``serving.kserve.io/inferenceservices`` in one namespace (what
``manifests/base/rbac.yaml`` grants; ``tests/test_rbac.py`` records the calls). Errors are
:class:`DeployError`, defined here, the lowest of the deploy modules (:mod:`kfloop.isvc`,
:mod:`kfloop.transitions` and :mod:`kfloop.deploy` import it; :mod:`kfloop.deploy` re-exports it). Only the
standard library is imported at module level (and :mod:`kfloop.config`); the ``kubernetes`` client is
imported when a :class:`Cluster` is made.
"""

from __future__ import annotations

from kfloop import config

GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
FIELD_MANAGER = "kfloop"


class DeployError(RuntimeError):
    """A deployment that cannot be done; the message says why and what to do."""


class Cluster:
    """The Kubernetes API for InferenceServices (``kubernetes`` client).

    Args:
        api_client: A ``kubernetes.client.ApiClient``; default: in-cluster config, else ``~/.kube/config``.
    """

    def __init__(self, api_client=None, *, ready_timeout_s: float | None = None, poll_s: float | None = None):
        cfg = config.DeployConfig()
        self.ready_timeout_s = cfg.ready_timeout_s if ready_timeout_s is None else float(ready_timeout_s)
        self.poll_s = cfg.ready_poll_s if poll_s is None else float(poll_s)
        if api_client is None:
            from kubernetes import client
            from kubernetes import config as kconfig

            try:
                kconfig.load_incluster_config()
            except kconfig.ConfigException:
                try:
                    kconfig.load_kube_config()
                except (kconfig.ConfigException, FileNotFoundError, TypeError) as e:
                    raise DeployError(
                        f"no Kubernetes cluster configured (in-cluster or kubeconfig): {e}"
                    ) from None
            api_client = client.ApiClient()
        self.api = api_client

    def get_isvc(self, namespace: str, name: str) -> dict | None:
        """The live InferenceService, or None."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.call_api(
                f"/apis/{GROUP}/{ISVC_VERSION}/namespaces/{namespace}/{ISVC_PLURAL}/{name}",
                "GET",
                header_params={"Accept": "application/json"},
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise DeployError(
                f"reading InferenceService {namespace}/{name}: HTTP {e.status} {e.reason}"
            ) from None

    def _patch(self, obj: dict) -> dict:
        from kubernetes.client.exceptions import ApiException

        group, version = obj["apiVersion"].split("/")
        plural = {"InferenceService": ISVC_PLURAL, "ServingRuntime": "servingruntimes"}[obj["kind"]]
        meta = obj["metadata"]
        try:
            return self.api.call_api(
                f"/apis/{group}/{version}/namespaces/{meta['namespace']}/{plural}/{meta['name']}",
                "PATCH",
                query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                body=obj,
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as e:
            detail = (e.body or b"")[:300] if isinstance(e.body, bytes) else str(e.body or "")[:300]
            raise DeployError(
                f"applying {obj['kind']} {meta['namespace']}/{meta['name']}: HTTP {e.status} {e.reason} {detail}"
            ) from None

    def apply(self, obj: dict) -> dict:
        """Server-side apply (``application/apply-patch+yaml``, field manager ``kfloop``, forced).

        An InferenceService is then waited for (:meth:`wait_ready`): the call returns only once the new
        generation is Ready on a new, ready revision. If it is not within ``ready_timeout_s``, the
        previous spec is applied again (when there was one) and :class:`DeployError` is raised, so the
        caller moves no alias for a rollout that does not serve.

        Raises:
            DeployError: the API refused, or the rollout did not become Ready in time (it was undone).
        """
        if obj["kind"] != "InferenceService":
            return self._patch(obj)
        meta = obj["metadata"]
        before = self.get_isvc(meta["namespace"], meta["name"])
        applied = self._patch(obj)
        generation = int((applied.get("metadata") or {}).get("generation") or 0)
        try:
            return self.wait_ready(meta["namespace"], meta["name"], generation, before)
        except DeployError as e:
            if before is None:
                raise DeployError(f"{e}; it was the first rollout, left in place for inspection") from None
            self._patch(_restorable(before))
            raise RolloutUndone(f"{e}; the previous spec was applied again") from None

    def wait_ready(self, namespace: str, name: str, generation: int, before: dict | None = None) -> dict:
        """Polls (``get``) until the InferenceService has observed ``generation``, is Ready, and its
        predictor's latest created revision is the ready one (and not the revision before).

        Raises:
            DeployError: not so within ``ready_timeout_s`` (the message has the last conditions), or a
                condition says the revision failed.
        """
        import time

        old_revision = _predictor_status(before).get("latestReadyRevision")
        deadline = time.monotonic() + self.ready_timeout_s
        last: dict = {}
        while True:
            last = self.get_isvc(namespace, name) or {}
            verdict = rollout_state(last, generation, old_revision)
            if verdict == "ready":
                return last
            if verdict.startswith("failed") or time.monotonic() >= deadline:
                conds = [
                    f"{c.get('type')}={c.get('status')}{' (' + c['message'] + ')' if c.get('message') else ''}"
                    for c in (last.get("status") or {}).get("conditions") or []
                ]
                why = (
                    verdict if verdict.startswith("failed") else f"not Ready after {self.ready_timeout_s:g}s"
                )
                raise DeployError(
                    f"InferenceService {namespace}/{name} generation {generation}: {why} "
                    f"[{', '.join(conds) or 'no conditions'}]"
                )
            time.sleep(self.poll_s)


def _predictor_status(isvc: dict | None) -> dict:
    return (((isvc or {}).get("status") or {}).get("components") or {}).get("predictor") or {}


def rollout_state(isvc: dict, generation: int, old_revision: str | None = None) -> str:
    """``ready``, ``waiting`` or ``failed: <why>`` for a rollout of ``generation``.

    Ready means: ``status.observedGeneration >= generation``, the ``Ready`` condition is ``True``, and
    (Serverless) the predictor's ``latestReadyRevision`` equals its ``latestCreatedRevision`` and, when
    the spec changed the pod template, differs from the revision before the rollout.
    """
    status = isvc.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and int(observed) < generation:
        return "waiting"  # (absent: the revision checks below still tell a stale status apart)
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    pred = _predictor_status(isvc)
    created, ready_rev = pred.get("latestCreatedRevision"), pred.get("latestReadyRevision")
    for kind in ("LatestDeploymentReady", "PredictorConfigurationReady"):
        c = conds.get(kind) or {}
        if c.get("status") == "False" and c.get("reason") in ("RevisionFailed", "ContainerMissing"):
            return f"failed: {kind} {c.get('reason')}: {c.get('message', '')}".rstrip(": ")
    if (conds.get("Ready") or {}).get("status") != "True":
        return "waiting"
    if created is not None and created != ready_rev:
        return "waiting"
    if old_revision is not None and created is not None and created == old_revision:
        # Traffic-only changes (canary % / promote) keep the revision; they are Ready once observed.
        return "ready" if _traffic_only(isvc) else "waiting"
    return "ready"


def _traffic_only(isvc: dict) -> bool:
    """Whether the live status shows the traffic split the spec asks for (a change without a new revision)."""
    want = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    traffic = _predictor_status(isvc).get("traffic") or []
    latest = [t for t in traffic if t.get("latestRevision")]
    if want is None or not latest:
        return True
    return int(latest[0].get("percent") or 0) == int(want)


class RolloutUndone(DeployError):
    """A rollout that did not become Ready was undone: the previous spec serves again."""


def _restorable(live: dict) -> dict:
    """What to apply again to undo a rollout: the earlier object without server-set fields."""
    meta = live.get("metadata") or {}
    keep = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    annotations = {
        k: v for k, v in (keep.get("annotations") or {}).items() if not k.startswith("kubectl.kubernetes.io/")
    }
    keep["annotations"] = annotations
    return {"apiVersion": live["apiVersion"], "kind": live["kind"], "metadata": keep, "spec": live["spec"]}
