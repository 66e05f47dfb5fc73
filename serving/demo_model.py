"""A small, deterministic SavedModel for a given dataset spec, with the model contract's signatures.

It is not trained: fixed, seeded weights turn the spec's model features into the task's output through the
same kind of graph the real model has (missing-value imputation, hashed categorical embeddings, two dense
layers), so serving can be tested and measured without the pipeline env, on any spec (tests and benchmarks
use the taxi example's and synthetic ones). The directory follows :mod:`kfloop.contract`; the output
(:func:`kfloop.contract.output_key`) per the spec's task: binary ``probability`` [n] (a sigmoid), regression
``prediction`` [n] (a linear value), multiclass ``probabilities`` [n, K] (a softmax over the spec's classes).

* ``predict_raw``: one input per model feature of the spec → the output.
* ``serving_default``: ``examples`` (serialized ``tf.Example``) → the output.
* ``spec.yaml`` (the spec) and ``kfloop_metadata.json`` (written last).
"""

from __future__ import annotations

import json
from pathlib import Path

from kfloop import contract
from kfloop import spec as S
from kfloop.spec import Kind

_TF_DTYPES = {"float32": "float32", "int64": "int64", "string": "string"}


def build(model_dir: str | Path, spec, seed: int = 0, version_tag: str = "demo") -> str:
    """Saves the demo model of ``spec`` to ``model_dir`` (with ``spec.yaml`` and ``kfloop_metadata.json``);
    returns the directory.

    Args:
        model_dir: Where to write the SavedModel (created).
        spec: The :class:`kfloop.spec.DatasetSpec` (or its YAML / a path) whose model features are the inputs.
        seed: Weight seed: two seeds give two different models (hot-reload tests tell them apart).
        version_tag: Free text recorded in the metadata file.
    """
    import numpy as np
    import tensorflow as tf

    if not isinstance(spec, S.DatasetSpec):
        spec = S.load(spec)
    features = spec.model_features
    numeric = spec.features_of(Kind.NUMERIC)
    rng = np.random.default_rng(seed)
    n_num = len(numeric)
    cats = [f for f in features if f.kind != Kind.NUMERIC]
    buckets, emb_dim, hidden = 101, 4, 32
    width = 2 * n_num + emb_dim * len(cats)
    task = spec.task.value
    key = contract.output_key(spec)
    n_out = spec.n_classes if task == "multiclass" else 1

    class Demo(tf.Module):
        def __init__(self):
            super().__init__()
            self.mean = tf.constant(rng.normal(0, 1, n_num).astype("float32"))
            self.scale = tf.constant(rng.uniform(0.5, 2.0, n_num).astype("float32"))
            self.emb = tf.Variable(rng.normal(0, 0.3, (len(cats), buckets, emb_dim)).astype("float32"))
            self.w1 = tf.Variable(rng.normal(0, 0.3, (width, hidden)).astype("float32"))
            self.b1 = tf.Variable(np.zeros(hidden, "float32"))
            self.w2 = tf.Variable(rng.normal(0, 0.3, (hidden, n_out)).astype("float32"))

        def _prob(self, inputs):
            parts = []
            if n_num:
                nums = tf.stack([inputs[f.name] for f in numeric], axis=1)
                missing = tf.math.is_nan(nums)
                nums = (
                    tf.where(missing, tf.zeros_like(nums), tf.math.log1p(tf.abs(nums)) - self.mean)
                    / self.scale
                )
                parts += [nums, tf.cast(missing, tf.float32)]
            for i, f in enumerate(cats):
                x = inputs[f.name]
                if f.kind == Kind.CATEGORICAL_STR:
                    idx = tf.strings.to_hash_bucket_fast(x, buckets)
                else:
                    idx = tf.math.floormod(x, buckets)
                parts.append(tf.gather(self.emb[i], idx))
            h = tf.nn.relu(tf.matmul(tf.concat(parts, axis=1), self.w1) + self.b1)
            if task == "multiclass":
                return tf.nn.softmax(tf.matmul(h, self.w2), axis=1)
            if task == "regression":  # label units: about 10 +- 5
                return 10.0 + 5.0 * tf.squeeze(tf.matmul(h, self.w2), axis=1)
            return tf.sigmoid(tf.squeeze(tf.matmul(h, self.w2), axis=1))

        @tf.function(
            input_signature=[
                {f.name: tf.TensorSpec([None], _TF_DTYPES[f.dtype], name=f.name) for f in features}
            ]
        )
        def predict_raw(self, inputs):
            return {key: self._prob(inputs)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
        def serving_default(self, examples):
            parse = {
                f.name: tf.io.FixedLenFeature([], _TF_DTYPES[f.dtype], default_value=f.missing)
                for f in features
            }
            return {key: self._prob(tf.io.parse_example(examples, parse))}

    module = Demo()
    raw = module.predict_raw.get_concrete_function()
    # Signatures with one named input per feature (keyword arguments), as the trainer exports them.
    named = tf.function(
        lambda **kw: module.predict_raw(kw),
        input_signature=None,
    ).get_concrete_function(
        **{f.name: tf.TensorSpec([None], _TF_DTYPES[f.dtype], name=f.name) for f in features}
    )
    del raw
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(
        module,
        str(out),
        signatures={
            contract.EXAMPLES_SIGNATURE: module.serving_default.get_concrete_function(),
            contract.RAW_SIGNATURE: named,
        },
    )
    (out / contract.SPEC_FILE).write_text(S.dump(spec), encoding="utf-8")
    meta = {
        "model": "kfloop demo model (untrained, seeded weights)",
        "seed": seed,
        "version_tag": version_tag,
        "spec": spec.name,
        "spec_sha256": spec.digest(),
        "features": spec.describe(),
        "label": spec.label.name,
    }
    (out / contract.METADATA_FILE).write_text(json.dumps(meta, indent=2))  # last: the export is complete
    return str(out)
