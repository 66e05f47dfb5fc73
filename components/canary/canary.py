"""Canary: judge the ``canary`` version against the champion on live traffic, then promote, wait or roll back.

Runs in the monitoring pipeline (the same code locally and on a cluster). When the store has a ``canary``
alias, it reads the prediction log since the canary was deployed (up to the window end) and the labels
that arrived, per model version (:func:`live_scores`, the one place this step reads the log), and:

1. **health**: rows logged under a version that is neither champion nor canary, or the same request row
   answered twice under one version (the canary server answering as the champion), or, when the canary
   shadows the champion, requests the champion answered and the canary did not (failed requests) → roll
   back;
2. **comparison** (:mod:`kfloop.paired`): paired on the rows both versions scored (a shadow canary, as in
   the local loop), else unpaired on each version's own rows (a KServe traffic split); the policy of
   :class:`kfloop.config.ComparisonConfig`, in the metric of the champion's task (``paired.compare(task=)``:
   binary AUC, regression MSE, multiclass log loss; the difference oriented so that > 0 means the canary
   is better, the margin ``margin_for(task)``): better / not worse than the margin → promote; worse → roll
   back; undecided → keep waiting, until :class:`kfloop.config.CanaryConfig`'s limit (labelled rows or
   monitoring runs), where ``at_limit`` decides.

Promote and roll back go through :func:`kfloop.deploy.promote` / :func:`kfloop.deploy.reject_canary`
(local: aliases, the server hot-reloads; cluster: the InferenceService is re-applied). Every verdict is
recorded as ``monitoring/<model>/canary/<id>.json`` with the monitoring clock's time (:mod:`kfloop.clock`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import numpy as np

from components.canary import approval
from components.canary.verdict import (  # noqa: F401 (re-exported: the verdict and its rendering)
    NONE,
    PROMOTE,
    REJECT,
    WAIT,
    finish_verdict,
    read_verdicts,
    to_html,
    to_markdown,
)
from kfloop import clock, config, layout, paired, store


@dataclasses.dataclass
class Scores:
    """What one model version scored: request rows, outputs, labels (NaN: not arrived).

    Attributes:
        ids: ``(request_id, row)`` of each scored row, once (a repeated answer is dropped, first kept).
        probs: The output of each row: binary probability, regression prediction [n]; multiclass
            probabilities [n, K].
        labels: Arrived label of each row (NaN: none): 0/1, the value, or the class index.
        retries: Rows answered again by the same version in the same log (a client retry with the same
            ``X-Request-Id``): dropped, not a failure.
        doubled: Rows this version answered in both logs (main and shadow): a server meant to serve the
            other version answers with this one.
    """

    ids: list[tuple[str, int]]
    probs: np.ndarray
    labels: np.ndarray
    retries: int = 0
    doubled: int = 0


@dataclasses.dataclass
class LiveLog:
    """What :func:`live_scores` read: per-version scores, corrupt files, where the labels came from."""

    scores: dict[str, Scores]
    corrupt: int = 0
    labels: dict = dataclasses.field(default_factory=dict)


def live_scores(
    store_uri: str,
    model_name: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    horizon_days: float = config.MonitoringConfig().feedback_horizon_days,
    shadow_log: str = config.CanaryConfig().shadow_log,
    spec=None,
) -> LiveLog:
    """Per model version, the rows logged in ``[start, end)`` and their arrived labels.

    The one function of this step that reads the prediction / feedback log (:func:`kfloop.predlog.scan`:
    only the window's date partitions; corrupt files skipped and counted). Predictions come from the main
    log (real traffic, e.g. a KServe traffic split) and from the shadow log ``<store>/<shadow_log>/`` (a
    shadow canary's answers to copies of the same requests); labels from the main log's feedback, joined
    on ``(request_id, row)`` when they arrived within ``horizon_days`` after the window. A row answered
    again by the same version in the same log (a client retry) keeps its first answer by time; labels
    follow :mod:`kfloop.labels` (first arrival kept, conflicts counted). ``spec`` (the champion's dataset
    spec; None: binary) says which output column is read and what a label is.

    Returns:
        A :class:`LiveLog`.
    """
    import pandas as pd

    from kfloop import labels as L
    from kfloop import predlog
    from kfloop.reference import OUTPUT_KEYS

    if end <= start:
        return LiveLog({})
    task = spec.task.value if spec is not None else "binary"
    out_col = OUTPUT_KEYS[task]
    rep = predlog.ScanReport()
    cols = ["request_id", "row", "model_version", out_col, "timestamp"]
    parts = []
    for n, root in enumerate((store_uri, layout.shadow_root(store_uri, shadow_log))):
        for b in predlog.scan(root, model_name, predlog.PREDICTIONS, start, end, cols, report=rep):
            d = b.to_pydict()
            parts.append(
                pd.DataFrame(
                    {
                        "request_id": [str(r) for r in d["request_id"]],
                        "row": [int(r) for r in d["row"]],
                        "version": [str(v) for v in d["model_version"]],
                        "p": list(np.asarray(d[out_col], dtype=np.float64)),
                        "ts": [t.timestamp() for t in d["timestamp"]],
                        "log": n,
                    }
                )
            )
    fb_end = end + dt.timedelta(days=horizon_days)
    fcols = L.feedback_columns(predlog.FEEDBACK_SCHEMA)
    frep = predlog.ScanReport()
    fparts = [
        b.to_pandas()
        for b in predlog.scan(store_uri, model_name, predlog.FEEDBACK, start, fb_end, fcols, report=frep)
    ]
    prov = L.Provenance(feedback_files=frep.files)
    labels: dict[tuple[str, int], float] = {}
    if fparts:
        f = pd.concat(fparts, ignore_index=True)
        f["ts"] = f["timestamp"].astype("int64")
        f = L.first_labels(f, prov)
        keys = zip(f["request_id"].astype(str), f["row"].astype(int), strict=True)
        labels = dict(zip(keys, f["label"].astype(float if task == "regression" else int), strict=True))
    out = {}
    if parts:
        frame = pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable")
        for v, g in frame.groupby("version", sort=True):
            first_in_log = ~g.duplicated(["request_id", "row", "log"], keep="first")
            retries = int((~first_in_log).sum())
            g = g[first_in_log.to_numpy()]
            once = ~g.duplicated(["request_id", "row"], keep="first")
            doubled = int((~once).sum())
            g = g[once.to_numpy()]
            ids = list(zip(g["request_id"], g["row"].astype(int), strict=True))
            ys = [labels.get(k, np.nan) for k in ids]
            probs = np.asarray(g["p"].tolist(), dtype=np.float64)
            if task == "multiclass":
                probs = probs.reshape(-1, spec.n_classes)
            out[str(v)] = Scores(ids, probs, np.asarray(ys, dtype=np.float64), retries, doubled)
    prov.labelled_rows = sum(int((~np.isnan(s.labels)).sum()) for s in out.values())
    return LiveLog(out, len(rep.corrupt) + len(frep.corrupt), prov.as_dict())


def canary_since(ms: store.ModelStore, model_name: str, canary: str) -> dt.datetime | None:
    """When the ``canary`` alias was last set to ``canary`` (the store's clock, the one the log uses)."""
    when = None
    for rec in ms.history(model_name):
        if (
            rec.get("event") == "alias"
            and rec.get("alias") == store.CANARY
            and rec.get("to") == canary
            and rec.get("outcome") == "success"
        ):
            when = clock.parse(rec["time"])
    if when is not None:  # the log's timestamps have millisecond precision
        when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    return when


def _reason(kind: str, measure: str, value, threshold, message: str) -> dict:
    return {"kind": kind, "measure": measure, "value": value, "threshold": threshold, "message": message}


def health(
    scores: dict[str, Scores], canary: str, champion: str, mirrored=None
) -> tuple[list[dict], list[dict]]:
    """Reasons the canary is unhealthy (empty: healthy), and notes that are not failures.

    * A version that is neither canary nor champion, or one version answering the same rows in both the
      main and the shadow log (the other server answers with the wrong version): unhealthy.
    * The same rows answered again by the same version in the same log (a client retrying with the same
      request id): a note; the first answer is kept.
    * With a shadow canary, champion requests without a canary answer are told apart with the mirror's
      record (:mod:`components.canary.mirror`): forwarded and answered with an error or not at all →
      unhealthy (a canary failure); never forwarded → a note (unmirrored, not the canary's fault); with
      no mirror record at all the two cannot be told apart → a note that says so.

    Returns:
        ``(unhealthy reasons, notes)``.
    """
    out, notes = [], []
    for v, s in sorted(scores.items()):
        if v not in (canary, champion):
            out.append(
                _reason(
                    "health",
                    "unexpected_version",
                    len(s.ids),
                    0,
                    f"{len(s.ids)} rows answered as version {v!r}, neither canary {canary} nor champion {champion}",
                )
            )
    for v in (canary, champion):
        s = scores.get(v)
        if s is not None and s.doubled:
            out.append(
                _reason(
                    "health",
                    "duplicate_answers",
                    s.doubled,
                    0,
                    f"{s.doubled} request rows answered twice as {v}: a server meant to serve the other version "
                    f"answers with the wrong version",
                )
            )
        if s is not None and s.retries:
            notes.append(
                _reason(
                    "note",
                    "client_retries",
                    s.retries,
                    None,
                    f"{s.retries} request rows answered again by {v} under the same request id (client "
                    "retries): first answer kept, not a failure",
                )
            )
    can, cham = scores.get(canary), scores.get(champion)
    if can is not None and cham is not None and can.ids and set(can.ids) & set(cham.ids):
        # the canary shadows the champion: it must answer every request mirrored to it
        requests = {rid for rid, _ in cham.ids}
        missing = requests - {rid for rid, _ in can.ids}
        if missing and (mirrored is None or not mirrored.recorded):
            notes.append(
                _reason(
                    "note",
                    "unanswered_unknown",
                    len(missing),
                    None,
                    f"{len(missing)} of {len(requests)} champion requests have no canary answer and no mirror "
                    "record tells whether they were mirrored: not counted as failures",
                )
            )
        elif missing:
            failed = {r for r in missing if r in mirrored.status and mirrored.status[r] != 200}
            unlogged = {r for r in missing if mirrored.status.get(r) == 200}
            unmirrored = missing - failed - unlogged
            forwarded = len(requests & set(mirrored.status))
            if failed:
                out.append(
                    _reason(
                        "health",
                        "failed_requests",
                        len(failed),
                        0,
                        f"the canary answered no rows of {len(failed)} of {forwarded} mirrored requests "
                        "(errors)",
                    )
                )
            if unmirrored:
                notes.append(
                    _reason(
                        "note",
                        "unmirrored_requests",
                        len(unmirrored),
                        None,
                        f"{len(unmirrored)} of {len(requests)} champion requests were never mirrored to the "
                        "canary: not canary failures",
                    )
                )
            if unlogged:
                notes.append(
                    _reason(
                        "note",
                        "answered_unlogged",
                        len(unlogged),
                        None,
                        f"{len(unlogged)} mirrored requests were answered by the canary (200) but not logged",
                    )
                )
    return out, notes


def _labelled(s: Scores, task: str = "binary") -> tuple[np.ndarray, np.ndarray, list]:
    keep = ~np.isnan(s.labels)
    y = s.labels[keep] if task == "regression" else s.labels[keep].astype(int)
    return y, s.probs[keep], [i for i, k in zip(s.ids, keep, strict=True) if k]


def comparison(
    scores: dict[str, Scores], canary: str, champion: str, cfg: config.ComparisonConfig, task: str = "binary"
):
    """The paired (shadow) or unpaired (traffic split) comparison of canary vs champion in the task's
    metric (:func:`kfloop.paired.compare`)."""
    empty = np.zeros((0, 2)) if task == "multiclass" else np.zeros(0)
    can = scores.get(canary) or Scores([], empty, np.zeros(0))
    cham = scores.get(champion) or Scores([], empty, np.zeros(0))
    if task == "multiclass":  # a side without rows keeps the other's K (the comparison says "no rows")
        k = max(can.probs.shape[1], cham.probs.shape[1])
        can = can if len(can.ids) else Scores([], np.zeros((0, k)), np.zeros(0))
        cham = cham if len(cham.ids) else Scores([], np.zeros((0, k)), np.zeros(0))
    ya, pa, ia = _labelled(can, task)
    yb, pb, ib = _labelled(cham, task)
    common = set(ia) & set(ib)
    if common:
        pos_b = {k: n for n, k in enumerate(ib)}
        keys = [k for k in ia if k in common and k in pos_b]
        ka = [n for n, k in enumerate(ia) if k in common]
        kb = [pos_b[k] for k in keys]
        return paired.compare(ya[ka], pa[ka], pb[kb], task=task, cfg=cfg)
    return paired.compare(ya, pa, pb, task=task, champion_labels=yb, paired=False, cfg=cfg)


def champion_task(ms: store.ModelStore, model_name: str, champion: str):
    """The dataset spec stored with the champion's version (None: it has none; judged as binary)."""
    from kfloop import contract
    from kfloop.spec import SpecError

    try:
        return contract.read_spec(ms.model_uri(model_name, champion))
    except (FileNotFoundError, SpecError, store.StoreError):
        return None


def _margin(c, cfg: config.ComparisonConfig):
    try:
        return cfg.margin_for(c.task, c.champion)
    except ValueError:  # regression without a champion MSE (no rows): no margin to state
        return None


def judge(
    store_uri: str,
    model_name: str,
    *,
    now: dt.datetime,
    window_end: dt.datetime | None = None,
    cmp_cfg: config.ComparisonConfig = config.ComparisonConfig(),
    canary_cfg: config.CanaryConfig = config.CanaryConfig(),
    mon_cfg: config.MonitoringConfig = config.MonitoringConfig(),
    mode: str = "local",
    namespace: str = "",
    deploy_cfg: config.DeployConfig = config.DeployConfig(),
    cluster=None,
    image: str = config.SERVING_IMAGE,
    act: bool = True,
    record: bool = True,
    approval_cfg: config.ApprovalConfig = config.ApprovalConfig(),
    notify_config: str = "",
) -> dict:
    """Judges the canary (if any), acts on the verdict and records it.

    Args:
        store_uri: Model store root (also the prediction log's root).
        model_name: Model name.
        now: The monitoring clock (:func:`kfloop.clock.resolve`): the verdict's time.
        window_end: Exclusive end of the log read (the monitoring window's end; None: ``now``).
        cmp_cfg: Comparison policy.
        canary_cfg: Collection limits.
        mon_cfg: Label-arrival horizon.
        mode: ``local`` or ``cluster`` (how promote / roll back reach KServe).
        namespace: Kubernetes namespace of the InferenceService ("" = ``deploy_cfg.namespace``).
        deploy_cfg: Deployment settings.
        cluster: Kubernetes access for cluster mode (default: in-cluster config).
        image: Predictor image of a cluster promote / rollback (the one the pipeline was compiled with).
        act: Promote / roll back (off: only judge).
        record: Append the verdict to the store.
        approval_cfg: The promotion policy (``approval``: a human decides, :mod:`components.canary.approval`).
        notify_config: Notification channels (:mod:`kfloop.notify`); every verdict becomes events.

    Returns:
        A JSON-ready verdict: ``action`` (promote|reject|wait|none), ``verdict``, ``reasons``,
        ``comparison``, ``summary``, versions, rows, window, ``checks`` (earlier waits), ``deploy``.
    """
    from kfloop import deploy

    ms = store.ModelStore(store_uri)
    canary = ms.get_alias(model_name, store.CANARY)
    champion = ms.get_alias(model_name, store.CHAMPION)
    base = {
        "verdict_id": f"{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}",
        "decided_at": clock.iso(now),
        "model_name": model_name,
        "canary_version": canary,
        "champion_version": champion,
        "comparison": None,
        "deploy": None,
    }
    if canary is None or champion is None:
        msg = "no canary in the store: nothing to judge" if canary is None else "no champion to compare with"
        return finish_verdict(base, NONE, NONE, [_reason("canary", "alias", None, None, msg)], record=False)
    end = window_end or now
    # Since the canary was deployed (by the store's clock, the one the log is stamped with); a canary
    # without that record (set by hand) is judged on the window up to ``end`` from the day before.
    since = canary_since(ms, model_name, canary) or end - dt.timedelta(days=1)
    from components.canary import mirror

    spec = champion_task(ms, model_name, champion)
    task = spec.task.value if spec is not None else "binary"
    live = live_scores(
        store_uri,
        model_name,
        since,
        end,
        horizon_days=mon_cfg.feedback_horizon_days,
        shadow_log=canary_cfg.shadow_log,
        spec=spec,
    )
    scores, bad = live.scores, live.corrupt
    mirrored = mirror.read(store_uri, model_name, since, end, shadow_log=canary_cfg.shadow_log)
    base.update(
        task=task,
        window_start=clock.iso(since),
        window_end=clock.iso(end),
        rows={v: len(s.ids) for v, s in scores.items()},
        labelled={v: int((~np.isnan(s.labels)).sum()) for v, s in scores.items()},
        bad_records=bad,
        label_provenance=live.labels,
        mirror_records=mirrored.files,
    )
    earlier = [
        v
        for v in read_verdicts(store_uri, model_name)
        if v.get("canary_version") == canary and v["action"] == WAIT
    ]
    base["checks"] = len(earlier)
    sick, notes = health(scores, canary, champion, mirrored)
    if sick:
        action, verdict, reasons = REJECT, "unhealthy", sick
    else:
        c = comparison(scores, canary, champion, cmp_cfg, task)
        base["comparison"] = c.to_dict()
        small = (
            not c.paired
            and min(base["labelled"].get(canary, 0), base["labelled"].get(champion, 0))
            < canary_cfg.min_rows_per_model
        )
        at_limit = c.rows >= canary_cfg.max_rows or len(earlier) >= canary_cfg.max_checks
        verdict, message = paired.verdict(c, cmp_cfg, at_limit=at_limit and not small)
        if small and verdict != paired.UNDECIDED:
            verdict = paired.UNDECIDED
            message += f"; fewer than {canary_cfg.min_rows_per_model} labelled rows per model: undecided"
        action = paired.ACTION[verdict]
        limit = (
            f"limit: {canary_cfg.max_rows} labelled rows or {canary_cfg.max_checks} waiting checks "
            f"(this is check {len(earlier) + 1})"
        )
        margin = _margin(c, cmp_cfg)
        cmp_reason = _reason(
            "comparison",
            f"{c.metric}_diff",
            c.diff,
            None if margin is None else -margin,
            f"canary {canary} vs champion {champion}: {message}",
        )
        if task != "binary":  # the binary record stays as it was
            cmp_reason["units"] = c.units
        reasons = [
            cmp_reason,
            _reason("limit", "rows", c.rows, canary_cfg.max_rows, limit + (" - reached" if at_limit else "")),
        ]
        if c.rows == 0:
            action, verdict = WAIT, paired.UNDECIDED  # no labelled traffic yet: this check does not count
    reasons = [*reasons, *notes]
    policy = approval.apply_policy(
        store_uri, model_name, base, action, verdict, reasons, now=now, cfg=approval_cfg
    )
    action, verdict, reasons = policy["action"], policy["verdict"], policy["reasons"]
    if policy["approval"] is not None:
        base["approval"] = policy["approval"]
    if act and action in (PROMOTE, REJECT):
        text = "; ".join(r["message"] for r in reasons)
        kwargs = dict(mode=mode, namespace=namespace or None, cfg=deploy_cfg, cluster=cluster, image=image)
        why = policy["reason"] or f"canary {verdict}: {text}"
        kwargs.update(
            actor=policy["actor"] or "kfloop-canary", reason=why[:2000], notify_config=notify_config
        )
        if action == PROMOTE:
            out = deploy.promote(store_uri, model_name, **kwargs)
        else:
            out = deploy.reject_canary(store_uri, model_name, **kwargs)
        base["deploy"] = {"summary": out.summary(), "mode": out.mode, "canary_percent": out.canary_percent}
        if record:
            approval.close_applied(store_uri, model_name, policy, now=now, verdict_id=base["verdict_id"])
    out = finish_verdict(base, action, verdict, reasons, record=record, store_uri=store_uri)
    if record:
        out["notifications"] = [
            n.get("event_id") for n in approval.notify(store_uri, out, config=notify_config)
        ]
    return out
