"""The built-in Keras model: raw feature inputs (one per spec feature) -> the task's output.

The head per task (named after the contract's output key, :func:`kfloop.contract.output_key`): binary one
sigmoid unit (``probability``); regression one linear unit (``prediction``, the *standardised* label: the
export turns it into label units); multiclass a softmax over ``spec.n_classes`` units
(``probabilities``).

Preprocessing lives inside the model (imputation + missing indicators, clipping and normalisation of
numeric features, 0/1 plus a missing indicator for booleans, lookups with an out-of-vocabulary bucket for
categorical ones), with every statistic computed on the training split, so serving receives raw features
and there is no training/serving skew by construction.
"""

from __future__ import annotations

import re

from training_image.trainer.hparams import HParams


def model_name(spec) -> str:
    """A Keras-safe model name for a spec (``kfloop_<spec name>``)."""
    return "kfloop_" + re.sub(r"[^0-9A-Za-z_]", "_", spec.name)


def build_model(spec, stats: dict, hp: HParams):
    """The Keras functional model of a spec's features with the training split's ``stats`` (the head per
    ``spec.task``, see the module docstring)."""
    import keras
    from keras import layers, ops

    inputs = {f.name: keras.Input(shape=(), dtype=f.dtype, name=f.name) for f in spec.model_features}
    parts = []
    dense = []
    for f in spec.model_features:
        x = inputs[f.name]
        if f.kind.value == "numeric":
            s = stats[f.name]
            missing = ops.isnan(x)
            x = ops.where(missing, s["fill"], x)
            x = ops.clip(x, s["lo"], s["hi"])
            x = (x - s["mean"]) / s["std"]
            dense += [x, ops.cast(missing, "float32")]
        elif f.kind.value == "boolean":
            missing = ops.equal(x, f.missing)
            dense += [ops.cast(ops.equal(x, 1), "float32"), ops.cast(missing, "float32")]
    if dense:
        parts.append(ops.stack(dense, axis=-1))
    for f in spec.model_features:
        if f.kind.value not in ("categorical_int", "categorical_string"):
            continue
        vocab = stats[f.name]["vocabulary"]
        if not vocab:  # no category is frequent enough (e.g. an all-missing column): presence only
            parts.append(ops.expand_dims(ops.cast(ops.not_equal(inputs[f.name], f.missing), "float32"), -1))
            continue
        if f.dtype == "string":
            lookup = layers.StringLookup(vocabulary=vocab, num_oov_indices=1, name=f"{f.name}_lookup")
        else:
            lookup = layers.IntegerLookup(
                vocabulary=vocab, num_oov_indices=1, oov_token=-1, name=f"{f.name}_lookup"
            )
        idx = lookup(inputs[f.name])
        size = len(vocab) + 1
        if size <= hp.embedding_dim:
            parts.append(ops.one_hot(idx, size))
        else:
            parts.append(layers.Embedding(size, hp.embedding_dim, name=f"{f.name}_embedding")(idx))
    x = layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    for i, units in enumerate(hp.hidden_units):
        x = layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        if hp.dropout:
            x = layers.Dropout(hp.dropout, seed=hp.seed + i, name=f"dropout_{i}")(x)
    task = spec.task.value
    if task == "regression":
        out = layers.Dense(1, dtype="float32", name="prediction")(x)
    elif task == "multiclass":
        out = layers.Dense(spec.n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    else:
        out = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    return keras.Model(inputs=inputs, outputs=out, name=model_name(spec))
