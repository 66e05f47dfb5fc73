"""Every threshold and tunable of the loop, in one reviewed place.

Change a number here and the pull request shows it. Components receive these values as typed pipeline
parameters (so a run records what it used) with the defaults below.

Size: one frozen, validated dataclass per stage (plus the image names); kept in one module on purpose, as
the one reviewed place for every threshold and tunable.
"""

from __future__ import annotations

import dataclasses

from kfloop import layout

#: Default container images (registry + tag in one place; ``kfloop compile`` can override them).
IMAGE_REGISTRY = "ghcr.io/kfloop"
IMAGE_TAG = "0.1.0"
#: CPU image of every pipeline step but training (``pipelines/Dockerfile``).
PIPELINE_IMAGE = f"{IMAGE_REGISTRY}/kfloop-pipeline:{IMAGE_TAG}"
#: GPU image of the train step only (``pipelines/Dockerfile``, target ``training``, on a CUDA base).
TRAINING_IMAGE = f"{IMAGE_REGISTRY}/kfloop-training:{IMAGE_TAG}"
SERVING_IMAGE = f"{IMAGE_REGISTRY}/kfloop-serving:{IMAGE_TAG}"

#: Share of the training window held out (deterministically, by row hash) for evaluation.
DEFAULT_EVAL_FRACTION = 0.2


#: What output drift does (:attr:`MonitoringConfig.output_drift_mode`).
OUTPUT_DRIFT_MODES = ("record", "trigger")
#: Promotion policies (:class:`ApprovalConfig`) and what an expired approval does.
APPROVAL_POLICIES = ("auto", "approval")
APPROVAL_ON_EXPIRY = ("keep", "promote")
#: The one container port Knative routes in Serverless mode (:attr:`DeployConfig.serverless_port`): the
#: predictor's REST port (``http1``, 8080) or its gRPC port (``h2c``, 8081).
SERVERLESS_PORTS = ("http1", "h2c")


def _finite(cfg, name: str, *, lo=None, hi=None, lo_open=False, hi_open=False) -> None:
    """Checks that ``cfg.<name>`` is a finite number within the bounds.

    Raises:
        ValueError: naming ``<Class>.<name>``, the bounds and the value.
    """
    import math

    v = getattr(cfg, name)
    where = f"{type(cfg).__name__}.{name}"
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{where} must be a finite number, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{where} must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"{where} must be {'<' if hi_open else '<='} {hi}, got {v!r}")


def _epoch_seconds(value: str, what: str) -> int:
    """An ISO date / datetime (UTC unless it says otherwise) or integer epoch seconds, as epoch seconds.

    Raises:
        ValueError: ``value`` is neither; the message names ``what``.
    """
    import datetime

    text = str(value).strip()
    if text.lstrip("+-").isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{what} {value!r} is not a date (use YYYY-MM-DD[THH:MM:SS] or epoch seconds)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp())


@dataclasses.dataclass(frozen=True)
class EventTimeRange:
    """The event times (the spec's ``time`` column) the data gate accepts; a row outside is refused.

    An event cannot happen before the records exist or after the data was extracted: a time outside
    is a broken clock or unit (milliseconds read as seconds land in the year 47,000; a sentinel such as
    2^63-1 or a negative number in 1967), and without this check ingest failed on such rows deep in pandas
    (``OutOfBoundsDatetime``, ``OverflowError``) without naming the column or the line.

    Attributes:
        earliest: Earliest accepted event time, inclusive: ISO date / datetime (UTC unless it carries an
            offset) or epoch seconds. 2000-01-01: later than any broken clock's 1970, earlier than the
            data kfloop is used on; a dataset with older events sets its own.
        latest: Latest accepted event time, inclusive, in the same forms; ``""`` (the default) means the
            wall clock when the data is checked plus ``future_margin_s``.
        future_margin_s: With ``latest=""``: how far past the wall clock an event time may lie (clock skew
            of the devices that stamp the events; one day).
    """

    earliest: str = "2000-01-01"
    latest: str = ""
    future_margin_s: int = 24 * 3600

    def __post_init__(self):
        lo = _epoch_seconds(self.earliest, "event_time.earliest")
        if isinstance(self.future_margin_s, bool) or not isinstance(self.future_margin_s, int):
            raise ValueError(f"event_time.future_margin_s must be an integer, got {self.future_margin_s!r}")
        if self.future_margin_s < 0:
            raise ValueError(f"event_time.future_margin_s must be >= 0, got {self.future_margin_s}")
        if self.latest:
            hi = _epoch_seconds(self.latest, "event_time.latest")
            if hi <= lo:
                raise ValueError(
                    f"event_time.latest {self.latest!r} is not after event_time.earliest {self.earliest!r}"
                )

    def bounds(self, now: float | None = None) -> tuple[int, int]:
        """The accepted range as inclusive epoch seconds ``(lo, hi)``.

        Args:
            now: The wall clock to use for ``latest=""`` (epoch seconds); default: ``time.time()``.
        """
        import time

        lo = _epoch_seconds(self.earliest, "event_time.earliest")
        if self.latest:
            return lo, _epoch_seconds(self.latest, "event_time.latest")
        return lo, int(time.time() if now is None else now) + self.future_margin_s


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """TFDV gate: which anomalies block the loop, and drift / skew thresholds.

    Attributes:
        drift_linf: L-infinity threshold for categorical drift.
        drift_jsd: Jensen-Shannon divergence threshold for numeric drift.
        skew_linf: L-infinity threshold for categorical train/eval skew.
        skew_jsd: Jensen-Shannon divergence threshold for numeric train/eval skew.
        non_blocking: Anomaly types (TFDV ``AnomalyInfo.Type`` names) reported but not blocking. A new
            column that the schema does not know is harmless to training (only schema features are used).
        block_on_drift: Whether drift against reference statistics blocks. Off: the loop retrains
            *because* data drifts; drift is reported and recorded.
        block_on_skew: Whether train/eval skew blocks. On: both splits come from one time window, so skew
            between them means a broken split.
        event_time: The event times the data gate accepts (:class:`EventTimeRange`).
    """

    drift_linf: float = 0.15
    drift_jsd: float = 0.1
    skew_linf: float = 0.1
    skew_jsd: float = 0.1
    non_blocking: tuple[str, ...] = ("SCHEMA_NEW_COLUMN",)
    block_on_drift: bool = False
    block_on_skew: bool = True
    event_time: EventTimeRange = EventTimeRange()


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Champion vs challenger blessing thresholds.

    Attributes:
        auc_floor: Minimum overall AUC for any model to be blessed.
        max_auc_regression: The non-inferiority margin of the overall change check, judged on the
            paired interval of challenger AUC - champion AUC on the eval rows (:class:`ComparisonConfig`
            policy with ``margin = max_auc_regression``): it fails only when the challenger is ``worse``
            (the interval's upper end below 0 and its lower end below ``-max_auc_regression``); an
            undecided comparison passes to the canary, which decides on live traffic. TFMA's own change
            threshold (the cross-check) uses the same number on point estimates.
        min_slice_examples: Slices with fewer examples are reported as too small, never a veto.
        max_slice_auc_regression: Per slice (judged only with a champion and enough examples of both
            classes), the challenger may lose at most this much AUC.
        min_r2: Regression value floor: the challenger's R² on the eval rows (1 - MSE / variance of the
            label, unitless) must reach this. 0.05: a model must explain at least 5% of the label's
            variance, i.e. clearly beat predicting the mean (R² 0); a delay or price model that cannot is
            broken (a lost feature, a label in the wrong units), while a noisy target may honestly sit
            well below 0.5, so the floor only catches "no better than the mean".
        max_log_loss_ratio: Multiclass value floor: the challenger's log loss (nats) on the eval rows must
            be at most this x the log loss of predicting the training split's class frequencies for every
            row (:func:`kfloop.metrics.prior_log_loss`). 0.95: a model at least 5% better than the class
            prior; one that is not has learnt nothing from the features.
        max_slice_rmse_increase: Regression, per slice (with a champion and ``min_slice_examples``): the
            challenger's RMSE may exceed the champion's by at most this fraction of the champion's RMSE.
            Relative, because RMSE is in the label's units (minutes, dollars); 0.10 matches the looseness
            of the binary slice check (0.05 AUC out of the ~0.5 of AUC above chance).
        max_slice_accuracy_drop: Multiclass, per slice: the challenger's accuracy (a fraction of rows)
            may be at most this much below the champion's. 0.05, like ``max_slice_auc_regression``: a
            slice of 50 rows moves by more than that on noise alone, so only a clear loss vetoes.

    The evaluation slices are the dataset spec's (``slices``).
    """

    auc_floor: float = 0.75
    max_auc_regression: float = 0.01
    min_slice_examples: int = 50
    max_slice_auc_regression: float = 0.05
    min_r2: float = 0.05
    max_log_loss_ratio: float = 0.95
    max_slice_rmse_increase: float = 0.10
    max_slice_accuracy_drop: float = 0.05

    def __post_init__(self):
        _finite(self, "min_r2", hi=1.0, hi_open=True)
        _finite(self, "max_log_loss_ratio", lo=0.0, lo_open=True)
        _finite(self, "max_slice_rmse_increase", lo=0.0)
        _finite(self, "max_slice_accuracy_drop", lo=0.0, hi=1.0)


@dataclasses.dataclass(frozen=True)
class ComparisonConfig:
    """How two models are compared on the same rows (:mod:`kfloop.paired`), everywhere the loop does it.

    The policy (evaluate's change threshold and the canary verdict): with the ``confidence`` interval of
    ``AUC(challenger) - AUC(champion)`` on the rows both scored,

    * ``better``: the interval lies above 0 → promote;
    * ``non_inferior``: its lower end lies above ``-margin`` → promote (not worse than the margin);
    * ``worse``: its upper end lies below 0 (and it is not non-inferior) → reject;
    * ``undecided``: otherwise, or fewer than ``min_rows`` rows → keep collecting (canary) until a limit of
      :class:`CanaryConfig`; at the limit it becomes ``at_limit``.

    Why these numbers: on the bundled example data a year's eval split has ~600 rows; there the paired DeLong interval
    of two similar models is about +-0.01 AUC (an unpaired one about +-0.02). A margin of 0.01 AUC is the
    tolerance the loop always had, now required *with* 95% confidence instead of on point estimates.

    Per task the interval is of the task's metric, oriented so that > 0 means the challenger is better
    (binary: AUC challenger - champion; regression: MSE champion - challenger; multiclass: log loss
    champion - challenger), and the margin is :meth:`margin_for` the task.

    Attributes:
        method: ``delong`` (fast, analytic) or ``bootstrap`` (paired resampling of rows, seeded).
        confidence: Two-sided confidence level of the interval.
        margin: Non-inferiority margin in AUC (binary).
        regression_margin: Regression non-inferiority margin as a fraction of the champion's MSE (the
            margin is ``regression_margin x champion MSE``, in squared label units). Relative because MSE
            is in squared label units (minutes², dollars²) that no fixed number fits; 0.02 (2% of the
            MSE, about 1% of the RMSE): a small tolerance, in the spirit of the binary 0.01 AUC.
        multiclass_margin: Multiclass non-inferiority margin in nats of log loss (mean per row). 0.01
            nats: about 1% of the log loss of a useful 5-class model (the uniform prior over 5 classes is
            ln 5 = 1.61 nats), a small tolerance like the binary 0.01 AUC, in the task's own unit.
        min_rows: Fewer (labelled) rows are never judged.
        at_limit: What an undecided comparison becomes when no more rows will come: ``worse`` (the
            challenger has not earned promotion; the champion stays) or ``non_inferior``.
        bootstrap_samples: Resamples of the bootstrap.
        seed: Seed of the bootstrap's RNG.
    """

    method: str = "delong"
    confidence: float = 0.95
    margin: float = 0.01
    min_rows: int = 200
    at_limit: str = "worse"
    bootstrap_samples: int = 1000
    seed: int = 0
    regression_margin: float = 0.02
    multiclass_margin: float = 0.01

    def __post_init__(self):
        _finite(self, "regression_margin", lo=0.0)
        _finite(self, "multiclass_margin", lo=0.0)

    def margin_for(self, task, champion_value: float | None = None) -> float:
        """The non-inferiority margin of ``task``, in the unit of its metric (AUC, squared label units, nats).

        Args:
            task: ``binary``, ``regression`` or ``multiclass`` (a string or ``kfloop.spec.Task``).
            champion_value: The champion's value of the task's metric; regression needs its MSE (the margin
                is relative to it); ignored otherwise.

        Raises:
            ValueError: an unknown task, or regression without a finite champion MSE >= 0.
        """
        import math

        name = getattr(task, "value", task)
        if name == "binary":
            return self.margin
        if name == "multiclass":
            return self.multiclass_margin
        if name == "regression":
            ok = isinstance(champion_value, int | float) and not isinstance(champion_value, bool)
            if not ok or not math.isfinite(champion_value) or champion_value < 0:
                raise ValueError(
                    f"ComparisonConfig.margin_for('regression') needs the champion's MSE (a finite number"
                    f" >= 0), got {champion_value!r}"
                )
            return self.regression_margin * float(champion_value)
        raise ValueError(
            f"ComparisonConfig.margin_for: unknown task {task!r} (binary, regression, multiclass)"
        )


@dataclasses.dataclass(frozen=True)
class CanaryConfig:
    """How long a canary collects live evidence before the stated rule decides (``components/canary``).

    Attributes:
        max_rows: Labelled rows (both models) after which an undecided canary is decided by
            ``ComparisonConfig.at_limit``.
        max_checks: Monitoring runs that may end "keep waiting" for one canary; the next one decides by
            ``ComparisonConfig.at_limit``.
        min_rows_per_model: In an unpaired comparison (traffic split), each model needs this many rows.
        shadow_log: A shadow canary (one that answers copies of the champion's requests, as in the local
            loop) logs under ``<store>/<shadow_log>/``: the canary step reads it next to the main log, the
            monitor (real traffic only) never sees it.
    """

    max_rows: int = 20_000
    max_checks: int = 3
    min_rows_per_model: int = 100
    shadow_log: str = layout.SHADOW


@dataclasses.dataclass(frozen=True)
class ApprovalConfig:
    """Who moves ``champion`` when a canary earns promotion (``components/canary``, :mod:`kfloop.approvals`).

    Attributes:
        policy: ``auto`` (the canary step promotes) or ``approval`` (it records a pending approval with its
            evidence and notifies; ``kfloop approve|reject`` decides; the next monitoring run applies it).
        expiry_hours: A pending approval older than this (monitoring clock) expires.
        on_expiry: What an expired approval does: ``keep`` the champion (the canary is rolled back) or
            ``promote`` the canary.
    """

    policy: str = "auto"
    expiry_hours: float = 72.0
    on_expiry: str = "keep"

    def __post_init__(self):
        if self.policy not in APPROVAL_POLICIES:
            raise ValueError(
                f"ApprovalConfig.policy: {self.policy!r} is not one of {', '.join(APPROVAL_POLICIES)}"
            )
        if not self.expiry_hours > 0:
            raise ValueError(f"ApprovalConfig.expiry_hours: must be > 0 hours, got {self.expiry_hours!r}")
        if self.on_expiry not in APPROVAL_ON_EXPIRY:
            raise ValueError(
                f"ApprovalConfig.on_expiry: {self.on_expiry!r} is not one of {', '.join(APPROVAL_ON_EXPIRY)}"
            )


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """When live traffic triggers retraining.

    Drift thresholds and modes are per feature, from the dataset spec (``drift``: a default and per-column
    overrides; ``trigger`` / ``record`` / ``off``); the numbers below are the rest of the policy. They were
    measured on the bundled example data (the comments of ``examples/taxi/spec.yaml`` give the scores):

    * Categorical L-infinity: random samples of 500-800 rows of the training window itself scored at most
      0.055, at 300 rows up to 0.069; hence ``min_examples = 500`` next to the example's 0.075 threshold.
    * Numeric Jensen-Shannon: TFDV builds equal-width histograms between each side's min and max, so one
      outlier moves every bin (raw training-window samples scored up to 0.48). The monitor clips numeric
      values to the reference's [``clip_quantile``, 1 - ``clip_quantile``] quantiles on both sides first,
      which brings the noise of ordinary numeric columns under 0.03 (spiky ones, a few hundred distinct
      values, stay up to ~0.11: the example's 0.15 stays above that).

    Attributes:
        drift_linf: L-infinity drift threshold for categorical features (live vs champion's training data).
        drift_jsd: Jensen-Shannon drift threshold for numeric features (clipped, see above).
        skew_linf: L-infinity skew threshold (live vs champion's eval data); reported, not a trigger.
        skew_jsd: Jensen-Shannon skew threshold (numeric); reported, not a trigger.
        clip_quantile: Numeric values are clipped to the reference's quantiles at this level before drift.
        min_live_auc: Retrain when the live AUC (labels arrived) falls below this.
        min_examples: Windows with fewer predictions are reported, not acted upon.
        min_labelled: Live AUC is computed only with at least this many arrived labels.
        feedback_horizon_days: Labels arriving up to this long after a window's start are joined to it.
        retrain_on_anomalies: Blocking schema anomalies of live data (``SERVING`` environment) trigger.
        cooldown_hours: No second retraining within this many hours of the last one (monitoring clock:
            the replayed data's time in the replay, the scheduler's time on a cluster).
        training_window_days: A triggered retraining trains on this many days before its cutoff.
        backoff_factor: When the same drift persists and the last retraining's challenger was rejected
            with no new data since, the wait grows by this factor per rejection (cooldown x factor^k).
        max_backoff_hours: The longest such wait.
        new_data_rows: Labelled live rows monitored since a rejected retraining that count as new data.
        close_after_seconds: The watermark: a window closes only this long after its end by the wall clock
            (a predictor publishes a row up to its ``log_flush_seconds``, 2 s by default, after stamping it,
            plus the writer's publish); a run that comes sooner closes its window at ``scan time -
            close_after_seconds`` and the next run starts there, so a row that reaches the log late still
            falls in a window.
        max_live_rmse_increase: Regression: retrain when the live RMSE (labels arrived) exceeds the
            champion's eval RMSE by more than this fraction of it. Relative (RMSE is in label units); 0.25:
            with ``min_labelled`` = 100 rows the live RMSE itself varies by ~10-15% on noise, so only a
            clear degradation triggers (the binary analogue: 0.7 live AUC against ~0.8 at evaluation).
        max_live_accuracy_drop: Multiclass: retrain when the live accuracy (a fraction of rows) falls more
            than this below the champion's eval accuracy. Absolute; 0.05, like the slice check: at 500
            labelled rows the live accuracy's standard error is ~0.02, so only a real drop triggers (at the
            ``min_labelled`` floor of 100 rows it is ~0.045 and a window near the limit may trigger on noise).
        output_drift_threshold: Jensen-Shannon divergence (as the numeric drift check computes it) of the distribution of the
            model's output in live traffic vs the champion's eval predictions (binary: the probability;
            regression: the prediction; multiclass: the predicted class). 0.1: the numeric drift
            threshold of the data gate (``ValidationConfig.drift_jsd``), applied to one more column.
        output_drift_mode: ``record`` (default: output drift is reported, never a trigger by itself; the
            output moves whenever the inputs drift, which the per-feature drift already judges) or
            ``trigger`` (output drift above the threshold triggers retraining).
        stale_after_hours: A monitoring run that finds the previous successful one longer ago than this
            (wall clock) sends ``monitoring.stale`` (a daily schedule plus slack); the alert rule
            ``KfloopMonitoringStale`` in ``manifests/monitoring/`` fires while nothing runs at all.
    """

    drift_linf: float = 0.075
    drift_jsd: float = 0.15
    skew_linf: float = 0.075
    skew_jsd: float = 0.15
    clip_quantile: float = 0.01
    min_live_auc: float = 0.7
    min_examples: int = 500
    min_labelled: int = 100
    feedback_horizon_days: float = 7.0
    retrain_on_anomalies: bool = True
    cooldown_hours: float = 24.0
    training_window_days: int = 365
    backoff_factor: float = 2.0
    max_backoff_hours: float = 24.0 * 30
    new_data_rows: int = 500
    close_after_seconds: float = 10.0
    max_live_rmse_increase: float = 0.25
    max_live_accuracy_drop: float = 0.05
    output_drift_threshold: float = 0.1
    output_drift_mode: str = "record"
    stale_after_hours: float = 26.0

    def __post_init__(self):
        _finite(self, "stale_after_hours", lo=0.0)
        _finite(self, "close_after_seconds", lo=0.0)
        _finite(self, "max_live_rmse_increase", lo=0.0)
        _finite(self, "max_live_accuracy_drop", lo=0.0, hi=1.0)
        _finite(self, "output_drift_threshold", lo=0.0, hi=1.0)
        if self.output_drift_mode not in OUTPUT_DRIFT_MODES:
            raise ValueError(
                f"MonitoringConfig.output_drift_mode must be one of {OUTPUT_DRIFT_MODES}, "
                f"got {self.output_drift_mode!r}"
            )


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    """The local loop's replay (``kfloop run``, :mod:`kfloop.app.plan`); flags of ``kfloop run`` override.

    Attributes:
        windows: Equal windows replayed after the history (the data's time range, or its rows, split).
        history_fraction: Share of the data's time range (or rows) the first champion trains on.
        control_rows: Rows of the control window, a sample of the champion's training split (no drift
            expected there: the check against false alarms). 800: above ``MonitoringConfig.min_examples``.
        batch_size: Rows per replayed request.
        epochs: Training epochs of every training run of the loop (it must be quick).
    """

    windows: int = 3
    history_fraction: float = 0.5
    control_rows: int = 800
    batch_size: int = 64
    epochs: int = 8

    def __post_init__(self):
        for name in ("windows", "control_rows", "batch_size", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ReplayConfig.{name} must be an integer >= 1, got {v!r}")
        if not 0 < self.history_fraction < 1:
            raise ValueError(
                f"ReplayConfig.history_fraction must lie in (0, 1), got {self.history_fraction!r}"
            )


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Limits and batching of the KServe predictor.

    Attributes:
        max_body_bytes: Larger request bodies get HTTP 413.
        max_rows: Larger batches get HTTP 400.
        batch_wait_ms: Longest a request waits for others to share one model call.
        max_batch_rows: Rows per model call.
        log_queue_size: Bounded prediction-log queue (rows received and not yet written).
        log_when_full: What the server does when the log queue has no room for a request's rows:
            ``"shed"`` answers 503 + Retry-After (like the admission bounds below), so that every answered
            prediction is logged; ``"drop"`` answers and drops those log rows (counted). Shed by default: the
            log feeds monitoring, the feedback join and the canary verdict. With drop, the burst of
            tests/serving/test_overload.py beside two busy processes dropped 17,000 of 121,000 answered rows.
        log_flush_rows: Flush the prediction log every this many records ...
        log_flush_seconds: ... or this often, whichever comes first.
        log_stall_seconds: A prediction-log writer process that holds rows and reports nothing (no write,
            failed try or heartbeat; it sends one a second while it holds rows) for this long is stuck
            (stopped, a hung storage call): liveness fails and Kubernetes restarts the pod. 60 s: longer
            than one write's own storage timeouts, short enough that a stuck replica goes within a minute.
        reload_interval_s: How often the server polls its alias for a new version (0: no hot reload).
        max_queue_rows: Admission bound: most rows the server holds at once (being decoded, queued for the
            model or in the model call); past it a request gets 503 + Retry-After instead of queueing.
        max_queue_requests: Admission bound on requests held at once (per-request cost dominates small ones).
        max_inflight_bytes: Admission bound on request-body bytes held at once (bounds memory under bursts).
        retry_after_s: Retry-After of a 503 from admission control.
        decode_inline_bytes: Bodies up to this size are decoded on the event loop; larger ones in a thread, so
            health checks and small requests are not stuck behind a big JSON decode. 32 KiB: decoding
            bodies up to 1 MiB inline was faster at 1,000-row requests (same-run A/B, 4 runs each: V1
            median 124k -> 149k rows/s, V2 198k -> 216k), but the busier loop accepted new connections
            later, and one that the kernel had queued when the listener closed at shutdown was reset
            without an answer (tests/serving/test_drain.py: 1 failure in 5 runs, 0 in 6 at 32 KiB).
        max_call_seconds: A model call running longer than this makes liveness fail (the pod is restarted).
        shutdown_delay_s: After SIGTERM, keep accepting requests (readiness already 503) this long before
            closing the listener. 0 where the platform drains: the manifests' preStop sleep
            (``DeployConfig.drain_seconds``) in RawDeployment, Knative's queue-proxy in Serverless.
        accept_drain_s: Before the listener closes, new connections are refused and those the kernel has
            already accepted are read (:mod:`serving.listener`), at most this long; closing it with them
            still queued resets them after their request was sent.
        shutdown_requests_timeout_s: Then in-flight requests get at most this long to finish ...
        shutdown_log_timeout_s: ... and the prediction log flush at most this long; then the process exits.
            The whole budget (delay + accept drain + both timeouts) must fit the pod's
            terminationGracePeriodSeconds minus the preStop sleep (tests/serving/test_drain.py checks the
            rendered manifest).
    """

    max_body_bytes: int = 2 * 1024 * 1024
    max_rows: int = 4096
    batch_wait_ms: float = 2.0
    max_batch_rows: int = 1024
    log_queue_size: int = 100_000
    log_when_full: str = "shed"
    log_flush_rows: int = 5000
    log_flush_seconds: float = 2.0
    log_stall_seconds: float = 60.0
    reload_interval_s: float = 1.0
    max_queue_rows: int = 8192
    max_queue_requests: int = 256
    max_inflight_bytes: int = 16 * 1024 * 1024
    retry_after_s: int = 1
    decode_inline_bytes: int = 32 * 1024
    max_call_seconds: float = 30.0
    shutdown_delay_s: float = 0.0
    accept_drain_s: float = 0.5
    shutdown_requests_timeout_s: float = 10.0
    shutdown_log_timeout_s: float = 15.0

    def __post_init__(self):
        if self.log_when_full not in ("shed", "drop"):
            raise ValueError(f"log_when_full must be 'shed' or 'drop', got {self.log_when_full!r}")
        stall = self.log_stall_seconds
        if isinstance(stall, bool) or not isinstance(stall, int | float) or not 2.0 <= stall <= 86_400:
            raise ValueError(
                f"log_stall_seconds must be a number of seconds in [2, 86400] (the writer reports every "
                f"second), got {stall!r}"
            )


@dataclasses.dataclass(frozen=True)
class FeedbackConfig:
    """The predictor's feedback endpoint (``POST /v1/models/<name>:feedback``, :mod:`serving.feedback`).

    Attributes:
        index_requests: How many of the most recent request ids the server remembers (with row count and
            prediction time) to validate feedback against; older ids get 404.
        max_items: Most labels in one feedback request (400 above).
        label_memory: How many accepted labels the server remembers (the most recent, per request id) to
            refuse a contradicting second label for the same request id and row (409) and to answer an
            identical repeat without writing it twice. Beyond it the oldest requests' labels are forgotten
            (and a label for them is accepted again; the monitor keeps the first by arrival).
        flush_labels: Accepted labels are written in batches: a file once this many are pending...
        flush_seconds: ... or this long after the first of them arrived (at most one file per this interval
            under load; a label arriving after a quiet interval is written at once). A feedback request is
            answered 200 only once its labels are in a written file (a batch's requests wait for it together).
        max_pending_labels: Admission bound: labels accepted but not yet written, at most. A request that
            would go past it gets 503 + ``Retry-After`` naming the bound (nothing of it is kept).
        retry_after_s: ``Retry-After`` of that 503.
        tokens_secret: On a cluster, the Kubernetes Secret holding the labelers' tokens (one key per labeler,
            the key is the labeler's name); mounted into the predictor, which then requires
            ``Authorization: Bearer <token>`` on ``:feedback``.
        tokens_mount: Where the predictor mounts that Secret (``--feedback-tokens``).
    """

    index_requests: int = 200_000
    max_items: int = 10_000
    label_memory: int = 200_000
    flush_labels: int = 10_000
    flush_seconds: float = 0.25
    max_pending_labels: int = 50_000
    retry_after_s: int = 1
    tokens_secret: str = "kfloop-feedback-tokens"
    tokens_mount: str = "/var/run/secrets/kfloop/feedback"

    def __post_init__(self):
        import math

        for name in ("index_requests", "max_items", "label_memory", "flush_labels", "max_pending_labels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"FeedbackConfig.{name} must be an integer >= 1, got {v!r}")
        r = self.retry_after_s
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"FeedbackConfig.retry_after_s must be an integer >= 0, got {r!r}")
        f = self.flush_seconds
        if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f) or f <= 0:
            raise ValueError(f"FeedbackConfig.flush_seconds must be a finite number > 0, got {f!r}")


@dataclasses.dataclass(frozen=True)
class GpuConfig:
    """Where the train task runs on a cluster (inert under kfp.local).

    Attributes:
        accelerator_type: KFP accelerator type / GKE accelerator label value.
        accelerator_count: GPUs per train task.
        node_selector_key: Node label that selects the GPU node pool.
        toleration_key: Taint key GPU nodes carry.
        cpu_request: CPU request of the train task. Sized to the documented node pool (GKE
            ``n1-standard-4`` + 1 x T4: 3.92 CPU / ~12.4 GiB allocatable, minus the GPU and logging
            daemonsets), so one train pod fits one node.
        memory_request: Memory request of the train task.
    """

    accelerator_type: str = "nvidia-tesla-t4"
    accelerator_count: int = 1
    node_selector_key: str = "cloud.google.com/gke-accelerator"
    toleration_key: str = "nvidia.com/gpu"
    cpu_request: str = "3"
    memory_request: str = "10Gi"


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """How pipeline tasks behave on a cluster (``pipelines/settings.py``; inert under kfp.local).

    Attributes:
        num_retries: Retries of a task that does network I/O (GCS, the model store, the KFP API).
        backoff_duration: Wait before the first retry.
        backoff_factor: Each further wait is this many times the previous one.
        backoff_max_duration: Longest single wait between retries (KFP caps it at 1 h).
        cpu_limit_factor: CPU limit = request x this (0 = no CPU limit); memory limit = memory request.
        gpu_resource: Kubernetes resource name a GPU task's accelerator count is requested as.
        train_retries: Retries of the train task (a preempted Spot GPU node); it resumes from its
            BackupAndRestore checkpoint next to the model artifact under the pipeline root.
        namespace: Namespace the pipeline runs' pods run in (the Kubeflow profile; also the
            InferenceService's, :class:`DeployConfig`).
        service_account: Kubernetes service account every run is created with (``kfloop submit``, CI,
            the retrain trigger); ``manifests/`` binds exactly the rights the code needs to it.
        kfp_host: KFP API address from inside the cluster (the retrain trigger).
        kfp_token_path: A projected service-account token for audience ``pipelines.kubeflow.org`` if
            one is mounted (Kubeflow's ``access-ml-pipeline`` PodDefault); otherwise the trigger asks the
            Kubernetes TokenRequest API for one (``serviceaccounts/token``, granted in ``manifests/``).
        kfp_audience: Audience of that token (what the multi-user KFP API server accepts).
        kfp_access_label: Pod label selecting the ``access-ml-pipeline`` PodDefault that multi-user
            Kubeflow puts in each profile namespace (it mounts that projected token); set on the trigger.
        image_pull_secret: Secret for a private registry, set on every task ("" = public images).
        notify_secret: Secret holding the notification config (key ``notify.yaml``: the channels, secrets
            and all), mounted optionally on every task that sends events (:func:`pipelines.settings.notify_access`).
        notify_mount: Where it is mounted; :func:`kfloop.notify.load_config` reads ``<mount>/notify.yaml``
            when no config is given.
    """

    num_retries: int = 3
    backoff_duration: str = "30s"
    backoff_factor: float = 2.0
    backoff_max_duration: str = "600s"
    cpu_limit_factor: float = 2.0
    gpu_resource: str = "nvidia.com/gpu"
    train_retries: int = 3
    namespace: str = "kfloop"
    service_account: str = "kfloop-pipelines"
    kfp_host: str = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    kfp_token_path: str = "/var/run/secrets/kubeflow/pipelines/token"
    kfp_audience: str = "pipelines.kubeflow.org"
    kfp_access_label: str = "access-ml-pipeline"
    image_pull_secret: str = ""
    notify_secret: str = "kfloop-notify"
    notify_mount: str = "/etc/kfloop/notify"


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    """How a model version reaches KServe (``kfloop deploy|promote|rollback``, ``components/deploy``).

    Attributes:
        namespace: Kubernetes namespace of the InferenceService.
        service_account: ServiceAccount of the predictor pods (Workload Identity for GCS on GKE).
        canary_percent: Share of traffic a new version gets as canary before ``promote``.
        deployment_mode: KServe deployment mode: ``Serverless`` (Knative; canary works; KServe >= 0.16
            also says ``Knative``) or ``RawDeployment`` (plain Deployment, also ``Standard``; KServe ignores
            canaryTrafficPercent there, so we refuse canary).
        cpu_request: Predictor CPU request.
        cpu_limit: Predictor CPU limit.
        memory_request: Predictor memory request.
        memory_limit: Predictor memory limit.
        min_replicas: Predictor minimum replicas.
        max_replicas: Predictor maximum replicas.
        drain_seconds: preStop sleep so endpoint removal reaches the load balancers before shutdown
            (RawDeployment only; Knative's queue-proxy drains by itself and rejects ``lifecycle``).
        run_as_user: UID (and GID) of the predictor container; the images' user (one UID everywhere).
        image_pull_secret: Secret (in ``namespace``) for a private registry; "" = public images.
        ready_timeout_s: A rollout that is not Ready on its new revision within this long is undone.
        ready_poll_s: How often the rollout's status is read while waiting.
        serverless_port: The one container port Knative routes in Serverless mode (it routes exactly
            one): ``http1`` (REST on 8080: predictions, ``:feedback``, the probes; gRPC then reaches only
            the pod's 8081) or ``h2c`` (gRPC on 8081 through the Knative ingress; REST, ``:feedback``
            included, then reaches only the pod's 8080, and the probes are TCP checks of the gRPC port).
            RawDeployment always declares both ports (its Service exposes 80 -> 8080 and 8081).
    """

    namespace: str = "kfloop"
    service_account: str = "kfloop-serving"
    canary_percent: int = 10
    deployment_mode: str = "Serverless"
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 3
    drain_seconds: int = 10
    run_as_user: int = 10001
    image_pull_secret: str = ""
    ready_timeout_s: float = 600.0
    ready_poll_s: float = 5.0
    serverless_port: str = "http1"

    def __post_init__(self):
        if self.serverless_port not in SERVERLESS_PORTS:
            raise ValueError(
                f"DeployConfig.serverless_port must be one of {', '.join(SERVERLESS_PORTS)}, "
                f"got {self.serverless_port!r}"
            )
