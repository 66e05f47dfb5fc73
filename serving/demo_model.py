"""A small, deterministic SavedModel with exactly the trainer's signatures (tests and benchmarks).

It is not trained: fixed, seeded weights turn the 16 raw features into a probability through the same kind
of graph the real model has (missing-value imputation, hashed categorical embeddings, two dense layers), so
serving can be tested and measured without the pipeline env. Signatures (the SavedModel contract):

* ``predict_raw``: one input per feature of :data:`kfloop.features.MODEL_FEATURES` → ``probability``.
* ``serving_default``: ``examples`` (serialized ``tf.Example``) → ``probability``.
"""

from __future__ import annotations

import json
from pathlib import Path

from kfloop import features as F

_TF_DTYPES = {"float32": "float32", "int64": "int64", "string": "string"}


def build(model_dir: str | Path, seed: int = 0, version_tag: str = "demo") -> str:
    """Saves the demo model to ``model_dir`` (plus ``kfloop_metadata.json``); returns the directory.

    Args:
        model_dir: Where to write the SavedModel (created).
        seed: Weight seed: two seeds give two different models (hot-reload tests tell them apart).
        version_tag: Free text recorded in the metadata file.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    n_num = len(F.features_of(F.Kind.NUMERIC))
    cats = [f for f in F.MODEL_FEATURES if f.kind != F.Kind.NUMERIC]
    buckets, emb_dim, hidden = 101, 4, 32
    width = 2 * n_num + emb_dim * len(cats)

    class Demo(tf.Module):
        def __init__(self):
            super().__init__()
            self.mean = tf.constant(rng.normal(0, 1, n_num).astype("float32"))
            self.scale = tf.constant(rng.uniform(0.5, 2.0, n_num).astype("float32"))
            self.emb = tf.Variable(rng.normal(0, 0.3, (len(cats), buckets, emb_dim)).astype("float32"))
            self.w1 = tf.Variable(rng.normal(0, 0.3, (width, hidden)).astype("float32"))
            self.b1 = tf.Variable(np.zeros(hidden, "float32"))
            self.w2 = tf.Variable(rng.normal(0, 0.3, (hidden, 1)).astype("float32"))

        def _prob(self, inputs):
            nums = tf.stack([inputs[f.name] for f in F.features_of(F.Kind.NUMERIC)], axis=1)
            missing = tf.math.is_nan(nums)
            nums = (
                tf.where(missing, tf.zeros_like(nums), tf.math.log1p(tf.abs(nums)) - self.mean) / self.scale
            )
            parts = [nums, tf.cast(missing, tf.float32)]
            for i, f in enumerate(cats):
                x = inputs[f.name]
                if f.kind == F.Kind.CATEGORICAL_STR:
                    idx = tf.strings.to_hash_bucket_fast(x, buckets)
                else:
                    idx = tf.math.floormod(x, buckets)
                parts.append(tf.gather(self.emb[i], idx))
            h = tf.nn.relu(tf.matmul(tf.concat(parts, axis=1), self.w1) + self.b1)
            return tf.sigmoid(tf.squeeze(tf.matmul(h, self.w2), axis=1))

        @tf.function(
            input_signature=[
                {f.name: tf.TensorSpec([None], _TF_DTYPES[f.dtype], name=f.name) for f in F.MODEL_FEATURES}
            ]
        )
        def predict_raw(self, inputs):
            return {"probability": self._prob(inputs)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serving_default(self, examples):
            spec = {
                f.name: tf.io.FixedLenFeature([], _TF_DTYPES[f.dtype], default_value=f.missing)
                for f in F.MODEL_FEATURES
            }
            return {"probability": self._prob(tf.io.parse_example(examples, spec))}

    module = Demo()
    raw = module.predict_raw.get_concrete_function()
    # Signatures with one named input per feature (keyword arguments), as the trainer exports them.
    named = tf.function(
        lambda **kw: module.predict_raw(kw),
        input_signature=None,
    ).get_concrete_function(
        **{f.name: tf.TensorSpec([None], _TF_DTYPES[f.dtype], name=f.name) for f in F.MODEL_FEATURES}
    )
    del raw
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(
        module,
        str(out),
        signatures={"serving_default": module.serving_default.get_concrete_function(), "predict_raw": named},
    )
    meta = {
        "model": "kfloop demo model (untrained, seeded weights)",
        "seed": seed,
        "version_tag": version_tag,
        "features": F.spec(),
        "label": F.LABEL.name,
    }
    (out / "kfloop_metadata.json").write_text(json.dumps(meta, indent=2))
    return str(out)
