"""The whole loop on one machine (``kfloop run --spec SPEC --data CSV``; ``make run`` on the taxi example).

1. **plan** the replay from the data (:mod:`kfloop.app.plan`): the history the champion trains on, a
   control window (a sample of that history: no drift expected), then equal windows of the rest, in the
   data's own time (or in row order when the spec has no time column);
2. **train** the champion on the history with the training pipeline under kfp.local (ingest → validate →
   train → evaluate → push; the first blessed model becomes ``champion``);
3. **serve** it: start the local KServe server (``python -m serving`` in the serving env) on the store;
4. **replay** each window as live HTTP traffic (``X-Request-Id`` per request); the server logs every
   prediction; the labels "arrive" afterwards as feedback;
5. **monitor** each window with the monitoring pipeline under kfp.local (monitor → canary → decide →
   trigger); the monitoring clock (``now``) of each run is its window's end, in the data's time;
6. drift → **retrain**: the trigger records the request; this driver starts the training run from that
   record (:func:`components.trigger.trigger.mark_started`), and the challenger is evaluated against the
   champion and pushed as ``canary`` only if blessed;
7. **canary**: a second server serves the ``canary`` alias as a shadow: every later request goes to both
   servers under the same request id. The next monitoring run's canary step compares the two on the rows
   both scored and promotes, keeps waiting or rolls back; the loop only starts and stops the shadow server;
8. the serving champion hot-reloads; later windows run against it (and the cooldown);
9. **report**: one self-contained HTML file (:mod:`kfloop.app.loop_report`) and ``loop.json``.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from kfloop import clock, config, fs, layout
from kfloop.app import replay
from kfloop.app.loop_summary import (
    apply_canary,
    headline,
    json_file,
    model_record,
    spec_record,
    training_run_result,
)
from kfloop.app.plan import LoopConfig, Plan, PlanError, Window, parse_windows, plan
from kfloop.app.servers import LoopError, Server, free_port, redirected, serving_python

__all__ = [
    "LoopConfig",
    "LoopError",
    "Server",
    "Window",
    "clean_workdir",
    "free_port",
    "parse_windows",
    "redirected",
    "run_loop",
    "serving_python",
    "training_run_result",
]


def _pipeline_inputs(func) -> set[str]:
    spec = getattr(func, "component_spec", None)
    return set((spec.inputs or {}).keys()) if spec is not None else set()


class _Loop:
    def __init__(self, workdir: Path, source: str, spec, cfg: LoopConfig, progress, schema: str = ""):
        from kfloop import spec as kspec

        self.workdir, self.source, self.spec, self.cfg = workdir, source, spec, cfg
        self.model_name = spec.name
        self.store_uri = str(workdir / "store")
        self.spec_path = str(workdir / "spec.yaml")  # what every training run of this loop gets
        fs.write_text(self.spec_path, kspec.dump(spec))
        self.schema_path = ""  # the first training run's reviewed schema ("" = the spec's own)
        if schema:  # a copy: the run does not depend on the user's file
            self.schema_path = str(workdir / "schema.pbtxt")
            fs.write_text(self.schema_path, fs.read_text(schema))
        self.progress = progress
        self.t0 = time.perf_counter()
        self.steps: list[dict] = []
        self.windows: list[dict] = []
        self.models: list[dict] = []
        self.canaries: list[dict] = []
        self.references: dict[str, dict] = {}  # version -> {"train", "eval"}
        self.servers: list[Server] = []
        self.plan: Plan | None = None
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
            changed = " - " + rec["detail"] if rec["detail"] != detail else ""
            self.say(f"{name}: done in {rec['seconds']:.1f} s{changed}")

    def note(self, step: str, detail: str, seconds=None) -> None:
        self.steps.append({"step": step, "at": "", "seconds": seconds, "detail": detail})
        self.say(f"{step}: {detail}")

    # -- training ----------------------------------------------------------------------------------

    def train(self, cutoff: str, window_start: str, label: str, *, extra: dict | None = None, root=None):
        """Runs the training pipeline under kfp.local; returns the model record."""
        from kfloop import store as kstore
        from kfloop.app.local import run_pipeline

        champion_before = kstore.ModelStore(self.store_uri).get_alias(self.model_name, kstore.CHAMPION)
        args = {"source": self.source, "cutoff": cutoff, "window_start": window_start}
        args.update(extra or {})
        if self.schema_path and not args.get("schema"):  # a retrain has the champion's (trigger)
            args["schema"] = self.schema_path
        args.update(spec=self.spec_path, store_uri=self.store_uri, model_name=self.model_name)
        args.update(deploy_mode="local", cutoff=cutoff, window_start=window_start)
        args.update(dict(self.cfg.hparams))
        inputs = _pipeline_inputs(self.training_func)
        with redirected(self.workdir / "logs" / f"train-{label}.log"):
            run = run_pipeline(
                self.training_func,
                root or (self.workdir / "pipeline_root"),
                **{k: v for k, v in args.items() if k in inputs},
            )
        result = training_run_result(run.root)
        model = model_record(result, cutoff, window_start, champion_before)
        if model["version"] and result.get("train"):
            self.references[model["version"]] = {"train": result["train"], "eval": result["eval"]}
        self.models.append(model)
        return model

    def retrain_requested(self, request: dict, window: Window) -> dict:
        """Starts the training run a trigger recorded (local mode) and marks the record started; returns the
        model record (``trigger``: the record as marked)."""
        from components.trigger import trigger as T

        args = dict(request.get("arguments") or {})
        if not self.plan.by_time:  # row order: the fresh window in row positions, not the trigger's times
            args.update(self.plan.retrain_window(window))
        t0 = time.perf_counter()
        label = f"retrain-{len(self.models)}"
        root = request.get("pipeline_root") or str(self.workdir / "retrain_root")
        m = self.train(args.get("cutoff", ""), args.get("window_start", ""), label, extra=args, root=root)
        m["trigger"] = T.mark_started(
            self.store_uri,
            self.model_name,
            dict(request, arguments={**args, "spec": self.spec_path}),
            {"root": m["run_root"]},
            seconds=time.perf_counter() - t0,
        )
        return m

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

        if window.from_training:  # a sample of the champion's training split: the history itself
            frame = datasets.read_dataset(self.references[self.current_champion()]["train"], self.spec)
            return replay.select(frame, None, None, spec=self.spec, sample=window.sample, seed=7)
        return replay.select(self.all_rows(), window.start, window.end, spec=self.spec, sample=window.sample)

    def all_rows(self):
        """The whole data in Dataset form, in time order (row order without a time column)."""
        if not hasattr(self, "_frame"):
            from kfloop.clean import clean, read_raw

            frame = clean(read_raw(self.source), self.spec)
            if self.spec.event_time is not None:
                frame = frame.sort_values(self.spec.event_time.name, kind="stable")
            self._frame = frame.reset_index(drop=True)
        return self._frame

    def current_champion(self) -> str:
        from kfloop import store as kstore

        return kstore.ModelStore(self.store_uri).resolve(self.model_name, kstore.CHAMPION)

    # -- monitoring ----------------------------------------------------------------------------------

    def monitor(self, label: str, window_start: str, window_end: str, retrain_cutoff: str, now: str) -> dict:
        from components.trigger.trigger import read_triggers
        from kfloop.app.local import run_pipeline
        from kfloop.reference import stored_reference
        from pipelines import monitoring

        champion = self.current_champion()
        ref = self.references[champion]
        # The champion's stored reference (its eval predictions too: output drift); the training splits
        # for a version pushed without one.
        stored = stored_reference(self.store_uri, self.model_name, champion)
        ref = {"train": stored, "eval": ""} if stored else ref
        triggers_before = len(read_triggers(self.store_uri, self.model_name))
        with redirected(self.workdir / "logs" / f"monitor-{len(self.windows)}.log"):
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
                training_window_days=self.plan.training_window_days if self.plan.by_time else 1.0,
                cooldown_hours=self.plan.cooldown_hours,
                retrain_pipeline_root=str(self.workdir / "retrain_root"),
                retrain_arguments=dict(self.cfg.hparams),
            )
        summary = json_file(run.output("monitor-op", "summary"))
        summary["champion_version"] = champion
        return {
            "label": label,
            "summary": summary,
            "decision": json_file(run.output("decide-op", "decision")),
            "canary": json_file(run.output("canary-op", "verdict")),
            "triggered": json_file(run.output("trigger-op", "triggered")),
            "new_triggers": read_triggers(self.store_uri, self.model_name)[triggers_before:],
        }

    # -- canary shadow ---------------------------------------------------------------------------------

    def start_canary(self) -> Server | None:
        """Starts the shadow server on the ``canary`` alias, if there is one. It logs its answers to the
        shadow log (``CanaryConfig.shadow_log``), which the canary step reads and the monitor does not."""
        from kfloop import store as kstore

        if kstore.ModelStore(self.store_uri).get_alias(self.model_name, kstore.CANARY) is None:
            return None
        shadow = layout.shadow_root(self.store_uri, config.CanaryConfig().shadow_log)
        return self.start_server("canary", log=True, log_uri=shadow)

    def mirror(self, rows, server: Server, request_ids: list[str]) -> dict:
        """Sends the rows just replayed to the shadow server under the same request ids (no feedback).

        Returns ``{"requests", "failed", "versions"}``; failures are not raised: the canary step sees the
        missing answers in the log and rolls the canary back.
        """
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        body_rows = replay.instances(rows, self.spec)
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


def run_loop(
    workdir: str | os.PathLike,
    *,
    spec,
    source: str,
    schema: str = "",
    cfg: LoopConfig = LoopConfig(),
    progress=print,
) -> dict:
    """Runs the whole local loop on any dataset; writes ``<workdir>/report.html`` and ``<workdir>/loop.json``.

    Args:
        workdir: Fresh directory for the store, pipeline runs, logs and the report (must be empty or new).
        spec: The :class:`kfloop.spec.DatasetSpec` of the data (the model's name is ``spec.name``).
        source: The raw CSV the spec describes.
        schema: The reviewed TFDV schema file for the first training run ("" = the spec's own); retrains
            take the champion's (the trigger passes it).
        cfg: What to replay (windows derived from the data where not given, :mod:`kfloop.app.plan`).
        progress: Called with one line per step (default: print).

    Returns:
        The loop record (also in ``loop.json``), with ``report`` = path of the HTML report.

    Raises:
        LoopError: a step failed, or the replay cannot be planned (the message names it); servers are
            stopped either way.
    """
    work = Path(workdir).resolve()
    if work.exists() and any(work.iterdir()):
        raise LoopError(f"workdir {work} is not empty (the loop starts from a fresh store)")
    work.mkdir(parents=True, exist_ok=True)
    source = str(Path(source).resolve())
    loop = _Loop(work, source, spec, cfg, progress, schema)
    started = clock.iso(clock.utc_now())
    outcome: list[str] = []
    try:
        try:
            loop.plan = plan(spec, loop.all_rows(), cfg)
        except PlanError as e:
            raise LoopError(f"replay plan: {e}") from None
        _drive(loop, loop.plan, outcome)
    finally:
        loop.stop_servers()
    return _finish(loop, started, outcome)


def _drive(loop: _Loop, p: Plan, outcome: list[str]) -> None:
    """Trains the champion, serves it and replays / monitors every window of the plan."""
    from kfloop import store as kstore

    cfg = loop.cfg
    loop.say(
        f"plan ({'event time' if p.by_time else 'row order'}): history .. {p.history_cutoff}, "
        f"{len(p.windows)} windows, retrain window {p.training_window_days:g} "
        f"{'days' if p.by_time else 'rows'}, cooldown {p.cooldown_hours:g} h"
    )
    with loop.step("train champion", f"history window .. {p.history_cutoff}") as st:
        m = loop.train(p.history_cutoff, "", "history")
        if not m["version"]:
            raise LoopError(f"the first model was not pushed: {m['fate']}")
        st["detail"] = f"{m['version']} {headline(m)}, {m['fate']}"
    with loop.step("start server", "local KServe server on the champion") as st:
        server = loop.start_server("champion", log=True)
        st["detail"] = f"{server.url} serving {server.version()}"
    shadow: Server | None = None
    for index, window in enumerate((p.control, *p.windows)):
        rows = loop.rows(window)
        if rows.empty:
            continue
        with loop.step(f"replay {window.label}", f"{len(rows)} rows") as st:
            # windows chain: each starts where the last one closed (its watermark), so no row falls between
            w_start = (
                loop.windows[-1]["summary"]["window_end"] if loop.windows else clock.iso(clock.utc_now())
            )
            got = replay.replay(
                rows,
                server.url,
                loop.model_name,
                spec=loop.spec,
                batch_size=cfg.batch_size,
                request_prefix=f"w{index}",
            )
            mirrored = loop.mirror(rows, shadow, got.request_ids) if shadow else None
            w_end = clock.iso(clock.utc_now())  # every row of the window is stamped before this
            # the servers' log flush, and the monitor's watermark: a scan sooner would close the window early
            closes = config.MonitoringConfig().close_after_seconds
            time.sleep(max(server.flush_seconds * 2 + 0.5, closes + 0.5))
            st["detail"] = (
                f"{got.rows} predictions in {got.seconds:.1f} s by {got.model_versions}, "
                f"{got.feedback_rows} labels arrived"
            )
            if mirrored:
                st["detail"] += (
                    f"; mirrored to the canary: {mirrored['requests']} requests, {mirrored['failed']} failed, "
                    f"answered by {mirrored['versions']}"
                )
        retrain = p.retrain_window(window)
        now = p.now(index, window)  # the monitoring clock: the replayed data's time
        with loop.step(
            f"monitor {window.label}",
            f"monitoring pipeline at {now} (data time): monitor → canary → decide → trigger",
        ) as st:
            w = loop.monitor(window.label, w_start, w_end, retrain["cutoff"] if p.by_time else "", now)
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
            loop.note("canary verdict (monitoring pipeline)", c["summary"])
            if apply_canary(loop.models, c):
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
        requested = [t for t in w["new_triggers"] if t.get("state") == "requested"]
        if not requested:
            loop.note("retrain", "the decision said retrain but the trigger recorded no request")
            continue
        with loop.step("retrain (triggered)", "training run from the trigger's record") as st:
            m = loop.retrain_requested(requested[-1], window)
            m["champion_before"] = w["summary"].get("champion_version")
            marked = m.pop("trigger")
            w["new_triggers"] = [marked if t is requested[-1] else t for t in w["new_triggers"]]
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


def _finish(loop: _Loop, started: str, outcome: list[str]) -> dict:
    """Writes the loop record and the report."""
    from kfloop import store as kstore
    from kfloop.app import loop_report as report

    ms = kstore.ModelStore(loop.store_uri)
    record = {
        "model_name": loop.model_name,
        "spec": spec_record(loop.spec),
        "plan": loop.plan.describe() if loop.plan else None,
        "store_uri": loop.store_uri,
        "source": loop.source,
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
        "history": ms.history(loop.model_name),
        "champion": ms.get_alias(loop.model_name, kstore.CHAMPION),
    }
    record["decisions_by_comparison"] = report.tally(record)
    report_path = loop.workdir / "report.html"
    fs.write_text(str(report_path), report.render(record))
    record["report"] = str(report_path)
    fs.write_text(str(loop.workdir / "loop.json"), json.dumps(record, indent=1, sort_keys=True, default=str))
    loop.say(f"report: {report_path}")
    return record


def clean_workdir(path: str | os.PathLike) -> None:
    """Removes a previous loop's workdir (``kfloop run --fresh``)."""
    p = Path(path)
    if p.exists():
        shutil.rmtree(p)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `kfloop run --spec SPEC --data CSV`")
