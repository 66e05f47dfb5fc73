"""The model contract per task: output keys, the tf.Example label, and check_model on hand-made models.

The models here are tiny ``tf.Module``s with the contract's two signatures whose output is whatever a
test asks for (no training), so every check of :func:`kfloop.contract.check_model` runs in well under a
second each.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest

from kfloop import clean, contract
from kfloop import spec as S
from tests import synthetic


@pytest.fixture(scope="module")
def specs():
    return {t: S.loads(y) for t, y in synthetic.SPECS.items()}


def export_fake(spec, out_dir: str, key: str, make) -> str:
    """Exports a SavedModel of ``spec``'s inputs whose signatures return ``{key: make(n)}`` (n = rows)."""
    import tensorflow as tf

    dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
    raw_spec = {f.name: tf.TensorSpec([None], dtypes[f.dtype], name=f.name) for f in spec.model_features}
    parse = {f.name: tf.io.FixedLenFeature([], dtypes[f.dtype], f.missing) for f in spec.model_features}
    first = spec.model_features[0].name

    module = tf.Module()

    @tf.function(input_signature=[raw_spec])
    def predict_raw(features):
        return {key: make(tf.shape(features[first])[0])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
    def serve(examples):
        return predict_raw(tf.io.parse_example(examples, parse))

    module.predict_raw, module.serve = predict_raw, serve
    tf.saved_model.save(
        module,
        out_dir,
        signatures={
            contract.RAW_SIGNATURE: predict_raw.get_concrete_function(),
            contract.EXAMPLES_SIGNATURE: serve.get_concrete_function(),
        },
    )
    return out_dir


def test_output_keys_per_task(specs):
    assert contract.OUTPUT_KEY == "probability"
    assert contract.OUTPUT_KEYS == {
        "binary": "probability",
        "regression": "prediction",
        "multiclass": "probabilities",
    }
    assert [contract.output_key(specs[t]) for t in ("binary", "regression", "multiclass")] == [
        "probability",
        "prediction",
        "probabilities",
    ]
    assert contract.output_key(S.Task.REGRESSION) == "prediction" and contract.output_key("multiclass")
    with pytest.raises(ValueError, match="task 'ranking' is not one of binary, regression, multiclass"):
        contract.output_key("ranking")
    assert contract.output_shape(specs["multiclass"]) == [None, 4]
    assert contract.output_shape(specs["regression"]) == [None]
    sig = contract.signature_description(specs["multiclass"])[contract.RAW_SIGNATURE]
    assert sig["outputs"] == {"probabilities": "float32"} and sig["output_shape"] == [-1, 4]
    assert contract.signature_description(specs["binary"])[contract.EXAMPLES_SIGNATURE] == {
        "inputs": {"examples": "string"},
        "outputs": {"probability": "float32"},
    }


def test_the_example_label_is_float_for_regression_and_int64_for_classes(specs):
    import tensorflow as tf

    raw = pd.read_csv(io.StringIO(synthetic.csv_text(6)), dtype=str, keep_default_na=False)
    for task, field in (("regression", "float_list"), ("multiclass", "int64_list"), ("binary", "int64_list")):
        spec = specs[task]
        frame = clean.clean(raw, spec)
        labels = frame[spec.label.name]
        examples = [tf.train.Example.FromString(b) for b in contract.to_examples(frame, spec)]
        for ex, want in zip(examples, labels.tolist(), strict=True):
            feat = ex.features.feature
            if pd.isna(want):
                assert spec.label.name not in feat
                continue
            assert feat[spec.label.name].WhichOneof("kind") == field, task
            got = getattr(feat[spec.label.name], field).value[0]
            assert got == pytest.approx(want, rel=1e-6), task
    # A regression value with a fraction survives (an int64 encoding would truncate it).
    spec = specs["regression"]
    frame = clean.clean(raw, spec)
    assert any(float(v) != int(v) for v in frame[spec.label.name].dropna())


def test_well_formed_outputs_of_every_task_pass(specs, tmp_path):
    import tensorflow as tf

    reg = export_fake(
        specs["regression"],
        str(tmp_path / "reg"),
        "prediction",
        lambda n: tf.fill([n], tf.constant(1234.5, tf.float32)),  # any finite number: label units
    )
    assert contract.check_model(reg, specs["regression"]) == []
    multi = export_fake(
        specs["multiclass"], str(tmp_path / "multi"), "probabilities", lambda n: tf.fill([n, 4], 0.25)
    )
    assert contract.check_model(multi, specs["multiclass"]) == []


@pytest.mark.parametrize(
    ("task", "key", "make", "problem"),
    [
        (
            "multiclass",
            "probabilities",
            "sigmoid_rows",  # [n, K] in [0, 1] but not a softmax
            "signature 'predict_raw': output 'probabilities' rows do not sum to 1 (sums from 2 to 2",
        ),
        (
            "multiclass",
            "probabilities",
            "three_columns",  # K = 4 in the spec
            "signature 'predict_raw': output 'probabilities' has 3 columns, the spec has 4 classes (strength,",
        ),
        (
            "multiclass",
            "probabilities",
            "negative",
            "signature 'predict_raw': output 'probabilities' is outside [0, 1]",
        ),
        (
            "multiclass",
            "probability",  # a binary model's output
            "vector",
            "signature 'predict_raw': no output 'probabilities' (the multiclass output; returns: probability;"
            " 'probability' is the output of a binary model)",
        ),
        (
            "regression",
            "prediction",
            "nan",
            "signature 'predict_raw': output 'prediction' is not finite on synthetic rows",
        ),
        (
            "regression",
            "prediction",
            "column",  # [n, 1] instead of [n]
            "signature 'predict_raw': output 'prediction' has shape [None, 1], expected [batch] for a regression"
            " model",
        ),
        (
            "regression",
            "probabilities",
            "rows",
            "signature 'predict_raw': no output 'prediction' (the regression output; returns: probabilities;"
            " 'probabilities' is the output of a multiclass model)",
        ),
        (
            "binary",
            "prediction",
            "vector",
            "signature 'predict_raw': no output 'probability' (the binary output; returns: prediction;",
        ),
    ],
)
def test_a_wrong_output_for_the_task_is_refused_naming_signature_and_output(
    specs, tmp_path, task, key, make, problem
):
    import tensorflow as tf

    makers = {
        "sigmoid_rows": lambda n: tf.fill([n, 4], 0.5),
        "three_columns": lambda n: tf.fill([n, 3], 1.0 / 3),
        "negative": lambda n: tf.concat([tf.fill([n, 1], -0.5), tf.fill([n, 3], 0.5)], axis=1),
        "vector": lambda n: tf.fill([n], 0.5),
        "nan": lambda n: tf.fill([n], float("nan")),
        "column": lambda n: tf.fill([n, 1], 3.0),
        "rows": lambda n: tf.fill([n, 4], 0.25),
    }
    model = export_fake(specs[task], str(tmp_path / "m"), key, makers[make])
    problems = contract.check_model(model, specs[task])
    assert any(p.startswith(problem) for p in problems), problems
    examples_twin = problem.replace("'predict_raw'", "'serving_default'")
    assert any(p.startswith(examples_twin) for p in problems), problems
    assert len(problems) == 2, problems  # one per signature


def test_a_class_count_other_than_the_specs_is_refused_when_called(specs, tmp_path):
    import tensorflow as tf

    five = S.loads(
        synthetic.MULTICLASS_SPEC_YAML.replace(
            "classes: [strength, cardio, mobility, weight]",
            "classes: [strength, cardio, mobility, weight, yoga]",
        )
    )
    assert five.n_classes == 5
    # No static column count: the call on synthetic rows finds 4 columns.
    model = export_fake(
        five,
        str(tmp_path / "m"),
        "probabilities",
        lambda n: tf.reshape(tf.fill([n * 4], 0.25), tf.stack([n, -1])),
    )
    problems = contract.check_model(model, five)
    assert problems == [
        f"signature {sig!r}: output 'probabilities' has shape [8, 4] for 8 rows, expected [8, 5]"
        for sig in ("predict_raw", "serving_default")
    ]
