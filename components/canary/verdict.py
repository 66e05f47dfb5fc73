"""A canary verdict as a record: its actions, the record under ``monitoring/<model>/canary/``
(:func:`finish_verdict`, :func:`read_verdicts`) and its rendering for the KFP dashboard
(:func:`to_markdown`, :func:`to_html`). The judging is :mod:`components.canary.canary`.
"""

from __future__ import annotations

import html

from kfloop import layout, records

PROMOTE, REJECT, WAIT, NONE = "promote", "reject", "wait", "none"


def read_verdicts(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded canary verdict, oldest first (monitoring clock)."""
    return records.read_all(store_uri, model_name, layout.CANARY, sort_key=lambda d: d.get("decided_at", ""))


def finish_verdict(
    base: dict, action: str, verdict: str, reasons: list[dict], *, record: bool, store_uri=None
) -> dict:
    """The verdict ``base`` + its action, verdict, reasons and one-line summary; recorded when ``record``."""
    out = dict(base, action=action, verdict=verdict, reasons=reasons)
    head = {
        PROMOTE: "promote canary",
        REJECT: "roll back canary",
        WAIT: "keep waiting",
        NONE: "nothing to judge",
    }[action]
    out["summary"] = f"{head} ({verdict}): " + "; ".join(r["message"] for r in reasons)
    if record and store_uri:
        out["record_uri"] = records.write(store_uri, out["model_name"], layout.CANARY, out["verdict_id"], out)
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def to_markdown(v: dict) -> str:
    """The verdict for the KFP dashboard: action, reasons, the interval."""
    lines = [
        f"# Canary: **{v['action'].upper()}** ({v['verdict']})",
        "",
        f"Canary `{v.get('canary_version')}` vs champion `{v.get('champion_version')}`, log "
        f"{v.get('window_start')} .. {v.get('window_end')}, verdict at {v['decided_at']} (monitoring clock).",
        "",
        v["summary"],
        "",
        "| kind | measure | value | threshold | |",
        "|---|---|---|---|---|",
    ]
    for r in v["reasons"]:
        lines.append(
            f"| {r['kind']} | {r['measure']} | {_fmt(r['value'])} | {_fmt(r['threshold'])} | {r['message']} |"
        )
    c = v.get("comparison")
    if c:
        lines += [
            "",
            "| metric | canary | champion | diff | low | high | confidence | rows | paired |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {c['metric']} | {_fmt(c['challenger'])} | {_fmt(c['champion'])} | {_fmt(c['diff'])} | "
            f"{_fmt(c['low'])} | {_fmt(c['high'])} | {c['confidence']} | {c['rows']} | {c['paired']} |",
        ]
    if v.get("deploy"):
        lines += ["", f"Deploy: {v['deploy']['summary']}"]
    return "\n".join(lines) + "\n"


def to_html(v: dict) -> str:
    """The same as a small self-contained HTML page."""
    e = html.escape
    color = {PROMOTE: "#1b5e20", REJECT: "#b00020", WAIT: "#a86b00"}.get(v["action"], "#555")
    rows = "".join(
        f"<tr><td>{e(r['kind'])}</td><td>{e(r['measure'])}</td><td>{e(_fmt(r['value']))}</td>"
        f"<td>{e(_fmt(r['threshold']))}</td><td>{e(r['message'])}</td></tr>"
        for r in v["reasons"]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><style>body{font-family:sans-serif}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style>"
        f"</head><body><h2 style='color:{color}'>Canary: {e(v['action'])} ({e(v['verdict'])})</h2>"
        f"<p>{e(v['summary'])}</p><table><tr><th>kind</th><th>measure</th><th>value</th><th>threshold</th>"
        f"<th>message</th></tr>{rows}</table></body></html>"
    )
