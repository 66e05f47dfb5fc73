"""Distribution: the strategy the hardware calls for (one CPU, GPUs, a TFJob's workers) and its workarounds."""

from __future__ import annotations

import json
import os

from training_image.trainer.hparams import TrainError


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TrainError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise TrainError("TF_CONFIG must be a JSON object")
    return cfg


def cluster_size(tf_config: dict | None = None) -> int:
    """Number of training tasks (chief + workers) that ``TF_CONFIG`` names (1 without TF_CONFIG)."""
    cfg = _tf_config() if tf_config is None else tf_config
    cluster = cfg.get("cluster") or {}
    return sum(len(cluster.get(role) or []) for role in ("chief", "worker")) or 1


def is_chief(tf_config: dict | None = None) -> bool:
    """Whether this task writes the model: the chief, or worker 0 when the cluster has no chief."""
    cfg = _tf_config() if tf_config is None else tf_config
    task = cfg.get("task") or {}
    if not task:
        return True
    role, index = task.get("type"), int(task.get("index", 0))
    if role == "chief":
        return True
    has_chief = bool((cfg.get("cluster") or {}).get("chief"))
    return role == "worker" and index == 0 and not has_chief


def worker_checkpoint_dir(checkpoint_dir: str, tf_config: dict | None = None) -> str:
    """The backup directory of this task: ``checkpoint_dir`` for the chief, a sibling per other worker
    (Keras 3's BackupAndRestore is not multi-worker aware; workers must not write one file)."""
    if is_chief(tf_config):
        return checkpoint_dir
    task = (_tf_config() if tf_config is None else tf_config).get("task") or {}
    return f"{checkpoint_dir.rstrip('/')}-{task.get('type', 'worker')}-{int(task.get('index', 0))}"


def strategy_kind(tf_config: dict | None = None, gpus: int | None = None) -> str:
    """Which strategy the hardware calls for: ``"multi_worker"``, ``"mirrored"`` or ``"default"``."""
    if cluster_size(tf_config) > 1:
        return "multi_worker"
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if gpus > 0 else "default"


def choose_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, MirroredStrategy with GPUs,
    the default strategy otherwise."""
    import tensorflow as tf

    kind = strategy_kind()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def prebuild(model, strategy, dataset) -> None:
    """Builds metric / loss state from one local batch, then skips Keras' own distributed pre-build.

    Keras 3 (``TensorFlowTrainer._maybe_symbolic_build``) MEAN-reduces one distributed input batch across
    replicas just to learn its shapes, which fails for string features (categorical strings)
    under MirroredStrategy with several replicas and under MultiWorkerMirroredStrategy. Shapes and
    dtypes are all it needs, and the undistributed dataset has them.
    """
    batch = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    _patch_multi_worker_log_reduction()


def _patch_multi_worker_log_reduction() -> None:
    """Works around tensorflow/tensorflow#72388 (Keras 3 + MultiWorkerMirroredStrategy).

    Keras 3 reduces each train/test step's logs with ``strategy.reduce("MEAN", v, axis=0)`` under a
    multi-worker strategy, which fails for the scalar loss / metric values ("Invalid reduction dimension
    0 for input with 0 dimensions"). Those values are already synchronised across workers (metric
    state is all-reduced), so the first local replica's value is the right one, as Keras does on TPUs.
    Only the ``"auto"`` reduction of a multi-worker strategy changes; idempotent.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_kfloop_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and tf_trainer._collective_all_reduce_multi_worker(strategy):
            reduction = "first"
        return original(values, strategy, reduction)

    reduce_per_replica._kfloop_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica
