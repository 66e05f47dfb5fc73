"""The operations sections of the loop report: why the champion serves (:func:`kfloop.lineage.why`, one
linked chain) and where the loop's notifications went (one row per event, with its delivery outcome)."""

from __future__ import annotations

import html

_E = html.escape


def _link(uri: str | None) -> str:
    if not uri:
        return ""
    href = uri if "://" in uri else "file://" + uri
    return f"<a href='{_E(href)}'><code>{_E(uri.rsplit('/', 1)[-1])}</code></a>"


def why_section(chain: dict | None) -> str:
    """``<h2>`` + an ordered list: each link of the chain with its record."""
    if not chain:
        return ""
    items = "".join(
        f"<li><b>{_E(link['step'])}</b>: {_E(str(link['summary']))} {_link(link.get('record'))}</li>"
        for link in chain["links"]
    )
    return f"<h2>Why {_E(chain['version'])} serves (kfloop why)</h2><ol class='why'>{items}</ol>"


def notifications_section(summary: dict | None, events: list[dict]) -> str:
    """``<h2>`` + where the notifications went + one row per event."""
    if not summary:
        return ""
    head = (
        f"<h2>Notifications</h2><p>{summary['events']} events ({_E(summary['by_type'])}) to "
        f"{_E(', '.join(summary['channels']) or 'no channel')}; {summary['failed']} not delivered everywhere.</p>"
    )
    rows = "".join(
        f"<tr><td>{_E(str(e.get('time', '')))}</td><td><code>{_E(str(e.get('type')))}</code></td>"
        f"<td>{_E(str(e.get('version') or ''))}</td><td>{_E(str(e.get('summary', '')))}</td>"
        f"<td>{_E(str(e.get('outcome', '')))}</td></tr>"
        for e in events
    )
    table = "<table><tr><th>at</th><th>type</th><th>version</th><th>summary</th><th>delivery</th></tr>"
    return head + table + rows + "</table>" if events else head
