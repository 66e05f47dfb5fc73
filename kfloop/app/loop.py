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

import json
import os
import shutil
import sys
import time
from pathlib import Path

from kfloop import clock, config, fs
from kfloop.app import replay
from kfloop.app.loop_runs import Loop, notification_summary
from kfloop.app.loop_summary import (
    apply_canary,
    headline,
    spec_record,
    training_run_result,
)
from kfloop.app.plan import LoopConfig, Plan, PlanError, Window, parse_windows, plan
from kfloop.app.servers import (
    WATERMARK_SECONDS,
    LoopError,
    Server,
    free_port,
    redirected,
    serving_python,
)

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
    loop = Loop(work, source, spec, cfg, progress, schema)
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


def _drive(loop: Loop, p: Plan, outcome: list[str]) -> None:
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
            # every answered row written (the log flushes every 0.5 s), then the monitor's watermark: a
            # scan sooner would close the window early
            for srv in (server, shadow):
                if srv is not None and not srv.wait_logged(config.MonitoringConfig().close_after_seconds):
                    loop.say(f"  {srv.ref} server: rows still unwritten after the wait ({srv.counters()})")
            time.sleep(WATERMARK_SECONDS + 0.5)
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


def _finish(loop: Loop, started: str, outcome: list[str]) -> dict:
    """Writes the loop record and the report."""
    from kfloop import lineage, notify
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
    record["events"] = notify.read_events(loop.store_uri, loop.model_name)
    record["notifications"] = notification_summary(record["events"], loop.notify_config)
    try:
        record["why"] = lineage.why(loop.store_uri, loop.model_name)
    except kstore.StoreError:
        record["why"] = None
    report_path = loop.workdir / "report.html"
    fs.write_text(str(report_path), report.render(record))
    record["report"] = str(report_path)
    fs.write_text(str(loop.workdir / "loop.json"), json.dumps(record, indent=1, sort_keys=True, default=str))
    n = record["notifications"]
    loop.say(f"notifications: {n['events']} events ({n['by_type']}) -> {', '.join(n['channels'])}")
    loop.say(f"report: {report_path}")
    return record


def clean_workdir(path: str | os.PathLike) -> None:
    """Removes a previous loop's workdir (``kfloop run --fresh``)."""
    p = Path(path)
    if p.exists():
        shutil.rmtree(p)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `kfloop run --spec SPEC --data CSV`")
