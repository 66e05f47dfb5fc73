"""The data gate: stops the run before training when validation found blocking anomalies."""

from __future__ import annotations

import json

from kfloop import fs
from kfloop.tfdv.ops import BlockingAnomaliesError, blocking_message

SUMMARY_FILE = "summary.json"


def check(anomalies_uri: str) -> str:
    """Reads validate's anomalies summary and passes or stops the run.

    Args:
        anomalies_uri: validate's ``anomalies`` artifact (a folder with ``summary.json``), or the file.

    Returns:
        A Markdown line saying the data passed, with the non-blocking anomalies it let through.

    Raises:
        BlockingAnomaliesError: blocking anomalies, one line each (feature, anomaly type, description).
        FileNotFoundError: no validation summary at ``anomalies_uri``.
    """
    uri = str(anomalies_uri)
    if not uri.endswith(".json"):
        uri = fs.join(uri, SUMMARY_FILE)
    summary = json.loads(fs.read_text(uri))
    findings = summary.get("anomalies", [])
    if summary.get("blocking"):
        raise BlockingAnomaliesError(blocking_message(findings), findings)
    passed = [f"`{f['feature']}`: {f['type']}" for f in findings]
    note = f" ({len(passed)} non-blocking: {', '.join(passed)})" if passed else ""
    return f"Data gate passed: {summary.get('rows')} rows, no blocking anomalies{note}.\n"


def notify_blocked(
    store_uri: str, model_name: str, error: BlockingAnomaliesError, *, window: str = "", config: str = ""
) -> dict | None:
    """The blocked data as a ``data.blocked`` event (one reason per blocking anomaly); never raises.

    Without a store or model name (a bare validation run) nothing is sent.
    """
    if not store_uri or not model_name:
        return None
    from kfloop import clock
    from kfloop.notify.send import send

    reasons = [
        f"{f.get('feature')}: {f.get('type')}: {f.get('description', '')}"
        for f in error.findings
        if f.get("blocking", True)
    ]
    return send(
        store_uri,
        config=config,
        type="data.blocked",
        model=model_name,
        version=None,
        summary=f"{model_name}: the data gate stopped training ({len(reasons)} blocking anomalies)"
        + (f", data before {window}" if window else ""),
        reasons=reasons or [str(error)[:500]],
        time=clock.iso(clock.utc_now()),
        details={"window": window},
    )
