"""Training data: Dataset-form CSVs read and checked against the spec, preprocessing statistics, tf.data.

A Dataset-form CSV (kfloop's normalized artifact) has the spec's ``dataset_columns``: the time column as
integer epoch seconds (if any), the model features, the label (binary 0/1, multiclass the class index
0..K-1, regression the number); missing = an empty cell.
"""

from __future__ import annotations

import io

from kfloop import contract, fs
from training_image.trainer.hparams import HParams, TrainError


def read_split(uri: str, spec, what: str):
    """Reads a Dataset CSV and checks it against the spec: every model feature and the label present,
    values of the feature's type, labels of the task (binary 0/1, multiclass 0..K-1, regression finite
    numbers). Rows without a label are dropped.

    Numeric columns and a regression label become float64 (NaN = missing); categorical ints, booleans, the
    time column and a class label pandas ``Int64``; categorical strings ``object`` with NaN for missing.

    Raises:
        TrainError: the file is missing, lacks a column, holds a value of the wrong type (naming column and
            CSV line), or has no labelled rows.
    """
    import numpy as np
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(fs.read_bytes(uri)), dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise TrainError(f"{what} data {uri!r} does not exist") from None
    except (ValueError, pd.errors.EmptyDataError) as e:
        raise TrainError(f"{what} data {uri!r}: {e}") from None
    label = spec.label.name
    need = [f.name for f in spec.model_features] + [label]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise TrainError(f"{what} data {uri!r} lacks column(s): {', '.join(missing)}")
    typed = [*spec.model_features, spec.label] + ([spec.event_time] if spec.event_time else [])
    for f in typed:
        if f.name not in frame.columns or f.dtype == "string":
            continue
        values = pd.to_numeric(frame[f.name], errors="coerce")
        bad = values.isna() & frame[f.name].notna()
        if f.dtype == "int64":
            bad |= values.notna() & (values != values.round())
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise TrainError(
                f"{what} data {uri!r}: column {f.name!r} has {frame[f.name].iloc[row]!r} at CSV line {row + 2} "
                f"(expected {'a number' if f.dtype == 'float32' else 'an integer'})"
            )
        frame[f.name] = values.astype("float64") if f.dtype == "float32" else values.astype("Int64")
    values = frame[label]
    task = spec.task.value
    if task == "regression":
        wrong = values.notna() & ~np.isfinite(values.astype("float64").fillna(0.0))
        expected = "a finite number"
    else:
        allowed = [0, 1] if task == "binary" else list(range(spec.n_classes))
        wrong = values.notna() & ~values.isin(allowed)
        expected = "0/1" if task == "binary" else f"a class index 0..{spec.n_classes - 1}"
    if wrong.any():
        row = int(wrong.to_numpy().nonzero()[0][0])
        if task == "binary":
            raise TrainError(f"{what} data {uri!r}: column {label!r} has a value other than 0/1")
        raise TrainError(
            f"{what} data {uri!r}: column {label!r} has {values.iloc[row]!r} at CSV line {row + 2} "
            f"(expected {expected}: the {task} label in Dataset form)"
        )
    for f in spec.features_of("boolean"):
        if (frame[f.name].notna() & ~frame[f.name].isin([0, 1])).any():
            raise TrainError(f"{what} data {uri!r}: boolean column {f.name!r} has a value other than 0/1")
    frame = frame[values.notna()].reset_index(drop=True)
    if frame.empty:
        raise TrainError(f"{what} data {uri!r} has no labelled rows")
    return frame


def feature_stats(train, spec, hp: HParams) -> dict:
    """Preprocessing statistics from the training split (JSON-ready): per numeric feature the
    imputation value, clip bounds, mean and std after clipping; per categorical feature its vocabulary
    (booleans need none: 0/1 plus a missing indicator)."""
    import numpy as np

    enc = contract.encode_inputs(train, spec)
    stats = {}
    for f in spec.model_features:
        x = enc[f.name]
        if f.kind.value == "numeric":
            present = x[~np.isnan(x)].astype(np.float64)
            if present.size == 0:
                stats[f.name] = {"fill": 0.0, "lo": 0.0, "hi": 0.0, "mean": 0.0, "std": 1.0}
                continue
            lo, hi = np.quantile(present, [hp.clip_quantile, 1.0 - hp.clip_quantile])
            clipped = np.clip(present, lo, hi)
            std = float(clipped.std())
            stats[f.name] = {
                "fill": float(np.median(present)),
                "lo": float(lo),
                "hi": float(hi),
                "mean": float(clipped.mean()),
                "std": std if std > 1e-6 else 1.0,
            }
        elif f.kind.value == "boolean":
            present = x[x != f.missing]
            stats[f.name] = {"rate": float(present.mean()) if present.size else 0.0}
        else:
            values, counts = np.unique(x[x != f.missing], return_counts=True)
            keep = counts >= hp.min_category_count
            order = np.lexsort((values[keep].astype(str), -counts[keep]))  # by count, then value
            vocab = values[keep][order]
            stats[f.name] = {"vocabulary": [v.item() if hasattr(v, "item") else str(v) for v in vocab]}
    return stats


def label_scaling(train, spec) -> dict | None:
    """``{"mean", "std"}`` of a regression label on the training split (the model learns the standardised
    label; the export turns its output back into label units); None for the other tasks. A constant label
    gets std 1."""

    if spec.task.value != "regression":
        return None
    y = train[spec.label.name].astype("float64").to_numpy()
    std = float(y.std())
    return {"mean": float(y.mean()), "std": std if std > 1e-12 else 1.0}


def labels_of(frame, spec, scaling: dict | None = None):
    """The label column as the Keras model learns it (numpy): binary float32 0/1 (shape [n]); multiclass
    int64 class indices (shape [n]); regression the label standardised with ``scaling``, float32 [n, 1]."""
    import numpy as np

    col = frame[spec.label.name]
    task = spec.task.value
    if task == "multiclass":
        return col.astype("int64").to_numpy(dtype=np.int64)
    if task == "regression":
        y = col.astype("float64").to_numpy(dtype=np.float64)
        if scaling is not None:
            y = (y - scaling["mean"]) / scaling["std"]
        return y.astype(np.float32).reshape(-1, 1)
    return col.astype("int64").to_numpy(dtype=np.float32)


def make_dataset(
    frame, spec, hp: HParams, training: bool, batch_size: int | None = None, scaling: dict | None = None
):
    """A ``tf.data`` pipeline of ``({feature: tensor}, label)`` batches; shuffled (seeded) when training.

    The labels are :func:`labels_of` (a regression label standardised with ``scaling``).

    The rows stay in memory as one tensor per column; the pipeline shuffles row *indices* and gathers
    whole batches (one vectorised gather per column), which is much cheaper than shuffling many-field
    elements one by one. Batches are prefetched.
    """
    import tensorflow as tf

    columns = {k: tf.constant(v) for k, v in contract.encode_inputs(frame, spec).items()}
    labels = tf.constant(labels_of(frame, spec, scaling))
    ds = tf.data.Dataset.range(len(frame))
    if training:
        ds = ds.shuffle(min(hp.shuffle_buffer, len(frame)), seed=hp.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size or hp.batch_size)
    ds = ds.map(
        lambda idx: ({k: tf.gather(v, idx) for k, v in columns.items()}, tf.gather(labels, idx)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def window(frame, spec) -> dict:
    """``{"start", "end"}`` ISO times of a split's event-time range (None without a time column)."""
    t = spec.event_time
    if t is None or t.name not in frame.columns:
        return {"start": None, "end": None}
    return {"start": iso(frame[t.name].min()), "end": iso(frame[t.name].max())}


def iso(epoch_seconds) -> str | None:
    """ISO 8601 UTC of epoch seconds (None for a missing value)."""
    import pandas as pd

    if epoch_seconds is None or pd.isna(epoch_seconds):
        return None
    return pd.Timestamp(int(epoch_seconds), unit="s", tz="UTC").isoformat()
