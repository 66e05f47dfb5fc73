"""The serving benchmark's peers: how ``benchmarks/serving.py`` finds, starts, feeds and checks them.

Each peer serves the same SavedModel with its own adaptive batching, from its own env (never an image's
lock; ``make bench-peers-env`` builds them from ``benchmarks/peers/requirements-<peer>.lock``):

* **mlserver** (``.venv-bench-mlserver``, MLServer 1.7.1): ``mlserver start`` of a settings folder written
  here, the custom runtime :mod:`benchmarks.peers.mlserver_runtime`, adaptive batching ``max_batch_size``
  64, ``max_batch_time`` 0.002 s, MLServer's defaults otherwise (one inference worker process). V2 JSON
  bodies, the same bytes kfloop's V2 JSON points send.
* **bentoml** (``.venv-bench-bentoml``, BentoML 1.4.40): ``bentoml serve`` of
  :mod:`benchmarks.peers.bentoml_service` (one worker, batchable API, max batch 1,024 rows, max latency
  50 ms). JSON bodies ``{"rows": [...]}``: the same row objects as kfloop's V1 ``instances``.

Standard library and numpy only (runs in the serving env); :func:`check` asks a peer for a few rows'
predictions before it is timed, so a peer answering errors or wrong numbers is never timed as fast.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PEERS = ("mlserver", "bentoml")
#: The executable each peer's env must have.
_EXECUTABLE = {"mlserver": "mlserver", "bentoml": "bentoml"}


@dataclass
class Peer:
    """A peer server: its command, readiness path, predict path and body format (``"v2"``/``"rows"``)."""

    name: str
    cmd: list[str]
    port: int
    ready_path: str
    path: str
    body: str
    env: dict = field(default_factory=dict)


def env_dir(name: str) -> Path:
    """The peer's benchmark env (``.venv-bench-<name>`` in the repo)."""
    return ROOT / f".venv-bench-{name}"


def missing_reason(name: str) -> str | None:
    """``None`` if the peer's env is there, else one line saying what is missing and how to build it."""
    exe = env_dir(name) / "bin" / _EXECUTABLE[name]
    if exe.exists():
        return None
    return f"peer {name}: skipped, {exe.relative_to(ROOT)} not found (build it with `make bench-peers-env`)"


def mlserver(
    model_dir: str, model_name: str, port: int, grpc_port: int, metrics_port: int, work: Path
) -> Peer:
    """The MLServer peer: writes its settings folder under ``work`` and returns how to start it."""
    folder = work / "mlserver"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": grpc_port, "metrics_port": metrics_port}
    settings["metrics_dir"] = str(folder / "metrics")  # its default is ./.metrics in the current directory
    model = {
        "name": model_name,
        "implementation": "mlserver_runtime.KfloopRuntime",
        "max_batch_size": 64,
        "max_batch_time": 0.002,
        "parameters": {"uri": str(Path(model_dir).resolve())},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model))
    cmd = [str(env_dir("mlserver") / "bin" / "mlserver"), "start", str(folder)]
    return Peer(
        "mlserver", cmd, port, "/v2/health/ready", f"/v2/models/{model_name}/infer", "v2",
        env={"PYTHONPATH": f"{ROOT}:{HERE}"},
    )  # fmt: skip


def bentoml(model_dir: str, port: int, work: Path) -> Peer:
    """The BentoML peer (its home under ``work``, usage tracking off)."""
    cmd = [str(env_dir("bentoml") / "bin" / "bentoml"), "serve", "bentoml_service:KfloopPeer",
           "--working-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {
        "KFLOOP_BENCH_MODEL_DIR": str(Path(model_dir).resolve()),
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPATH": f"{ROOT}:{HERE}",
    }
    return Peer("bentoml", cmd, port, "/readyz", "/predict", "rows", env=env)


def rows_body(chunk: list[dict]) -> bytes:
    """The BentoML peer's JSON body for rows (one object per row)."""
    return json.dumps({"rows": chunk}).encode()


def answer(port: int, path: str, body: bytes) -> object:
    """POSTs a JSON body; the decoded JSON answer (``SystemExit`` naming the status on non-2xx)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{path} on port {port}: HTTP {e.code}: {e.read()[:300]!r}") from None


def predictions(fmt: str, reply) -> np.ndarray:
    """The predictions in an answer: kfloop V1 (``"v1"``), V2 (``"v2"``: first output) or BentoML's list."""
    if fmt == "v1":
        return np.asarray(reply["predictions"], dtype="float64")
    if fmt == "v2":
        out = reply["outputs"][0]
        return np.asarray(out["data"], dtype="float64").reshape(out["shape"])
    return np.asarray(reply, dtype="float64")


def check(name: str, port: int, path: str, fmt: str, body: bytes, expected: np.ndarray) -> None:
    """``SystemExit`` unless the server's predictions for ``body``'s rows equal ``expected`` (float32)."""
    got = predictions(fmt, answer(port, path, body))  # MLServer answers [n, 1] for a 1-D output
    if got.size != expected.size or not np.allclose(got.reshape(expected.shape), expected, 1e-5, 1e-6):
        raise SystemExit(f"{name} answers wrong predictions: {got.ravel()[:5]} vs {expected.ravel()[:5]}")
