"""What the local loop replays: the windows, cutoffs, cooldown and clock of ``kfloop run``, from the data.

With an event-time column (the spec's ``time``), everything is in the data's own time: the champion
trains on the first ``history_fraction`` of the data's time range (the *history*), a *control* window is
a sample of that history (no drift expected: no false alarm), then ``windows`` equal windows cover the
rest. The monitoring clock of each run is its window's end; a retraining trains on at most
``MonitoringConfig.training_window_days`` (never more than the history's length) before its cutoff; the
cooldown is at most half a window. Boundaries are rounded to whole days when the data spans months, to
whole hours when it spans days.

Without a time column, the file's row order stands in for time: the history is the first rows, the
windows are equal runs of the rows after it, replayed in order; window bounds are row positions (what
ingest takes for such a spec), and the monitoring clock advances one day per window from
:data:`ROW_CLOCK_START`.

Explicit windows (``--cutoff`` / ``--windows``, or :class:`LoopConfig` fields) replace the derived ones.
Only the standard library is imported at module level.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

from kfloop import clock, config

#: The monitoring clock of a replay without a time column: window k ends k + 1 days after this.
ROW_CLOCK_START = "2000-01-01T00:00:00Z"
_DAY = 86_400


class PlanError(ValueError):
    """The replay cannot be planned as asked (names the flag or field and the data's range)."""


@dataclasses.dataclass(frozen=True)
class Window:
    """One replayed window: ``[start, end)`` in event time (ISO) or row positions (``"0"``, ``"1200"``).

    ``sample``: random rows of it; ``from_training``: drawn from the champion's training split.
    """

    label: str
    start: str
    end: str
    sample: int | None = None
    from_training: bool = False


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """What the local loop replays, and its knobs (``None``: derived from the data, see the module doc).

    Attributes:
        history_cutoff: The champion trains on rows before this (ISO time, or a row position).
        control: A window drawn from the training window itself.
        windows: Later windows replayed as live traffic, in order.
        window_count: How many equal windows follow the history when ``windows`` is not given.
        history_fraction: Share of the data's time range (or rows) the champion trains on.
        control_rows: Rows of the control window (a sample of the training split).
        training_window_days: A retraining trains on this many days before its cutoff.
        cooldown_hours: No second retraining within this many hours (monitoring clock).
        batch_size: Rows per replayed request.
        hparams: Training-pipeline arguments of every training run (few epochs: the loop must be quick).
        server_start_timeout: Seconds to wait for a server to become ready.
        promotion_policy: ``auto`` or ``approval`` (:class:`kfloop.config.ApprovalConfig`).
        notify_config: The team's notification channels (:mod:`kfloop.notify`); every event also goes
            to the loop's ``notifications.jsonl`` (a local file channel).
        canary_margin: Non-inferiority margin of the canary comparison (None: ``ComparisonConfig``'s).
    """

    history_cutoff: str | None = None
    control: Window | None = None
    windows: tuple[Window, ...] | None = None
    window_count: int = config.ReplayConfig().windows
    history_fraction: float = config.ReplayConfig().history_fraction
    control_rows: int = config.ReplayConfig().control_rows
    training_window_days: float | None = None
    cooldown_hours: float | None = None
    batch_size: int = config.ReplayConfig().batch_size
    hparams: tuple = (("epochs", config.ReplayConfig().epochs),)
    server_start_timeout: float = 180.0
    promotion_policy: str = "auto"
    notify_config: str = ""
    canary_margin: float | None = None

    def __post_init__(self):
        if self.promotion_policy not in config.APPROVAL_POLICIES:
            raise PlanError(
                f"--promotion-policy must be one of {', '.join(config.APPROVAL_POLICIES)}, "
                f"got {self.promotion_policy!r}"
            )
        if (
            isinstance(self.window_count, bool)
            or not isinstance(self.window_count, int)
            or self.window_count < 1
        ):
            raise PlanError(
                f"window count (--window-count) must be an integer >= 1, got {self.window_count!r}"
            )
        if not 0 < float(self.history_fraction) < 1:
            raise PlanError(
                f"history fraction (--history-fraction) must lie in (0, 1), got {self.history_fraction!r}"
            )
        if self.control_rows < 1:
            raise PlanError(f"control rows (--control-rows) must be >= 1, got {self.control_rows!r}")
        if self.batch_size < 1:
            raise PlanError(f"batch size (--batch-size) must be >= 1, got {self.batch_size!r}")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The replay of one loop, resolved against the data.

    Attributes:
        by_time: Windows are event times (else row positions).
        history_start: First row's time / position (what the first training run starts at: "" = first row).
        history_cutoff: The champion's cutoff.
        control: The control window (a sample of the training split).
        windows: The later windows.
        training_window_days: Days (time data) or rows (row order) a retraining trains on.
        cooldown_hours: The decision cooldown on the monitoring clock.
        history_rows: Row order: rows of the history.
        last: The last row's event time (epoch seconds) or position: a retraining's cutoff is at most this
            (ingest needs a row at or after its cutoff).
    """

    by_time: bool
    history_cutoff: str
    control: Window
    windows: tuple[Window, ...]
    training_window_days: float
    cooldown_hours: float
    history_rows: int = 0
    last: int = 0

    def now(self, index: int, window: Window) -> str:
        """The monitoring clock of the ``index``-th monitored window (control = 0): its end in data time."""
        if self.by_time:
            end = self.history_cutoff if window.from_training else window.end
            return clock.iso(clock.parse(end))
        return clock.iso(clock.parse(ROW_CLOCK_START) + dt.timedelta(days=index + 1))

    def retrain_window(self, window: Window) -> dict:
        """``{"cutoff", "window_start"}`` of a retraining triggered by ``window`` (row order: positions)."""
        if self.by_time:
            cutoff = self.history_cutoff if window.from_training else window.end
            if clock.parse(cutoff).timestamp() > self.last:
                cutoff = _text(_at(self.last))
            start = clock.parse(cutoff) - dt.timedelta(days=self.training_window_days)
            return {"cutoff": cutoff, "window_start": _text(start)}
        cutoff = self.history_rows if window.from_training else min(int(window.end), self.last)
        return {"cutoff": str(cutoff), "window_start": str(max(0, cutoff - int(self.training_window_days)))}

    def describe(self) -> dict:
        """JSON-ready: what ``kfloop run`` prints and ``loop.json`` records."""
        return {
            "by": "event time" if self.by_time else "row order",
            "history_cutoff": self.history_cutoff,
            "control": dataclasses.asdict(self.control),
            "windows": [dataclasses.asdict(w) for w in self.windows],
            "training_window": self.training_window_days,
            "training_window_unit": "days" if self.by_time else "rows",
            "cooldown_hours": self.cooldown_hours,
        }


def _text(when: dt.datetime) -> str:
    """A boundary as text: ``2015-07-01`` at midnight UTC, else the ISO instant."""
    when = when.astimezone(dt.UTC)
    if (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0):
        return f"{when:%Y-%m-%d}"
    return clock.iso(when)


def _round(seconds: float, span: float, *, up: bool = False) -> int:
    """A boundary rounded (to the nearest, or ``up``) to whole days (data spanning > 60 days), hours
    (> 2 days) or seconds."""
    unit = _DAY if span > 60 * _DAY else 3600 if span > 2 * _DAY else 1
    q, r = divmod(round(seconds), unit)
    return (q + (1 if (r and up) or (not up and 2 * r >= unit) else 0)) * unit


def _epoch(text: str, what: str) -> int:
    try:
        return int(clock.parse_instant(text, what).timestamp())
    except clock.ClockError as e:
        raise PlanError(str(e)) from None


def parse_windows(text: str) -> tuple[Window, ...]:
    """``--windows B0,B1,...,Bn`` (ISO dates / instants, or row positions) → n consecutive windows.

    Raises:
        PlanError: fewer than two boundaries, or boundaries not increasing.
    """
    bounds = [b.strip() for b in str(text).split(",") if b.strip()]
    if len(bounds) < 2:
        raise PlanError(f"--windows {text!r}: give at least two boundaries (B0,B1[,B2...])")
    if all(b.isdigit() for b in bounds):
        keys = [int(b) for b in bounds]
    else:
        keys = [_epoch(b, "--windows") for b in bounds]
    if any(b >= a for a, b in zip(keys[1:], keys[:-1], strict=True)):
        raise PlanError(f"--windows {text!r}: boundaries must increase")
    return tuple(Window(f"{a} .. {b}", a, b) for a, b in itertools.pairwise(bounds))


def plan(spec, frame, cfg: LoopConfig = LoopConfig()) -> Plan:
    """Plans the replay of a Dataset-form frame (the cleaned data, in time order when it has a time).

    Args:
        spec: The dataset spec.
        frame: The cleaned rows (``kfloop.clean.clean``), sorted by event time if the spec has one.
        cfg: Explicit windows / counts (``None`` fields are derived from the data).

    Raises:
        PlanError: too few rows, or an explicit cutoff / window outside the data (names it and the range).
    """
    mon = config.MonitoringConfig()
    n = len(frame)
    if n < 4 * (cfg.window_count + 1):
        raise PlanError(
            f"the data has {n} rows: too few to replay {cfg.window_count} windows after a history"
        )
    if spec.event_time is None:
        return _plan_rows(n, cfg, mon)
    t = frame[spec.event_time.name].astype("int64")
    first, last = int(t.min()), int(t.max())
    span = last + 1 - first
    if cfg.history_cutoff:
        cut = _epoch(cfg.history_cutoff, "--cutoff")
        cutoff = cfg.history_cutoff
    else:
        cut = _round(first + cfg.history_fraction * span, span)
        cutoff = _text(dt.datetime.fromtimestamp(cut, dt.UTC))
    if not first < cut <= last:
        raise PlanError(
            f"--cutoff {cutoff!r} is outside the data, which spans {clock.iso(_at(first))} .. {clock.iso(_at(last))}"
        )
    if cfg.windows is not None:
        windows = tuple(cfg.windows)
    else:
        end = _round(last + 1, span, up=True)
        edges = [cut + round(i * (end - cut) / cfg.window_count) for i in range(cfg.window_count + 1)]
        edges = [edges[0], *(_round(e, span) for e in edges[1:-1]), end]
        texts = [_text(_at(e)) for e in edges]
        windows = tuple(Window(f"{a} .. {b}", a, b) for a, b in itertools.pairwise(texts))
    length = min(_epoch(w.end, "window end") - _epoch(w.start, "window start") for w in windows)
    if length <= 0:
        raise PlanError("every window must end after it starts")
    history_days = (cut - first) / _DAY
    if history_days > 60:  # whole days when the data spans months
        history_days = float(int(history_days))
    days = cfg.training_window_days or min(float(mon.training_window_days), max(history_days, 1 / 24))
    cooldown = (
        cfg.cooldown_hours if cfg.cooldown_hours is not None else min(mon.cooldown_hours, length / 7200)
    )
    control = cfg.control or Window(
        f"control (sample of the history, before {cutoff})", _text(_at(first)), cutoff, cfg.control_rows, True
    )
    return Plan(True, cutoff, control, windows, float(days), float(cooldown), last=last)


def _at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _plan_rows(n: int, cfg: LoopConfig, mon: config.MonitoringConfig) -> Plan:
    if cfg.history_cutoff:
        if not str(cfg.history_cutoff).isdigit():
            raise PlanError(
                f"--cutoff {cfg.history_cutoff!r}: the spec has no time column, give a row position"
            )
        cut = int(cfg.history_cutoff)
    else:
        cut = int(n * cfg.history_fraction)
    if not 0 < cut < n:
        raise PlanError(f"--cutoff {cut}: outside the data's rows 0 .. {n - 1}")
    if cfg.windows is not None:
        windows = tuple(cfg.windows)
        if any(not (w.start.isdigit() and w.end.isdigit()) for w in windows):
            raise PlanError("--windows: the spec has no time column, give row positions")
    else:
        edges = [cut + round(i * (n - cut) / cfg.window_count) for i in range(cfg.window_count + 1)]
        windows = tuple(Window(f"rows {a} .. {b}", str(a), str(b)) for a, b in itertools.pairwise(edges))
    rows = int(cfg.training_window_days) if cfg.training_window_days else cut
    cooldown = cfg.cooldown_hours if cfg.cooldown_hours is not None else min(mon.cooldown_hours, 12.0)
    control = cfg.control or Window(
        f"control (sample of rows 0 .. {cut})", "0", str(cut), cfg.control_rows, True
    )
    return Plan(False, str(cut), control, windows, float(rows), float(cooldown), history_rows=cut, last=n - 1)
