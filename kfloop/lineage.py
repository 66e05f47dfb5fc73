"""Lineage: what produced a model version, and why a version serves (``kfloop why``, ``kfloop models show``).

Every version records what produced it (the push step writes it into the version's metadata): the data
window and a content digest of the training and evaluation data (:func:`data_digest`), the spec and schema
hashes, the code version and git commit (:func:`code_commit`), the images, the hyperparameters and metrics
(from the model's ``kfloop_metadata.json``), the pipeline run and the trigger that started it.

:func:`why` answers "why is this version serving?" as one chain, read only from the store's records:
the alias move → the canary verdict or approval that made it → the evaluation and blessing → the
training run and its data → the trigger's decision → the monitoring run and the drift scores behind it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess

from kfloop import clock, fs, layout, records, store

#: Environment variables an image build sets (Dockerfile ``ARG``/``ENV``): the commit and image digest.
GIT_COMMIT_ENV = "KFLOOP_GIT_COMMIT"
IMAGE_DIGEST_ENV = "KFLOOP_IMAGE_DIGEST"


def data_digest(path: str) -> str | None:
    """``sha256:<hex>`` over a dataset's files (a file, or a folder's files by relative name and content,
    streamed); None when the path does not exist."""
    if not path or not os.path.exists(path):
        return None
    h = hashlib.sha256()
    files = (
        [path]
        if os.path.isfile(path)
        else sorted(os.path.join(d, f) for d, _, fs_ in os.walk(path) for f in fs_)
    )
    for name in files:
        h.update(os.path.relpath(name, path).encode() + b"\0")
        with open(name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def code_commit() -> str | None:
    """The git commit of the running code: ``$KFLOOP_GIT_COMMIT`` (set by the image build), else the commit
    of the checkout the package runs from (local), else None."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(*, train_path: str = "", eval_path: str = "", images: dict | None = None) -> dict:
    """The build and data facts the push step adds to a version's metadata."""
    return {
        "data_digest": {"train": data_digest(train_path), "eval": data_digest(eval_path)},
        "git_commit": code_commit(),
        "images": dict(images or {}),
        "image_digest": os.environ.get(IMAGE_DIGEST_ENV) or None,
    }


def _model_metadata(ms: store.ModelStore, name: str, version: str) -> dict:
    from kfloop import contract

    try:
        return json.loads(fs.read_text(contract.metadata_uri(ms.model_uri(name, version))))
    except (FileNotFoundError, ValueError, store.StoreError):
        return {}


def version_facts(store_uri: str, name: str, version: str) -> dict:
    """Everything recorded about how ``version`` was made, in one flat-ish dict (``kfloop models show``)."""
    ms = store.ModelStore(store_uri)
    meta = ms.metadata(name, version)
    model = _model_metadata(ms, name, version)
    blessing = meta.get("blessing") or {}
    data = model.get("data") or {}
    return {
        "model_name": name,
        "version": version,
        "created_at": meta.get("committed_at") or model.get("created_at"),
        "source": meta.get("source", "training pipeline"),
        "run_id": meta.get("run_id"),
        "trigger_id": meta.get("trigger_id") or None,
        "data_window": meta.get("data_window"),
        "train_window": data.get("train_window"),
        "eval_window": data.get("eval_window"),
        "rows": {"train": data.get("train_rows"), "eval": data.get("eval_rows")},
        "data_digest": (meta.get("provenance") or {}).get("data_digest"),
        "spec_sha256": model.get("spec_sha256") or meta.get("spec_sha256"),
        "schema_sha256": model.get("schema_sha256") or meta.get("schema_sha256"),
        "code_version": meta.get("code_version"),
        "git_commit": (meta.get("provenance") or {}).get("git_commit"),
        "images": (meta.get("provenance") or {}).get("images"),
        "image_digest": (meta.get("provenance") or {}).get("image_digest"),
        "hyperparameters": model.get("hyperparameters"),
        "training_metrics": model.get("metrics"),
        "evaluation_metrics": meta.get("metrics"),
        "blessed": blessing.get("blessed"),
        "blessing_reasons": [
            r.get("message", r) if isinstance(r, dict) else r for r in blessing.get("reasons", [])
        ],
        "comparison": blessing.get("comparison"),
    }


def _series(store_uri: str, name: str, kind: str, key: str) -> list[dict]:
    return records.read_all(store_uri, name, kind, sort_key=lambda d: d.get(key) or "")


def _champion_move(ms: store.ModelStore, name: str, at: dt.datetime | None) -> dict | None:
    moves = [
        r
        for r in ms.history(name)
        if r.get("event") == "alias" and r.get("alias") == store.CHAMPION and r.get("outcome") == "success"
    ]
    if at is not None:
        moves = [r for r in moves if clock.parse(r["time"]) <= at]
    return moves[-1] if moves else None


def why(store_uri: str, name: str, at: dt.datetime | None = None) -> dict:
    """The chain of records that made the champion (at ``at``, store clock; None: now) what it is.

    Returns:
        ``{"model_name", "at", "version", "links": [...]}``: each link ``{"step", "summary", "record",
        "details"}`` in the order move → verdict/approval → evaluation → training → trigger → decision →
        monitoring run. A link the store has no record of says so (e.g. the first champion had no canary).

    Raises:
        store.StoreError: no champion at that time.
    """
    from kfloop import approvals

    ms = store.ModelStore(store_uri)
    move = _champion_move(ms, name, at)
    if move is None:
        raise store.StoreError(
            f"model {name!r} had no champion"
            + (f" at {clock.iso(at)}" if at else "")
            + " (kfloop models history)"
        )
    version = move["to"]
    links = [
        {
            "step": "alias move",
            "summary": f"champion {move.get('from') or '(none)'} -> {version} at {move['time']} by "
            f"{move.get('actor')} ({move.get('action')}): {move.get('reason', '')}",
            "record": layout.history_dir(store_uri, name),
            "details": move,
        }
    ]
    verdicts = [
        v
        for v in _series(store_uri, name, layout.CANARY, "decided_at")
        if v.get("canary_version") == version and v.get("action") == "promote"
    ]
    if verdicts:
        v = verdicts[-1]
        links.append(
            {"step": "canary verdict", "summary": v["summary"], "record": v.get("record_uri"), "details": v}
        )
    elif move.get("action") == "push":
        links.append(
            {
                "step": "canary verdict",
                "summary": "first champion: pushed directly, no canary",
                "record": None,
                "details": None,
            }
        )
    st, req, dec = approvals.state(store_uri, name, version)
    if req is not None:
        text = f"approval {st}" + (f" by {dec['by']} at {dec['decided_at']}: {dec['reason']}" if dec else "")
        links.append(
            {
                "step": "approval",
                "summary": text,
                "record": req.get("uri"),
                "details": {"request": req, "decision": dec},
            }
        )
    facts = version_facts(store_uri, name, version)
    ev = facts["comparison"] or {}
    ev_text = "blessed" if facts["blessed"] else "not blessed"
    if ev.get("diff") is not None:
        ev_text += (
            f"; {ev.get('metric')} challenger {ev.get('challenger')} vs champion {ev.get('champion')}, diff "
            f"{ev['diff']:+.4f} [{ev.get('low'):+.4f}, {ev.get('high'):+.4f}] on {ev.get('rows')} rows"
        )
    links.append(
        {
            "step": "evaluation",
            "summary": ev_text,
            "record": layout.version_metadata(store_uri, name, version),
            "details": {"metrics": facts["evaluation_metrics"], "reasons": facts["blessing_reasons"]},
        }
    )
    digest = (facts["data_digest"] or {}).get("train")
    links.append(
        {
            "step": "training",
            "summary": f"run {facts['run_id']}: data {facts['train_window']} ({facts['rows']['train']} train rows, "
            f"{digest or 'no digest'}), code {facts['code_version']} {facts['git_commit'] or ''}".rstrip()
            + f", hyperparameters {json.dumps(facts['hyperparameters'], sort_keys=True)}",
            "record": ms.model_uri(name, version),
            "details": facts,
        }
    )
    trig = None
    if facts["trigger_id"]:
        trig = next(
            (
                t
                for t in _series(store_uri, name, layout.TRIGGERS, "started_at")
                if t.get("trigger_id") == facts["trigger_id"]
            ),
            None,
        )
    if trig is None:
        links.append(
            {
                "step": "trigger",
                "summary": "not started by a trigger (the first training run, or by hand)",
                "record": None,
                "details": None,
            }
        )
        return {"model_name": name, "at": clock.iso(at) if at else None, "version": version, "links": links}
    links.append(
        {
            "step": "trigger",
            "summary": f"{trig['trigger_id']}: {trig.get('reason', '')}",
            "record": trig.get("record_uri"),
            "details": trig,
        }
    )
    dec_rec = next(
        (
            d
            for d in _series(store_uri, name, layout.DECISIONS, "decided_at")
            if d.get("decision_id") == trig.get("decision_id")
        ),
        None,
    )
    if dec_rec is not None:
        links.append(
            {
                "step": "decision",
                "summary": f"{dec_rec.get('decision')} at {dec_rec.get('decided_at')}: "
                f"{dec_rec.get('summary', '')}",
                "record": layout.record(store_uri, name, layout.DECISIONS, dec_rec["decision_id"]),
                "details": dec_rec,
            }
        )
        run = next(
            (
                r
                for r in _series(store_uri, name, layout.RUNS, "window_end")
                if r.get("run_id") == dec_rec.get("monitor_run_id")
            ),
            None,
        )
        if run is not None:
            drift = sorted(run.get("drift") or [], key=lambda d: -(d.get("value") or 0))
            top = ", ".join(
                f"{d.get('feature')} {d.get('measure')} {d.get('value'):.3f}"
                for d in drift[:5]
                if d.get("value") is not None
            )
            links.append(
                {
                    "step": "monitoring run",
                    "summary": f"{run['run_id']}: window {run.get('window_start')}"
                    f" .. {run.get('window_end')}, {run.get('rows')} rows; drift: {top or 'none'}",
                    "record": layout.record(store_uri, name, layout.RUNS, run["run_id"]),
                    "details": {"drift": drift, "rows": run.get("rows"), "live_auc": run.get("live_auc")},
                }
            )
    return {"model_name": name, "at": clock.iso(at) if at else None, "version": version, "links": links}


def render(chain: dict) -> str:
    """The chain as text, one numbered line per link."""
    lines = [
        f"why {chain['model_name']} {chain['version']} serves"
        + (f" (at {chain['at']})" if chain["at"] else "")
    ]
    for n, link in enumerate(chain["links"], 1):
        lines.append(f"{n}. {link['step']}: {link['summary']}")
        if link.get("record"):
            lines.append(f"   {link['record']}")
    return "\n".join(lines)
