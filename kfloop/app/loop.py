"""The whole loop on one machine (``kfloop run`` / ``make run``), on the real taxi data.

1. **train** the champion on the history window (2013-2014) with the training pipeline under kfp.local
   (ingest → validate → train → evaluate → push; the first blessed model becomes ``champion``);
2. **serve** it: start the local KServe server (``python -m serving`` in the serving env) on the store;
3. **replay** windows of trips as live HTTP traffic (``X-Request-Id`` per request); the server logs every
   prediction; the labels "arrive" afterwards as feedback;
4. **monitor** each window with the monitoring pipeline under kfp.local (monitor → decide → trigger):
   a control window drawn from the training window itself (no drift expected), then later months;
5. drift → **retrain** on the fresh window (the trigger runs the training pipeline; the challenger is
   evaluated against the champion and pushed as ``canary`` only if blessed);
6. **canary**: a second server serves the ``canary`` alias as a shadow: every later request goes to both
   servers under the same request id, and both log their predictions. The next monitoring run's canary
   step (``components/canary``) compares the two on the rows both scored (paired interval) and promotes,
   keeps waiting or rolls back (aliases, audited) - the loop only starts and stops the shadow server;
7. the serving champion hot-reloads; later windows run against it (and the cooldown). The monitoring
   clock (``now``) of each run is the replayed window's end: the data's time (:mod:`kfloop.clock`);
8. **report**: one self-contained HTML file.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from kfloop import clock, config, fs
from kfloop import features as F
from kfloop.app import replay

_ROOT = Path(__file__).resolve().parents[2]


class LoopError(RuntimeError):
    """A loop step failed; the message names the step and where its logs are."""


@dataclasses.dataclass(frozen=True)
class Window:
    """One replayed window of trips: event time ``[start, end)`` (``sample``: random rows of it)."""

    label: str
    start: str
    end: str
    sample: int | None = None
    from_training: bool = False


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """What the local loop replays, and its knobs.

    Attributes:
        history_cutoff: The champion trains on trips before this date.
        control: A window drawn from the training window itself (no drift expected: no false alarm).
        windows: Later windows replayed as live traffic, in order.
        retrain_cutoff_from_window: A retraining's fresh window ends where the triggering window ends.
        batch_size: Rows per replayed request.
        hparams: Training-pipeline arguments of every training run (few epochs: the loop must be quick).
        server_start_timeout: Seconds to wait for a server to become ready.
    """

    history_cutoff: str = config.DEFAULT_CUTOFF
    control: Window = Window("control (2013-14 sample)", "2013-01-01", config.DEFAULT_CUTOFF, 800, True)
    windows: tuple[Window, ...] = (
        Window("2015 H1", "2015-01-01", "2015-07-01"),
        Window("2015 H2", "2015-07-01", "2016-01-01"),
        Window("2016", "2016-01-01", "2017-01-01"),
    )
    batch_size: int = 64
    hparams: tuple = (("epochs", 8),)
    server_start_timeout: float = 180.0


@contextlib.contextmanager
def redirected(log_path: Path):
    """Sends this process's stdout / stderr (and its children's: file descriptors 1 and 2) to a log file.

    kfp.local prints every task's full output; ``kfloop run`` shows progress lines and keeps those logs.

    Raises:
        LoopError: whatever failed inside, re-raised with the log's path and its last lines.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except Exception as e:
            sys.stdout.flush()
            sys.stderr.flush()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-12:])
            raise LoopError(f"{type(e).__name__}: {e}\n(log: {log_path})\n{tail}") from e
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving_python() -> str:
    """The serving env's interpreter: ``$KFLOOP_SERVING_PYTHON`` or ``.venv-serving/bin/python``."""
    return os.environ.get("KFLOOP_SERVING_PYTHON") or str(_ROOT / ".venv-serving" / "bin" / "python")


class Server:
    """A local KServe server (``python -m serving``) in a subprocess, its output in a log file."""

    def __init__(
        self,
        store_uri: str,
        model_name: str,
        log_path: Path,
        *,
        ref: str = "champion",
        log: bool = True,
        log_uri: str | None = None,
    ):
        self.store_uri, self.model_name, self.ref, self.log = store_uri, model_name, ref, log
        self.log_uri = log_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.flush_seconds = 0.5

    def start(self, timeout: float) -> None:
        python = serving_python()
        if not os.path.exists(python):
            raise LoopError(
                f"serving env python not found at {python} (run `make env` or set KFLOOP_SERVING_PYTHON)"
            )
        cmd = [python, "-m", "serving", "--store-uri", self.store_uri, "--model-name", self.model_name]
        cmd += ["--model-ref", self.ref, "--http_port", str(self.port), "--reload-interval", "0.5"]
        cmd += ["--log-flush-seconds", str(self.flush_seconds)]
        if not self.log:
            cmd.append("--no-prediction-log")
        elif self.log_uri:
            cmd += ["--log-uri", self.log_uri]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it while it runs
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(_ROOT), env=env)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LoopError(f"server ({self.ref}) exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.version() is not None:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise LoopError(
            f"server ({self.ref}) not ready after {timeout:.0f} s; log {self.log_path}:\n{self.tail()}"
        )

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def version(self) -> str | None:
        """The version the server serves now (V2 model metadata), or None while it is not ready."""
        try:
            with urllib.request.urlopen(f"{self.url}/v2/models/{self.model_name}", timeout=2) as r:
                data = json.loads(r.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        versions = data.get("versions") or []
        return versions[0] if versions else None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------- training


def _pipeline_inputs(func) -> set[str]:
    spec = getattr(func, "component_spec", None)
    return set((spec.inputs or {}).keys()) if spec is not None else set()


def _find(root: Path, task_prefix: str, name: str) -> Path | None:
    for task in sorted(root.iterdir()) if root.is_dir() else []:
        if task.name.startswith(task_prefix) and (task / name).exists():
            return task / name
    return None


def _json_file(path: Path | None) -> dict:
    if path is None:
        return {}
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        path = files[0] if files else None
        if path is None:
            return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def training_run_result(run_root: Path) -> dict:
    """What a training-pipeline run under kfp.local produced: splits, blessing, push result."""
    train = _find(run_root, "ingest", "train_data")
    evals = _find(run_root, "ingest", "eval_data")
    blessing = _json_file(_find(run_root, "evaluate", "blessing"))
    pushed = _json_file(_find(run_root, "push", "pushed"))
    return {
        "run_root": str(run_root),
        "train": str(train) if train else None,
        "eval": str(evals) if evals else None,
        "blessing": blessing,
        "pushed": pushed,
    }


# ---------------------------------------------------------------------------------------------- the loop


class _Loop:
    def __init__(self, workdir: Path, source: str, model_name: str, cfg: LoopConfig, progress):
        self.workdir, self.source, self.model_name, self.cfg = workdir, source, model_name, cfg
        self.store_uri = str(workdir / "store")
        self.progress = progress
        self.t0 = time.perf_counter()
        self.steps: list[dict] = []
        self.windows: list[dict] = []
        self.models: list[dict] = []
        self.canaries: list[dict] = []
        self.references: dict[str, dict] = {}  # version -> {"train", "eval", "window"}
        self.servers: list[Server] = []
        from pipelines import training

        self.training_func = training.create_pipeline()

    def say(self, text: str) -> None:
        self.progress(f"[{time.perf_counter() - self.t0:6.1f}s] {text}")

    @contextlib.contextmanager
    def step(self, name: str, detail: str = ""):
        start = time.perf_counter()
        self.say(f"{name}: {detail}..." if detail else f"{name}...")
        rec = {"step": name, "at": f"{start - self.t0:.1f}", "detail": detail}
        try:
            yield rec
        finally:
            rec["seconds"] = round(time.perf_counter() - start, 2)
            self.steps.append(rec)
            self.say(
                f"{name}: done in {rec['seconds']:.1f} s{' - ' + rec['detail'] if rec['detail'] != detail else ''}"
            )

    # -- training ----------------------------------------------------------------------------------

    def train(self, cutoff: str, window_start: str, label: str) -> dict:
        from kfloop import store as kstore

        ms = kstore.ModelStore(self.store_uri)
        champion_before = ms.get_alias(self.model_name, kstore.CHAMPION)
        from kfloop.app.local import run_pipeline

        args = {"source": self.source, "cutoff": cutoff, "window_start": window_start}
        args.update(store_uri=self.store_uri, model_name=self.model_name, deploy_mode="local")
        args.update(dict(self.cfg.hparams))
        inputs = _pipeline_inputs(self.training_func)
        with redirected(self.workdir / "logs" / f"train-{label}.log"):
            run = run_pipeline(
                self.training_func,
                self.workdir / "pipeline_root",
                **{k: v for k, v in args.items() if k in inputs},
            )
        result = training_run_result(run.root)
        return self._record_model(result, cutoff, window_start, champion_before)

    def _record_model(self, result: dict, cutoff: str, window_start: str, champion_before) -> dict:
        blessing, pushed = result.get("blessing") or {}, result.get("pushed") or {}
        version = pushed.get("version")
        failed = [r.get("message", "") for r in blessing.get("reasons", []) if not r.get("passed", True)]
        passed = [r.get("message", "") for r in blessing.get("reasons", []) if r.get("passed", True)]
        model = {
            "version": version,
            "trained_on": f"{window_start or 'first trip'} .. {cutoff}",
            "eval_auc": (blessing.get("metrics") or {}).get("auc"),
            "champion_eval_auc": (blessing.get("champion_metrics") or {}).get("auc"),
            "champion_before": champion_before,
            "blessed": bool(blessing.get("blessed")),
            "reasons": failed or passed,
            "alias": pushed.get("alias"),
            "fate": (
                f"pushed as {pushed.get('alias')}"
                if pushed.get("pushed")
                else "rejected by evaluation: " + "; ".join(pushed.get("reasons") or failed)
            ),
            "run_root": result.get("run_root"),
            "eval_comparison": next(
                (
                    r.get("message")
                    for r in blessing.get("reasons", [])
                    if r.get("kind") == "change" and r.get("slice") == "Overall"
                ),
                None,
            ),
            "failed_reasons": failed,
        }
        if version and result.get("train"):
            self.references[version] = {"train": result["train"], "eval": result["eval"]}
        self.models.append(model)
        return model

    # -- serving and replay ------------------------------------------------------------------------

    def start_server(self, ref: str, log: bool, log_uri: str | None = None) -> Server:
        n = sum(s.ref == ref for s in self.servers)
        name = f"server-{ref}{'-' + str(n + 1) if n else ''}.log"
        server = Server(
            self.store_uri, self.model_name, self.workdir / "logs" / name, ref=ref, log=log, log_uri=log_uri
        )
        self.servers.append(server)
        server.start(self.cfg.server_start_timeout)
        return server

    def stop_servers(self) -> None:
        for s in self.servers:
            s.stop()

    def rows(self, window: Window):
        from kfloop import datasets

        if window.from_training:
            champion = self.current_champion()
            frame = datasets.read_dataset(self.references[champion]["train"])
        else:
            frame = self._all_rows()
        return replay.select(frame, window.start, window.end, sample=window.sample, seed=7)

    def _all_rows(self):
        if not hasattr(self, "_frame"):
            import pandas as pd

            from kfloop.clean import clean

            raw = pd.read_csv(self.source, dtype=str, keep_default_na=False)
            self._frame = clean(raw).sort_values(F.EVENT_TIME.name, kind="stable").reset_index(drop=True)
        return self._frame

    def current_champion(self) -> str:
        from kfloop import store as kstore

        return kstore.ModelStore(self.store_uri).resolve(self.model_name, kstore.CHAMPION)

    # -- monitoring ----------------------------------------------------------------------------------

    def monitor(self, label: str, window_start: str, window_end: str, retrain_cutoff: str, now: str) -> dict:
        from components.trigger.trigger import read_triggers
        from kfloop.app.local import run_pipeline
        from pipelines import monitoring

        champion = self.current_champion()
        ref = self.references[champion]
        triggers_before = len(read_triggers(self.store_uri, self.model_name))
        with redirected(self.workdir / "logs" / f"monitor-{label.split()[0]}-{len(self.windows)}.log"):
            run = run_pipeline(
                monitoring.create_pipeline(local=True),
                self.workdir / "pipeline_root",
                now=now,
                deploy_mode="local",
                store_uri=self.store_uri,
                source=self.source,
                model_name=self.model_name,
                window_start=window_start,
                window_end=window_end,
                reference_train=ref["train"],
                reference_eval=ref["eval"] or "",
                trigger_mode="local",
                retrain_cutoff=retrain_cutoff,
                training_window_days=config.MonitoringConfig().training_window_days,
                retrain_pipeline_root=str(self.workdir / "retrain_root"),
                retrain_arguments=dict(self.cfg.hparams),
            )
        summary = _json_file(run.output("monitor-op", "summary"))
        decision = _json_file(run.output("decide-op", "decision"))
        verdict = _json_file(run.output("canary-op", "verdict"))
        triggered = _json_file(run.output("trigger-op", "triggered"))
        summary["champion_version"] = champion
        new_triggers = read_triggers(self.store_uri, self.model_name)[triggers_before:]
        return {
            "label": label,
            "summary": summary,
            "decision": decision,
            "canary": verdict,
            "triggered": triggered,
            "new_triggers": new_triggers,
        }

    # -- canary shadow ---------------------------------------------------------------------------------

    def start_canary(self) -> Server | None:
        """Starts the shadow server on the ``canary`` alias, if there is one. It logs its answers to the
        shadow log (``CanaryConfig.shadow_log``), which the canary step reads and the monitor does not."""
        from kfloop import store as kstore

        if kstore.ModelStore(self.store_uri).get_alias(self.model_name, kstore.CANARY) is None:
            return None
        shadow = fs.join(self.store_uri, config.CanaryConfig().shadow_log)
        return self.start_server("canary", log=True, log_uri=shadow)

    def mirror(self, rows, server: Server, request_ids: list[str]) -> dict:
        """Sends the rows just replayed to the shadow server under the same request ids (no feedback).

        Returns ``{"requests", "failed", "versions"}``; failures are not raised: the canary step sees the
        missing answers in the log and rolls the canary back.
        """
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body_rows = replay.instances(rows)
        path = f"/v1/models/{self.model_name}:predict"
        out = {"requests": 0, "failed": 0, "versions": {}}
        forwarded: list[tuple[str, int]] = []  # the mirror's record (components/canary/mirror.py)
        try:
            for rid, lo in zip(request_ids, range(0, len(body_rows), self.cfg.batch_size), strict=True):
                batch = body_rows[lo : lo + self.cfg.batch_size]
                out["requests"] += 1
                try:
                    status, _, headers = replay._post(
                        conn, path, json.dumps({"instances": batch}).encode(), rid
                    )
                except (OSError, http.client.HTTPException):
                    conn.close()
                    out["failed"] += 1
                    forwarded.append((rid, 0))
                    continue
                forwarded.append((rid, int(status)))
                if status != 200:
                    out["failed"] += 1
                    continue
                v = headers.get("x-model-version", "?")
                out["versions"][v] = out["versions"].get(v, 0) + len(batch)
        finally:
            conn.close()
            from components.canary import mirror

            mirror.record(self.store_uri, self.model_name, forwarded)
        return out

    def wait_for_version(self, server: Server, version: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.version() == version:
                return True
            time.sleep(0.5)
        return False


def _iso_now() -> str:
    return clock.iso(clock.utc_now())


def run_loop(
    workdir: str | os.PathLike,
    *,
    source: str | None = None,
    model_name: str = config.MODEL_NAME,
    cfg: LoopConfig = LoopConfig(),
    progress=print,
) -> dict:
    """Runs the whole local loop; writes ``<workdir>/report.html`` and ``<workdir>/loop.json``.

    Args:
        workdir: Fresh directory for the store, pipeline runs, logs and the report (must be empty or new).
        source: The raw taxi CSV (default: fetched / cached by :func:`examples.taxi.fetch.fetch`).
        model_name: Model name.
        cfg: What to replay.
        progress: Called with one line per step (default: print).

    Returns:
        The loop record (also in ``loop.json``), with ``report`` = path of the HTML report.

    Raises:
        LoopError: a step failed (the message names it); servers are stopped either way.
    """
    from examples.taxi import fetch as data
    from kfloop import store as kstore

    work = Path(workdir).resolve()
    if work.exists() and any(work.iterdir()):
        raise LoopError(f"workdir {work} is not empty (the loop starts from a fresh store)")
    work.mkdir(parents=True, exist_ok=True)
    source = str(Path(source).resolve()) if source else str(data.fetch())
    loop = _Loop(work, source, model_name, cfg, progress)
    started = _iso_now()
    outcome = []
    try:
        with loop.step("train champion", f"history window .. {cfg.history_cutoff}") as st:
            m = loop.train(cfg.history_cutoff, "", "history")
            if not m["version"]:
                raise LoopError(f"the first model was not pushed: {m['fate']}")
            st["detail"] = f"{m['version']} eval AUC {m['eval_auc']:.4f}, {m['fate']}"
        with loop.step("start server", "local KServe server on the champion") as st:
            server = loop.start_server("champion", log=True)
            st["detail"] = f"{server.url} serving {server.version()}"
        shadow: Server | None = None
        for window in (cfg.control, *cfg.windows):
            rows = loop.rows(window)
            if rows.empty:
                continue
            with loop.step(f"replay {window.label}", f"{len(rows)} trips") as st:
                # windows chain: each starts where the last one closed (its watermark), so no row falls between
                w_start = loop.windows[-1]["summary"]["window_end"] if loop.windows else _iso_now()
                got = replay.replay(
                    rows,
                    server.url,
                    model_name,
                    batch_size=cfg.batch_size,
                    request_prefix=window.label.split()[0],
                )
                mirrored = loop.mirror(rows, shadow, got.request_ids) if shadow else None
                w_end = _iso_now()  # every row of the window is stamped before this
                # the servers' log flush, and the monitor's watermark: a scan sooner would close the window early
                closes = config.MonitoringConfig().close_after_seconds
                time.sleep(max(server.flush_seconds * 2 + 0.5, closes + 0.5))
                st["detail"] = (
                    f"{got.rows} predictions in {got.seconds:.1f} s by {got.model_versions}, {got.feedback_rows} labels arrived"
                )
                if mirrored:
                    st["detail"] += (
                        f"; mirrored to the canary: {mirrored['requests']} requests, {mirrored['failed']} failed, "
                        f"answered by {mirrored['versions']}"
                    )
            retrain_cutoff = window.end if not window.from_training else cfg.history_cutoff
            now = f"{window.end}T00:00:00Z"  # the monitoring clock: the replayed data's time
            with loop.step(
                f"monitor {window.label}",
                f"monitoring pipeline at {now} (data time): monitor → canary → decide → trigger",
            ) as st:
                w = loop.monitor(window.label, w_start, w_end, retrain_cutoff, now)
                w["replayed"] = f"{window.start} .. {window.end}" + (
                    f" (sample of {window.sample})" if window.sample else ""
                )
                w["now"] = now
                loop.windows.append(w)
                d = w["decision"]
                st["detail"] = f"{d['decision']}: {d['summary']}"
            c = w.get("canary") or {}
            if c.get("action") not in (None, "none"):
                c = dict(c, window=window.label, mirrored=mirrored)
                loop.canaries.append(c)
                loop.steps.append(
                    {
                        "step": "canary verdict (monitoring pipeline)",
                        "at": "",
                        "seconds": None,
                        "detail": c["summary"],
                    }
                )
                loop.say(f"canary verdict (monitoring pipeline): {c['summary']}")
                fate = {
                    "promote": "promoted to champion by the canary step",
                    "reject": "rolled back by the canary step",
                }.get(c["action"])
                for mod in loop.models:
                    if mod["version"] == c.get("canary_version"):
                        mod["canary"] = c["summary"]
                        if fate:
                            mod["fate"] = f"{fate}: {c['summary']}"
                if fate:
                    outcome.append(f"canary {c.get('canary_version')}: {c['action']} ({c['verdict']})")
                    if shadow is not None:
                        shadow.stop()
                        shadow = None
                if c["action"] == "promote":
                    with loop.step("hot reload", f"server picks up champion {c['canary_version']}") as st:
                        ok = loop.wait_for_version(server, c["canary_version"])
                        st["detail"] = f"serving {server.version()}" + ("" if ok else " (reload not seen)")
            if not d.get("retrain"):
                continue
            if w["new_triggers"] and w["new_triggers"][-1].get("started"):
                trig = w["new_triggers"][-1]
                result = training_run_result(Path(trig["run"]["root"]))
                m = loop._record_model(
                    result,
                    trig["arguments"].get("cutoff", ""),
                    trig["arguments"].get("window_start", ""),
                    w["summary"].get("champion_version"),
                )
                loop.steps.append(
                    {
                        "step": "retrain (triggered)",
                        "at": "",
                        "seconds": trig.get("seconds"),
                        "detail": f"challenger {m['version'] or '-'}: {m['fate']}",
                    }
                )
                loop.say(f"retrain (triggered by the monitoring pipeline): {m['fate']}")
            else:
                window_start = _shift_days(retrain_cutoff, -config.MonitoringConfig().training_window_days)
                with loop.step("retrain", f"fresh window {window_start} .. {retrain_cutoff}") as st:
                    m = loop.train(retrain_cutoff, window_start, window.label.replace(" ", "_"))
                    st["detail"] = f"challenger {m['version'] or '-'}: {m['fate']}"
            outcome.append(
                f"drift in {window.label} → retrained → challenger {m['version'] or '(none)'}: {m['fate']}"
            )
            if m["version"] and m.get("alias") == kstore.CANARY:
                with loop.step("start canary", f"shadow server on canary {m['version']}") as st:
                    if shadow is not None:
                        shadow.stop()
                    shadow = loop.start_canary()
                    st["detail"] = f"{shadow.url} serving {shadow.version()}" if shadow else "no canary alias"
                m["fate"] = "canary: judged by the next monitoring runs"
    finally:
        loop.stop_servers()
    ms = kstore.ModelStore(loop.store_uri)
    record = {
        "model_name": model_name,
        "store_uri": loop.store_uri,
        "source": source,
        "started_at": started,
        "seconds": round(time.perf_counter() - loop.t0, 1),
        "cpus": os.cpu_count(),
        "training_via": "kfp.local training pipeline",
        "outcome": " | ".join(outcome) or "no drift-triggered retraining",
        "steps": loop.steps,
        "windows": loop.windows,
        "models": loop.models,
        "canaries": loop.canaries,
        "decisions_by_comparison": None,
        "history": ms.history(model_name),
        "champion": ms.get_alias(model_name, kstore.CHAMPION),
    }
    from kfloop.app import loop_report as report

    record["decisions_by_comparison"] = report.tally(record)
    report_path = work / "report.html"
    fs.write_text(str(report_path), report.render(record))
    record["report"] = str(report_path)
    fs.write_text(str(work / "loop.json"), json.dumps(record, indent=1, sort_keys=True, default=str))
    loop.say(f"report: {report_path}")
    return record


def _shift_days(date: str, days: int) -> str:
    import datetime as dt

    d = clock.parse(date) + dt.timedelta(days=days)
    return f"{d:%Y-%m-%d}"


def clean_workdir(path: str | os.PathLike) -> None:
    """Removes a previous loop's workdir (``kfloop run --fresh``)."""
    p = Path(path)
    if p.exists():
        shutil.rmtree(p)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0 if run_loop(sys.argv[1] if len(sys.argv) > 1 else "runs/loop") else 1)
