"""The monitoring clock: the one notion of "now" every loop decision uses, passed explicitly.

The monitoring pipeline takes ``now`` (ISO UTC) as a parameter and hands it to every step that decides
(windows, label arrival, the cooldown and backoff, canary verdicts). Who sets it:

* the local replay (``kfloop run``): the replayed data's time (the end of the replayed window), so months
  of taxi data that pass in seconds are judged on the data's clock;
* on a cluster: the scheduler. The pipeline passes KFP's ``{{$.pipeline_job_schedule_time_utc}}``
  (``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER``) as ``scheduled_time``; an explicit ``now`` wins.

:func:`resolve` is the only place that falls back to the wall clock: for a one-off run with neither
(``kfloop monitor`` by hand, or a runner that leaves the placeholder unfilled).

Only the standard library is imported.
"""

from __future__ import annotations

import datetime as dt


class ClockError(ValueError):
    """``now`` is not a time; the message names the value."""


def parse(value: str) -> dt.datetime:
    """An ISO date/datetime (``Z``, an offset, or naive = UTC) as an aware UTC datetime.

    Raises:
        ClockError: not a time.
    """
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ClockError(
            f"monitoring clock: {value!r} is not an ISO time (e.g. 2016-01-01T00:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def parse_instant(value, what: str) -> dt.datetime:
    """Parses an ISO date/datetime (UTC if naive) or epoch seconds into an aware UTC datetime.

    Raises:
        ClockError: ``value`` is empty or not a time; the message names ``what``.
    """
    text = str(value).strip()
    if not text:
        raise ClockError(f"{what} is empty (use an ISO date/datetime, UTC, or epoch seconds)")
    try:
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
        return parse(text)
    except (ValueError, OverflowError):
        raise ClockError(
            f"{what} {text!r} is not a time (use an ISO date/datetime, UTC, or epoch seconds)"
        ) from None


def resolve(now: str = "", scheduled_time: str = "") -> tuple[dt.datetime, str]:
    """The monitoring clock of one run and where it came from.

    Args:
        now: Explicit time (pipeline parameter ``now``; the replay's data time). Wins when set.
        scheduled_time: The scheduler's time (KFP placeholder); ignored when empty or unfilled.

    Returns:
        ``(time, source)``: source is ``parameter``, ``scheduler`` or ``wall clock``.

    Raises:
        ClockError: ``now`` is set but is not a time.
    """
    if str(now).strip():
        return parse(now), "parameter"
    text = str(scheduled_time).strip()
    if text and not text.startswith("{{"):
        try:
            return parse(text), "scheduler"
        except ClockError:
            pass
    return dt.datetime.now(dt.UTC), "wall clock"


def iso(when: dt.datetime) -> str:
    """``2016-01-01T00:00:00.000Z``: the timestamp format of both logs (UTC, milliseconds)."""
    when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
