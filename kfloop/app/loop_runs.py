"""The local loop's pipeline runs and servers: one :class:`Loop` holds the store, the spec copy, the training
and monitoring runs under kfp.local, the servers and what each step recorded (:mod:`kfloop.app.loop` drives it).

Only the standard library is imported at module level.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from kfloop import config, fs, layout
from kfloop.app import replay
from kfloop.app.loop_summary import json_file, model_record, training_run_result
from kfloop.app.plan import LoopConfig, Plan, Window
from kfloop.app.servers import WATERMARK_SECONDS, Server, redirected


def _pipeline_inputs(func) -> set[str]:
    spec = getattr(func, "component_spec", None)
    return set((spec.inputs or {}).keys()) if spec is not None else set()


def local_notify_config(workdir: Path, file_channel: str, team_config: str = "") -> str:
    """Writes ``<workdir>/notify.yaml``: the team's channels (if any) plus a local file channel, so every
    event of the loop is also in ``notifications.jsonl``; returns its path.

    Raises:
        kfloop.notify.NotifyConfigError: the team's config is not valid (it names the key).
    """
    from kfloop import notify

    team = notify.load_config(team_config) if team_config else notify.NotifyConfig()
    channels = [*team.channels, f"kfloop-file://{file_channel}"]
    body = {"channels": channels, "retries": team.retries, "backoff_seconds": team.backoff_seconds}
    body["timeout_seconds"] = team.timeout_seconds
    path = workdir / "notify.yaml"
    fs.write_text(str(path), json.dumps(body, indent=1))  # JSON is YAML
    return str(path)


def notification_summary(events: list[dict], notify_config: str) -> dict:
    """How many of the loop's ``events`` (:func:`kfloop.notify.read_events`) by type, and where to
    (channels redacted)."""
    import collections

    from kfloop import notify

    by_type = collections.Counter(e.get("type") for e in events)
    return {
        "events": len(events),
        "by_type": ", ".join(f"{k} {n}" for k, n in sorted(by_type.items())) or "none",
        "channels": [notify.redact(c) for c in notify.load_config(notify_config).channels],
        "failed": sum(1 for e in events if e.get("outcome") not in (None, "delivered", "no_channels")),
        "records": [e.get("record_uri") or e.get("event_id") for e in events],
    }


class Loop:
    """One local loop: its store, runs, servers and records."""

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
        self.notifications = str(workdir / "notifications.jsonl")
        self.notify_config = local_notify_config(workdir, self.notifications, cfg.notify_config)
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
        args.update(notify_config=self.notify_config)
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
                promotion_policy=self.cfg.promotion_policy,
                notify_config=self.notify_config,
                close_after_seconds=WATERMARK_SECONDS,
                **({} if self.cfg.canary_margin is None else {"canary_margin": self.cfg.canary_margin}),
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
