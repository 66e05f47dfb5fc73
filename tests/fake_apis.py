"""Real HTTP servers on loopback that answer like the Kubernetes API (InferenceServices as KServe
reconciles them, TokenRequest) and the KFP v2beta1 API, and record every request, so tests can check
what the code sends and which RBAC verbs those requests need."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

_ISVC = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)/(?P<name>[^/]+)$"
)
_TOKEN = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/serviceaccounts/(?P<name>[^/]+)/token$")


class _Server:
    def __init__(self):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                url = urlparse(self.path)
                body = self._body() if method in ("POST", "PATCH", "PUT") else None
                req = {
                    "method": method,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "type": self.headers.get("Content-Type"),
                    "auth": self.headers.get("Authorization"),
                    "body": body,
                }
                with outer.lock:
                    outer.requests.append(req)
                    code, out = outer.answer(req)
                self._send(code, out)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_DELETE(self):
                self._handle("DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, req: dict) -> tuple[int, dict]:
        raise NotImplementedError


def _pod_template(isvc: dict) -> dict:
    """What makes Knative cut a new revision: the predictor without its traffic split."""
    pred = dict((isvc.get("spec") or {}).get("predictor") or {})
    pred.pop("canaryTrafficPercent", None)
    return pred


class FakeKubeApi(_Server):
    """The Kubernetes API for InferenceServices, reconciled like KServe + Knative would: a PATCH bumps
    ``metadata.generation`` when the spec changes and a changed pod template cuts a new revision; the
    status reports the new generation Ready after ``ready_after`` GETs, or never (``fail=True``: the
    revision fails, like a crash-looping predictor).

    Args:
        live: The InferenceService that exists before the test (None: none).
        ready_after: GETs after a PATCH until the status shows the rollout Ready.
        fail: New revisions never become ready (``LatestDeploymentReady=False, RevisionFailed``).
    """

    def __init__(self, live: dict | None = None, *, ready_after: int = 1, fail: bool = False):
        super().__init__()
        self.live = live
        self.ready_after = ready_after
        self.fail = fail
        self._pending = 0
        self._revisions = 0

    def _reconcile(self):
        if self.live is None or self._pending > 0:
            self._pending -= 1
            return
        status = self.live.setdefault("status", {})
        gen = self.live["metadata"]["generation"]
        pred = status.setdefault("components", {}).setdefault("predictor", {})
        if self.fail and pred.get("latestCreatedRevision") != pred.get("latestReadyRevision"):
            status["observedGeneration"] = gen
            status["conditions"] = [
                {
                    "type": "LatestDeploymentReady",
                    "status": "False",
                    "reason": "RevisionFailed",
                    "message": "CrashLoopBackOff",
                },
                {"type": "Ready", "status": "False"},
            ]
            return
        pred["latestReadyRevision"] = pred.get("latestCreatedRevision")
        percent = self.live["spec"]["predictor"].get("canaryTrafficPercent", 100)
        pred["traffic"] = [
            {"revisionName": pred["latestReadyRevision"], "latestRevision": True, "percent": percent}
        ]
        status["observedGeneration"] = gen
        status["conditions"] = [{"type": "Ready", "status": "True"}]

    def answer(self, req):
        m = _TOKEN.match(req["path"])
        if m and req["method"] == "POST":
            token = f"kfp-token-for-{m['ns']}-{m['name']}"
            return 201, {"kind": "TokenRequest", "spec": req["body"]["spec"], "status": {"token": token}}
        m = _ISVC.match(req["path"])
        if not m:
            return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        if req["method"] == "GET":
            self._reconcile()
            if self.live is None:
                return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
            return 200, copy.deepcopy(self.live)
        if req["method"] == "PATCH":
            body = copy.deepcopy(req["body"])
            before = self.live
            gen = (before or {}).get("metadata", {}).get("generation", 0)
            if before is None or before.get("spec") != body.get("spec"):
                gen += 1
            body["metadata"]["generation"] = gen
            status = copy.deepcopy((before or {}).get("status") or {})
            if before is None or _pod_template(before) != _pod_template(body):
                self._revisions += 1
                pred = status.setdefault("components", {}).setdefault("predictor", {})
                pred["latestCreatedRevision"] = f"{body['metadata']['name']}-predictor-{self._revisions:05d}"
            body["status"] = status
            self.live = body
            self._pending = self.ready_after
            return 200, copy.deepcopy(body)
        return 405, {"kind": "Status", "code": 405}

    def cluster(self, **kwargs):
        """A :class:`kfloop.deploy.Cluster` talking to this server (fast polling, short timeout)."""
        from kubernetes import client

        from kfloop import deploy

        kwargs.setdefault("ready_timeout_s", 2.0)
        kwargs.setdefault("poll_s", 0.01)
        return deploy.Cluster(client.ApiClient(client.Configuration(host=self.url)), **kwargs)

    def api_client(self):
        from kubernetes import client

        return client.ApiClient(client.Configuration(host=self.url))


class FakeKfpApi(_Server):
    """The KFP v2beta1 API as far as creating runs goes: healthz, experiments (list / create), runs
    (create); everything recorded (with the bearer token sent)."""

    def __init__(self):
        super().__init__()
        self.experiments: list[dict] = []
        self.runs: list[dict] = []

    def answer(self, req):
        path, method = req["path"], req["method"]
        if path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": True}
        if path == "/apis/v2beta1/experiments" and method == "GET":
            flt = json.loads((req["query"].get("filter") or ["{}"])[0] or "{}")
            names = [
                p.get("string_value")
                for p in flt.get("predicates", [])
                if p.get("key") in ("display_name", "name")
            ]
            found = [e for e in self.experiments if not names or e["display_name"] in names]
            return 200, {"experiments": found, "total_size": len(found)}
        if path == "/apis/v2beta1/experiments" and method == "POST":
            exp = {**req["body"], "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments.append(exp)
            return 200, exp
        if path == "/apis/v2beta1/runs" and method == "POST":
            run = {**req["body"], "run_id": f"run-{len(self.runs) + 1}", "state": "PENDING"}
            self.runs.append(run)
            return 200, run
        return 404, {"error": f"no {method} {path}", "code": 5}
