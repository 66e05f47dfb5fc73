"""Notifications of the loop's decisions and faults (issue 27): one :class:`Event` per decision, delivered
through apprise to the channels a team configures (Slack, email, JSON webhooks, kfloop's signed webhook and
JSON-lines file), retried with backoff, every attempt recorded next to the decision
(``monitoring/<model>/events/<event_id>.json``). :func:`emit` never raises.

Modules: :mod:`~kfloop.notify.events` (types, the event), :mod:`~kfloop.notify.channels` (config, ``${ENV}``
substitution, redaction), :mod:`~kfloop.notify.plugins` (kfloop's apprise schemes, signing),
:mod:`~kfloop.notify.deliver` (retries, records), :mod:`~kfloop.notify.send` (build + emit, for a step). Importing runs nothing; apprise is imported on delivery.
"""

from kfloop.notify.channels import (
    CONFIG_ENV,
    NotifyConfig,
    NotifyConfigError,
    load_channels,
    load_config,
    redact,
)
from kfloop.notify.deliver import EVENTS, describe, emit, read_events
from kfloop.notify.events import CANARY_EVENTS, EVENT_TYPES, SEVERITY, Event, EventError
from kfloop.notify.plugins import sign, verify
from kfloop.notify.send import send

__all__ = [
    "CANARY_EVENTS",
    "CONFIG_ENV",
    "EVENTS",
    "EVENT_TYPES",
    "SEVERITY",
    "Event",
    "EventError",
    "NotifyConfig",
    "NotifyConfigError",
    "describe",
    "emit",
    "load_channels",
    "load_config",
    "read_events",
    "redact",
    "send",
    "sign",
    "verify",
]
