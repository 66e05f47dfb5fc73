"""The loop's notification events: one closed set of stable dotted types and the :class:`Event` they make.

An event is what the loop tells people: a decision (data blocked, a challenger blessed or refused, a retrain
triggered or held, a canary promoted / rolled back / still undecided, an approval requested / given /
rejected / expired) or an operational fault (monitoring stale, prediction-log drops, a deploy undone). Its
id is derived from its type, model, version and time, so a retried pipeline step that emits the same event
again finds the record of the first delivery (:func:`kfloop.notify.emit`).

Only the standard library and :mod:`kfloop.clock` / :mod:`kfloop.store` are imported; importing runs nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from kfloop import clock, store

#: Every event type, with its severity (apprise's notify types: info, success, warning, failure).
SEVERITY: dict[str, str] = {
    "data.blocked": "failure",
    "challenger.blessed": "success",
    "challenger.refused": "warning",
    "retrain.triggered": "info",
    "retrain.held": "info",
    "canary.promoted": "success",
    "canary.rolled_back": "warning",
    "canary.undecided": "info",
    "approval.requested": "info",
    "approval.given": "success",
    "approval.rejected": "warning",
    "approval.expired": "warning",
    "monitoring.stale": "failure",
    "predlog.drops": "warning",
    "deploy.undone": "failure",
}
#: The closed set of event types (stable dotted strings; receivers may route on them).
EVENT_TYPES: frozenset[str] = frozenset(SEVERITY)
#: The event of each canary verdict action (components/canary's PROMOTE / REJECT / WAIT).
CANARY_EVENTS: dict[str, str] = {
    "promote": "canary.promoted",
    "reject": "canary.rolled_back",
    "wait": "canary.undecided",
}


class EventError(ValueError):
    """An event field is not valid; the message names the field."""


def _one_line(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"event {what} must be a non-empty string, got {value!r}")
    if "\n" in value or "\r" in value:
        raise EventError(f"event {what} must be one line, got {value!r}")
    return value.strip()


def _reasons(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str | dict) or not hasattr(value, "__iter__"):
        raise EventError(f"event reasons must be a list of strings or dicts, got {value!r}")
    out = []
    for i, r in enumerate(value):
        if isinstance(r, str):
            out.append(r)
        elif isinstance(r, dict) and isinstance(r.get("message"), str):
            out.append(dict(r))
        else:
            raise EventError(
                f"event reasons[{i}] must be a string or a dict with a 'message' string, got {r!r}"
            )
    return tuple(out)


def _json_ready(value, what: str):
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise EventError(f"event {what} is not JSON-ready: {e}") from None


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing the loop tells people.

    Attributes:
        type: One of :data:`EVENT_TYPES` (e.g. ``canary.rolled_back``).
        model: The model name (a valid store model name).
        version: The model version the event is about (``None`` when none is, e.g. ``data.blocked``).
        summary: One line for people (the title's companion and the body's first line).
        time: When it happened on the caller's clock (:mod:`kfloop.clock`: the monitoring clock of the
            run), ISO; stored normalised as ``YYYY-MM-DDTHH:MM:SS.mmmZ``.
        reasons: Why: strings, or dicts with a ``message`` string (the loop's reason dicts as they are).
        links: Name -> URI / URL (``report``, ``run``, ``record``, ...).
        details: Anything else, JSON-ready (validated).
        dedupe_key: Optional extra part of the id, for two distinct events of one type, model, version and
            time (rare; empty by default).

    Raises:
        EventError: (a ``ValueError``) a field is not valid; the message names it (an unknown type is named
            with the known ones).
    """

    type: str
    model: str
    version: str | None
    summary: str
    time: str
    reasons: tuple = ()
    links: dict = dataclasses.field(default_factory=dict)
    details: dict = dataclasses.field(default_factory=dict)
    dedupe_key: str = ""

    def __post_init__(self):
        if self.type not in EVENT_TYPES:
            raise EventError(f"unknown event type {self.type!r}; known: {', '.join(sorted(EVENT_TYPES))}")
        try:
            store.check_model_name(self.model)
        except ValueError as e:
            raise EventError(f"event model: {e}") from None
        if self.version is not None:
            _one_line(self.version, "version")
        set_ = object.__setattr__
        set_(self, "summary", _one_line(self.summary, "summary"))
        if not isinstance(self.time, str) or not self.time.strip():
            raise EventError(f"event time must be an ISO time string, got {self.time!r}")
        try:
            set_(self, "time", clock.iso(clock.parse(self.time)))
        except clock.ClockError as e:
            raise EventError(f"event time: {e}") from None
        set_(self, "reasons", _reasons(self.reasons))
        if not isinstance(self.links, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.links.items()
        ):
            raise EventError(f"event links must be a dict of name -> URI strings, got {self.links!r}")
        if not isinstance(self.details, dict):
            raise EventError(f"event details must be a dict, got {self.details!r}")
        set_(self, "details", _json_ready(self.details, "details"))
        set_(self, "reasons", tuple(_json_ready(list(self.reasons), "reasons")))
        if not isinstance(self.dedupe_key, str):
            raise EventError(f"event dedupe_key must be a string, got {self.dedupe_key!r}")

    @property
    def event_id(self) -> str:
        """``<type>-<16 hex>``: a digest of type, model, version, time and ``dedupe_key`` (file-name safe)."""
        key = json.dumps([self.type, self.model, self.version, self.time, self.dedupe_key])
        return f"{self.type}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    @property
    def severity(self) -> str:
        """``info`` / ``success`` / ``warning`` / ``failure`` (:data:`SEVERITY`)."""
        return SEVERITY[self.type]

    def messages(self) -> list[str]:
        """The reasons as plain strings."""
        return [r if isinstance(r, str) else r["message"] for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready dict (what the kfloop channels receive, and the record's head)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "severity": self.severity,
            "model": self.model,
            "version": self.version,
            "summary": self.summary,
            "time": self.time,
            "reasons": list(self.reasons),
            "links": dict(self.links),
            "details": dict(self.details),
            "dedupe_key": self.dedupe_key,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Event:
        """The event of :meth:`to_dict` (or of an event record); extra keys are ignored.

        Raises:
            EventError: a field is missing or not valid.
        """
        if not isinstance(data, dict):
            raise EventError(f"an event must be a dict, got {type(data).__name__}")
        missing = [k for k in ("type", "model", "summary", "time") if k not in data]
        if missing:
            raise EventError(f"event is missing {', '.join(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{k: v for k, v in data.items() if k in names and k != "version"}, version=data.get("version")
        )

    def title(self) -> str:
        """``[kfloop] <model> <version>: <type>``: the notification title."""
        return f"[kfloop] {self.model}{' ' + self.version if self.version else ''}: {self.type}"

    def text(self) -> str:
        """The plain-text body for people (Slack, email, generic webhooks): summary, reasons, links."""
        lines = [self.summary, "", f"type: {self.type}", f"model: {self.model}"]
        if self.version:
            lines.append(f"version: {self.version}")
        lines.append(f"time: {self.time}")
        if self.reasons:
            lines += ["", "reasons:"] + [f"- {m}" for m in self.messages()]
        if self.links:
            lines += ["", "links:"] + [f"- {k}: {v}" for k, v in sorted(self.links.items())]
        lines += ["", f"event id: {self.event_id}"]
        return "\n".join(lines)
