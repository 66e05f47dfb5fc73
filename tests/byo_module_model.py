"""A hand-written ``tf.Module`` model (no Keras) that follows kfloop's model contract, for any spec.

Bring-your-own-model fixture: logistic regression over the spec's numeric features (normalised with the
training split's mean / std, NaN imputed by the mean, plus a missing indicator) and booleans (0/1 plus a
missing indicator), fitted with plain ``tf.Variable``s and gradient descent. Categorical inputs are
accepted (the contract wants one input per feature) and ignored by the weights.

- :func:`train` is a trainer in the ``spec.trainer = "tests.byo_module_model:train"`` contract.
- :func:`export` writes the SavedModel, optionally broken on purpose (``breakage``) to test the checks.
- :data:`SPEC_YAML` and :func:`synthetic_frame`: a small non-taxi spec (ISO time, "yes"/"no" label, "NA"
  token, a boolean, a string categorical) and Dataset-form rows of it whose label depends on the numerics.

Importable from the serving env too: only the standard library at module level (numpy, pandas and
TensorFlow inside the functions; kfloop.contract's names only).
"""

from __future__ import annotations

from kfloop import contract

#: A synthetic churn dataset's spec (no column of it is a taxi column).
SPEC_YAML = """\
name: churn-demo
task: binary
description: Synthetic customers; does the customer churn?
missing_values: ["", "NA"]
time: {column: signup_time, format: iso8601}
label: {column: churned, positive: "yes"}
exclude: [customer_id]
columns:
  - {name: tenure_months, kind: numeric, range: [0, 120]}
  - {name: monthly_spend, kind: numeric, nullable: true, range: [0, null]}
  - {name: plan, kind: categorical_string, domain: [basic, plus, pro]}
  - {name: support_calls, kind: categorical_int, range: [0, 9]}
  - {name: promo, kind: boolean, nullable: true}
slices: [plan]
drift:
  default: {threshold: 0.1, mode: trigger}
trainer: keras
"""

#: What :func:`export` can break on purpose.
BREAKAGES = ("missing_signature", "wrong_dtype", "out_of_range")


def synthetic_frame(rows: int, seed: int = 0, start: int = 1_420_070_400):
    """Dataset-form rows of :data:`SPEC_YAML` (time as epoch seconds, label 0/1, missing = NaN / <NA>).

    The label is drawn from a logistic model of tenure, spend and promo, so a linear model learns it.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 120, rows).round(1)
    spend = rng.gamma(2.0, 30.0, rows).round(2)
    promo = rng.integers(0, 2, rows)
    logit = 1.5 - 0.04 * tenure + 0.02 * spend - 1.0 * promo
    churned = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "signup_time": pd.array(start + np.sort(rng.integers(0, 86_400 * 365, rows)), dtype="Int64"),
            "tenure_months": tenure.astype("float64"),
            "monthly_spend": np.where(rng.uniform(size=rows) < 0.05, np.nan, spend),
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
            "support_calls": pd.array(rng.integers(0, 10, rows), dtype="Int64"),
            "promo": pd.array(np.where(rng.uniform(size=rows) < 0.05, -1, promo), dtype="Int64"),
            "churned": pd.array(churned, dtype="Int64"),
        }
    )
    frame.loc[frame["promo"] == -1, "promo"] = pd.NA
    return frame


def _design(spec, inputs: dict, stats: dict):
    """The regression's design matrix (tf ops) of encoded inputs."""
    import tensorflow as tf

    cols = []
    for f in spec.model_features:
        x = inputs[f.name]
        if f.kind.value == "numeric":
            missing = tf.math.is_nan(x)
            mean, std = stats[f.name]
            x = tf.where(missing, tf.constant(mean, tf.float32), x)
            cols += [(x - mean) / std, tf.cast(missing, tf.float32)]
        elif f.kind.value == "boolean":
            cols += [tf.cast(tf.equal(x, 1), tf.float32), tf.cast(tf.equal(x, f.missing), tf.float32)]
    if not cols:
        n = tf.shape(inputs[spec.model_features[0].name])[0]
        cols = [tf.zeros([n], tf.float32)]
    return tf.stack(cols, axis=1)


def build(spec, train_frame, steps: int = 300, learning_rate: float = 0.5):
    """Fits the logistic regression on a Dataset-form training frame; returns ``(module, stats)``."""
    import numpy as np
    import tensorflow as tf

    enc = contract.encode_inputs(train_frame, spec)
    stats = {}
    for f in spec.model_features:
        if f.kind.value == "numeric":
            x = enc[f.name][~np.isnan(enc[f.name])].astype(np.float64)
            mean = float(x.mean()) if x.size else 0.0
            std = float(x.std()) if x.size and x.std() > 1e-6 else 1.0
            stats[f.name] = (mean, std)
    tensors = {k: tf.constant(v) for k, v in enc.items()}
    design = _design(spec, tensors, stats)
    y = tf.constant(train_frame[spec.label.name].astype(int).to_numpy(dtype=np.float32))
    module = tf.Module()
    module.w = tf.Variable(tf.zeros([design.shape[1]]), name="w")
    module.b = tf.Variable(0.0, name="b")
    for _ in range(steps):
        with tf.GradientTape() as tape:
            logits = tf.linalg.matvec(design, module.w) + module.b
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        gw, gb = tape.gradient(loss, [module.w, module.b])
        module.w.assign_sub(learning_rate * gw)
        module.b.assign_sub(learning_rate * gb)
    return module, stats


def export(spec, train_frame, output_dir: str, breakage: str | None = None, steps: int = 300) -> None:
    """Fits and exports the module with the contract's signatures (or broken as ``breakage`` says).

    Args:
        spec: The dataset spec.
        train_frame: Dataset-form training rows.
        output_dir: Where the SavedModel goes.
        breakage: None, or one of :data:`BREAKAGES`: ``missing_signature`` (no serving_default),
            ``wrong_dtype`` (the first int64 / float32 input takes the other dtype), ``out_of_range``
            (returns logits instead of probabilities).
    """
    import tensorflow as tf

    if breakage not in (None, *BREAKAGES):
        raise ValueError(f"breakage must be one of {BREAKAGES}, got {breakage!r}")
    module, stats = build(spec, train_frame, steps=steps)
    dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    raw_dtypes = {f.name: dtypes[f.dtype] for f in spec.model_features}
    flipped = None
    if breakage == "wrong_dtype":
        flipped = next(f.name for f in spec.model_features if f.dtype in ("float32", "int64"))
        raw_dtypes[flipped] = tf.int64 if raw_dtypes[flipped] == tf.float32 else tf.float32
    raw_spec = {name: tf.TensorSpec([None], dt, name=name) for name, dt in raw_dtypes.items()}
    parse_spec = {
        f.name: tf.io.FixedLenFeature([], dtypes[f.dtype], default_value=f.missing)
        for f in spec.model_features
    }
    # out_of_range: a "probability" above 1 on every row (a model that forgot its sigmoid, and worse).
    squash = (lambda z: 2.0 + tf.abs(z)) if breakage == "out_of_range" else tf.sigmoid

    def score(features):
        if flipped is not None:
            want = dtypes[spec.feature(flipped).dtype]
            features = {**features, flipped: tf.cast(features[flipped], want)}
        logits = tf.linalg.matvec(_design(spec, features, stats), module.w) + module.b
        return {contract.OUTPUT_KEY: tf.reshape(squash(logits), [-1])}

    module.predict_raw = tf.function(score, input_signature=[raw_spec])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
    def serve_examples(examples):
        parsed = tf.io.parse_example(examples, parse_spec)
        if flipped is not None:
            parsed = {**parsed, flipped: tf.cast(parsed[flipped], raw_dtypes[flipped])}
        return module.predict_raw(parsed)

    module.serve_examples = serve_examples
    signatures = {contract.RAW_SIGNATURE: module.predict_raw.get_concrete_function()}
    if breakage != "missing_signature":
        signatures[contract.EXAMPLES_SIGNATURE] = serve_examples.get_concrete_function()
    tf.saved_model.save(module, output_dir, signatures=signatures)


def train(train, eval, spec, hyperparameters: dict, output_dir: str) -> None:
    """The bring-your-own-model trainer contract: fit on ``train`` and export to ``output_dir``.

    Hyperparameters: ``steps`` (gradient steps, default 300).
    """
    unknown = sorted(set(hyperparameters) - {"steps"})
    if unknown:
        raise ValueError(f"unknown hyperparameter(s): {', '.join(unknown)}")
    export(spec, train, output_dir, steps=int(hyperparameters.get("steps", 300)))


def write_splits(directory, train_rows: int = 1500, eval_rows: int = 500) -> dict:
    """Writes :data:`SPEC_YAML`, Dataset-form train / eval CSVs and a stand-in schema into ``directory``.

    Returns:
        ``{"spec": path, "train": path, "eval": path, "schema": path}``.
    """
    from pathlib import Path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = {k: str(d / n) for k, n in (("spec", "spec.yaml"), ("train", "train.csv"), ("eval", "eval.csv"))}
    paths["schema"] = str(d / "schema.pbtxt")
    Path(paths["spec"]).write_text(SPEC_YAML)
    synthetic_frame(train_rows, seed=1).to_csv(paths["train"], index=False, na_rep="")
    synthetic_frame(eval_rows, seed=2, start=1_451_606_400).to_csv(paths["eval"], index=False, na_rep="")
    Path(paths["schema"]).write_text('feature { name: "tenure_months" type: FLOAT }\n')
    return paths
