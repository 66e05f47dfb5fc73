"""Every threshold and tunable of the loop, in one reviewed place.

Change a number here and the pull request shows it. Components receive these values as typed pipeline
parameters (so a run records what it used) with the defaults below.
"""

from __future__ import annotations

import dataclasses

#: Default container images (registry + tag in one place; ``kfloop compile`` can override them).
IMAGE_REGISTRY = "ghcr.io/kfloop"
IMAGE_TAG = "0.1.0"
PIPELINE_IMAGE = f"{IMAGE_REGISTRY}/kfloop-pipeline:{IMAGE_TAG}"
SERVING_IMAGE = f"{IMAGE_REGISTRY}/kfloop-serving:{IMAGE_TAG}"

#: Default time split of the taxi data (UTC): history before, "live" traffic from this date on.
DEFAULT_CUTOFF = "2015-01-01"
#: Share of the training window held out (deterministically, by row hash) for evaluation.
DEFAULT_EVAL_FRACTION = 0.2
#: Name of the model in the store and in KServe.
MODEL_NAME = "taxi-tips"


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """TFDV gate: which anomalies block the loop, and drift / skew thresholds.

    Attributes:
        drift_linf: L-infinity threshold for categorical drift.
        drift_jsd: Jensen-Shannon divergence threshold for numeric drift.
        skew_linf: L-infinity threshold for categorical train/eval skew.
        skew_jsd: Jensen-Shannon divergence threshold for numeric train/eval skew.
        non_blocking: Anomaly types (TFDV ``AnomalyInfo.Type`` names) reported but not blocking.
    """

    drift_linf: float = 0.15
    drift_jsd: float = 0.1
    skew_linf: float = 0.1
    skew_jsd: float = 0.1
    non_blocking: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Champion vs challenger blessing thresholds.

    Attributes:
        auc_floor: Minimum overall AUC for any model to be blessed.
        max_auc_regression: The challenger may lose at most this much AUC against the champion.
        min_slice_examples: Slices with fewer examples are reported as too small, never a veto.
    """

    auc_floor: float = 0.75
    max_auc_regression: float = 0.01
    min_slice_examples: int = 50


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """When live traffic triggers retraining.

    Attributes:
        drift_linf: L-infinity drift threshold for categorical features on live data.
        drift_jsd: Jensen-Shannon drift threshold for numeric features on live data.
        min_live_auc: Retrain when the live AUC (labels arrived) falls below this.
        min_examples: Windows with fewer predictions are reported, not acted upon.
        cooldown_hours: No second retraining within this many hours of the last one.
    """

    drift_linf: float = 0.15
    drift_jsd: float = 0.1
    min_live_auc: float = 0.7
    min_examples: int = 200
    cooldown_hours: float = 24.0


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Limits and batching of the KServe predictor.

    Attributes:
        max_body_bytes: Larger request bodies get HTTP 413.
        max_rows: Larger batches get HTTP 400.
        batch_wait_ms: Longest a request waits for others to share one model call.
        max_batch_rows: Rows per model call.
        log_queue_size: Bounded prediction-log queue; records beyond it are dropped and counted.
        log_flush_rows: Flush the prediction log every this many records ...
        log_flush_seconds: ... or this often, whichever comes first.
    """

    max_body_bytes: int = 2 * 1024 * 1024
    max_rows: int = 4096
    batch_wait_ms: float = 2.0
    max_batch_rows: int = 1024
    log_queue_size: int = 100_000
    log_flush_rows: int = 5000
    log_flush_seconds: float = 2.0


@dataclasses.dataclass(frozen=True)
class GpuConfig:
    """Where the train task runs on a cluster (inert under kfp.local).

    Attributes:
        accelerator_type: KFP accelerator type / GKE accelerator label value.
        accelerator_count: GPUs per train task.
        node_selector_key: Node label that selects the GPU node pool.
        toleration_key: Taint key GPU nodes carry.
        cpu_request: CPU request of the train task.
        memory_request: Memory request of the train task.
    """

    accelerator_type: str = "nvidia-tesla-t4"
    accelerator_count: int = 1
    node_selector_key: str = "cloud.google.com/gke-accelerator"
    toleration_key: str = "nvidia.com/gpu"
    cpu_request: str = "4"
    memory_request: str = "16Gi"
