"""``kfloop submit`` against a loopback HTTP server that records requests and answers like the KFP v2beta1 API.

No KFP API server runs here, so the recorder stands in for one: it answers the few endpoints kfp.Client
calls (healthz, experiments, runs, recurring runs) and keeps every request, and the tests check what
kfp.Client actually sent over HTTP.
"""

import http.server
import json
import socket
import subprocess
import sys
import threading
import urllib.parse

import pytest

from kfloop.app import compile as kc
from kfloop.app import submit as ks
from kfloop.app.cli import main

API = "/apis/v2beta1"


class _Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self.healthz_status = 200
        self.run_state = "SUCCEEDED"
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def find(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        query = urllib.parse.parse_qs(url.query)
        srv = self.server
        with srv.lock:
            srv.requests.append(
                {
                    "method": method,
                    "path": url.path,
                    "query": query,
                    "body": body,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                }
            )
            path = url.path
            if method == "GET" and path == f"{API}/healthz":
                if srv.healthz_status != 200:
                    return self._reply(srv.healthz_status, {"error": "nope"})
                return self._reply(200, {"multi_user": False})
            if method == "GET" and path == f"{API}/experiments":
                flt = json.loads(query.get("filter", ["{}"])[0])
                names = [p["stringValue"] for p in flt.get("predicates", [])]
                found = [e for e in srv.experiments.values() if e["display_name"] in names]
                return self._reply(200, {"experiments": found, "total_size": len(found)})
            if method == "POST" and path == f"{API}/experiments":
                exp = dict(body, experiment_id=f"exp-{len(srv.experiments) + 1}")
                srv.experiments[exp["experiment_id"]] = exp
                return self._reply(200, exp)
            if method == "POST" and path == f"{API}/runs":
                return self._reply(200, dict(body, run_id="run-1", state="PENDING"))
            if method == "GET" and path.startswith(f"{API}/runs/"):
                return self._reply(200, {"run_id": path.rsplit("/", 1)[1], "state": srv.run_state})
            if method == "GET" and path == f"{API}/recurringruns":
                return self._reply(200, {"recurringRuns": list(srv.recurring.values())})
            if method == "DELETE" and path.startswith(f"{API}/recurringruns/"):
                srv.recurring.pop(path.rsplit("/", 1)[1], None)
                return self._reply(200, {})
            if method == "POST" and path == f"{API}/recurringruns":
                rid = f"rr-{len(srv.requests)}"
                srv.recurring[rid] = dict(body, recurring_run_id=rid)
                return self._reply(200, srv.recurring[rid])
            return self._reply(404, {"error": f"no route {method} {path}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")


@pytest.fixture
def kfp_api():
    srv = _Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def training_yaml(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    return kc.compile_all(out, names=["training"], pipeline_root="gs://kfloop-test/runs")["training"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_create_run_request_is_well_formed(kfp_api, training_yaml, capsys):
    rc = main(
        [
            "submit",
            "--host",
            kfp_api.url,
            "--namespace",
            "team-a",
            "--experiment",
            "kfloop-ci",
            "--package",
            str(training_yaml),
            "--param",
            "source=gs://bucket/taxi.csv",
            "--param",
            "store_uri=gs://bucket/store",
            "--param",
            "spec=gs://bucket/spec.yaml",
            "--param",
            "model_name=taxi-tips",
            "--param",
            "eval_fraction=0.25",
            "--run-name",
            "ci-123",
            "--pipeline-root",
            "gs://other/root",
        ]
    )
    assert rc == 0
    assert "run run-1:" in capsys.readouterr().out

    # the experiment was looked up by name in the namespace, then created there
    (lookup,) = kfp_api.find("GET", f"{API}/experiments")
    assert lookup["query"]["namespace"] == ["team-a"]
    assert json.loads(lookup["query"]["filter"][0])["predicates"][0]["stringValue"] == "kfloop-ci"
    (created,) = kfp_api.find("POST", f"{API}/experiments")
    assert created["body"]["display_name"] == "kfloop-ci"
    assert created["body"]["namespace"] == "team-a"

    (run,) = kfp_api.find("POST", f"{API}/runs")
    body = run["body"]
    assert body["display_name"] == "ci-123"
    assert body["experiment_id"] == "exp-1"
    assert body["runtime_config"]["parameters"] == {
        "source": "gs://bucket/taxi.csv",
        "store_uri": "gs://bucket/store",
        "spec": "gs://bucket/spec.yaml",
        "model_name": "taxi-tips",
        "eval_fraction": 0.25,
    }
    assert body["runtime_config"]["pipeline_root"] == "gs://other/root"
    # the whole compiled spec travels inline, unchanged (per-task caching choices included)
    spec, platform = kc.load_ir(training_yaml)
    sent = body["pipeline_spec"]
    sent_spec = sent.get("pipeline_spec", sent)
    assert sent_spec["pipelineInfo"]["name"] == spec["pipelineInfo"]["name"] == "kfloop-training"
    assert sent_spec["root"] == spec["root"]
    assert sent_spec["deploymentSpec"] == spec["deploymentSpec"]
    assert sent_spec["defaultPipelineRoot"] == "gs://kfloop-test/runs"
    if platform:
        assert sent["platform_spec"] == platform


#: The training pipeline's other required parameters (the dataset spec and the model's name).
REQUIRED = {"spec": "gs://bucket/spec.yaml", "model_name": "taxi-tips"}


def test_default_namespace_and_defaults_are_not_sent(kfp_api, training_yaml):
    made = ks.submit(
        training_yaml,
        host=kfp_api.url + "/",
        arguments={"source": "/data/taxi.csv", "store_uri": "/s", **REQUIRED},
    )
    assert made.run_id == "run-1"
    assert made.url == f"{kfp_api.url}/#/runs/details/run-1"
    (run,) = kfp_api.find("POST", f"{API}/runs")
    # optional parameters not given are left to the compiled defaults
    assert run["body"]["runtime_config"]["parameters"] == {
        "source": "/data/taxi.csv",
        "store_uri": "/s",
        **REQUIRED,
    }
    assert "pipeline_root" not in run["body"]["runtime_config"]
    assert run["body"]["display_name"].startswith("training-")
    (created,) = kfp_api.find("POST", f"{API}/experiments")
    assert created["body"]["display_name"] == ks.DEFAULT_EXPERIMENT


def test_token_is_sent_as_bearer(kfp_api, training_yaml, monkeypatch):
    monkeypatch.setenv(ks.TOKEN_ENV, "s3cret")
    ks.submit(training_yaml, host=kfp_api.url, arguments={"source": "x", "store_uri": "/s", **REQUIRED})
    assert all(r["headers"].get("authorization") == "Bearer s3cret" for r in kfp_api.requests)
    assert kfp_api.find("POST", f"{API}/runs")


def test_schedule_recreates_recurring_run(kfp_api, training_yaml):
    first = ks.schedule(
        training_yaml,
        host=kfp_api.url,
        cron="0 0 * * * *",
        name="kfloop-monitoring",
        arguments={"source": "x", "store_uri": "/s", **REQUIRED},
    )
    second = ks.schedule(
        training_yaml,
        host=kfp_api.url,
        cron="0 30 * * * *",
        name="kfloop-monitoring",
        arguments={"source": "x", "store_uri": "/s", **REQUIRED},
    )
    assert first.run_id != second.run_id
    # the second call deleted the first one and left exactly one schedule with that name
    assert [r["path"] for r in kfp_api.find("DELETE", f"{API}/recurringruns/{first.run_id}")]
    assert list(kfp_api.recurring) == [second.run_id]
    body = kfp_api.recurring[second.run_id]
    assert body["display_name"] == "kfloop-monitoring"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 30 * * * *"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["runtime_config"]["parameters"] == {"source": "x", "store_uri": "/s", **REQUIRED}


def test_wait_reports_final_state(kfp_api, training_yaml):
    kfp_api.run_state = "FAILED"
    assert ks.wait(kfp_api.url, "run-7", timeout_s=5, poll_s=0.01) == "FAILED"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kfloop.app.cli", "submit", *args], capture_output=True, text=True, timeout=60
    )


def _one_clean_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kfloop submit: ")
    return lines[0]


def test_bad_host_is_one_clean_line(training_yaml):
    port = _free_port()
    line = _one_clean_line(
        _cli(
            "--host",
            f"http://127.0.0.1:{port}",
            "--package",
            str(training_yaml),
            "--param",
            "source=x",
            "--param",
            "store_uri=/s",
            "--param",
            "spec=s.yaml",
            "--param",
            "model_name=m",
        )
    )
    assert f"127.0.0.1:{port}" in line and "cannot reach" in line


def test_host_that_is_not_kfp_is_one_clean_line(kfp_api, training_yaml):
    kfp_api.healthz_status = 404
    line = _one_clean_line(
        _cli(
            "--host",
            kfp_api.url,
            "--package",
            str(training_yaml),
            "--param",
            "source=x",
            "--param",
            "store_uri=/s",
            "--param",
            "spec=s.yaml",
            "--param",
            "model_name=m",
        )
    )
    assert "HTTP 404" in line
    assert not kfp_api.find("POST", f"{API}/runs")


def test_missing_parameter_sends_nothing(kfp_api, training_yaml):
    line = _one_clean_line(_cli("--host", kfp_api.url, "--package", str(training_yaml)))
    assert "missing parameter model_name, source, spec" in line
    assert kfp_api.requests == []


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        (["source=x", "store_uri=/s", "spec=s", "model_name=m", "eval_fraction=lots"], "eval_fraction"),
        (["source=x", "store_uri=/s", "spec=s", "model_name=m", "bogus=1"], "unknown parameter bogus"),
        (["source"], "expected NAME=VALUE"),
        (["source=x", "source=y"], "given twice"),
    ],
)
def test_bad_parameters_are_named(kfp_api, training_yaml, params, needle):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "submit",
                "--host",
                kfp_api.url,
                "--package",
                str(training_yaml),
                *(arg for p in params for arg in ("--param", p)),
            ]
        )
    assert needle in str(exc.value)
    assert kfp_api.requests == []


def test_missing_package_and_bad_host_url(tmp_path):
    with pytest.raises(SystemExit, match="run `kfloop compile` first"):
        main(["submit", "--host", "http://127.0.0.1:9", "--compiled-dir", str(tmp_path)])
    with pytest.raises(ks.SubmitError, match="http:// or https://"):
        ks.normalize_host("localhost:8080")


def test_batch_prediction_is_submitted_like_the_others(kfp_api, tmp_path, capsys):
    """``--pipeline batch_prediction`` finds the compiled YAML in --compiled-dir and sends its parameters."""
    kc.compile_all(tmp_path, names=["batch_prediction"], pipeline_root="gs://kfloop-test/runs")
    rc = main(
        [
            "submit", "--host", kfp_api.url, "--pipeline", "batch_prediction", "--compiled-dir", str(tmp_path),
            "--param", "input_uri=gs://bucket/in/2026-12-01.csv", "--param", "store_uri=gs://bucket/store",
            "--param", "chunk_rows=65536", "--param", "model_name=taxi-tips",
        ]
    )  # fmt: skip
    assert rc == 0 and "run run-1:" in capsys.readouterr().out
    (run,) = kfp_api.find("POST", f"{API}/runs")
    sent = run["body"]["pipeline_spec"]
    assert sent.get("pipeline_spec", sent)["pipelineInfo"]["name"] == "kfloop-batch-prediction"
    assert run["body"]["runtime_config"]["parameters"] == {
        "input_uri": "gs://bucket/in/2026-12-01.csv",
        "store_uri": "gs://bucket/store",
        "chunk_rows": 65536,
        "model_name": "taxi-tips",
    }
