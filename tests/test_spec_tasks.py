"""The spec's ``task``: regression and multiclass labels, from the YAML to Dataset form and the schema."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from kfloop import clean
from kfloop import spec as S
from kfloop.tfdv import schema as tfdv_schema
from tests import synthetic


def _raw(task: str, n: int = 120) -> pd.DataFrame:
    text = synthetic.csv_text(n)
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def specs():
    return {t: S.loads(y) for t, y in synthetic.SPECS.items()}


def test_each_task_has_its_label_kind_classes_and_dataset_form(specs):
    b, r, m = specs["binary"], specs["regression"], specs["multiclass"]
    assert (b.task, b.label.kind, b.n_classes, b.classes) == (S.Task.BINARY, S.Kind.LABEL, 2, ())
    assert (r.task, r.label.kind, r.label.dtype, r.n_classes) == (
        S.Task.REGRESSION,
        S.Kind.TARGET,
        "float32",
        0,
    )
    assert (m.task, m.label.kind, m.n_classes) == (S.Task.MULTICLASS, S.Kind.LABEL, 4)
    assert m.classes == tuple(synthetic.GOALS) and m.class_name(2) == "mobility"
    with pytest.raises(IndexError):
        m.class_name(4)


def test_label_values_per_task(specs):
    raw = _raw("any")
    goal = specs["multiclass"].label_values(raw)
    assert str(goal.dtype) == "Int64"
    assert goal.tolist() == [synthetic.GOALS.index(g) for g in raw["goal"]]
    minutes = specs["regression"].label_values(raw)
    assert str(minutes.dtype) == "Float64"
    na = raw["minutes"] == "NA"
    assert na.any() and minutes[na].isna().all()
    assert minutes[~na].tolist() == pytest.approx([float(x) for x in raw["minutes"][~na]])


def test_an_unknown_class_or_a_non_number_names_the_line_and_value(specs):
    raw = _raw("any", 20)
    raw.loc[5, "goal"] = "Cardio"
    with pytest.raises(
        S.SpecDataError, match=r"label.classes: goal: line 7: 'Cardio' is not one of the classes"
    ):
        specs["multiclass"].label_values(raw)
    raw.loc[3, "minutes"] = "12 min"
    with pytest.raises(S.SpecDataError, match=r"minutes: line 5: '12 min' is not a number"):
        specs["regression"].label_values(raw)


def test_integer_classes_compare_numerically():
    text = synthetic.MULTICLASS_SPEC_YAML.replace(
        "classes: [strength, cardio, mobility, weight]", "classes: [3, 1, 2]"
    )
    spec = S.loads(text)
    raw = pd.DataFrame({"goal": ["1", "2.0", "3", "NA"]})
    assert spec.label_values(raw).tolist() == [1, 2, 0, pd.NA]
    assert spec.label_of(2) == 2 and spec.label_of("3") == 0
    with pytest.raises(S.SpecDataError, match=r"4 is not one of the classes \[3, 1, 2\]"):
        spec.label_of(4)


@pytest.mark.parametrize(
    ("task", "value", "expected"),
    [
        ("multiclass", "cardio", 1),
        ("multiclass", "weight", 3),
        ("regression", 12, 12.0),
        ("regression", -3.5, -3.5),
    ],
)
def test_label_of_takes_the_tasks_label(specs, task, value, expected):
    got = specs[task].label_of(value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("task", "value", "message"),
    [
        ("multiclass", "Cardio", "is not one of the classes"),
        ("multiclass", 1, "is not one of the classes"),
        ("multiclass", True, "is not one of the classes"),
        ("multiclass", "NA", "missing"),
        ("regression", "3.5", "is not a finite number"),
        ("regression", True, "is not a finite number"),
        ("regression", float("inf"), "is not a finite number"),
        ("regression", None, "is not a finite number"),
    ],
)
def test_label_of_refuses_the_wrong_type_naming_the_label(specs, task, value, message):
    with pytest.raises(S.SpecDataError, match=message) as info:
        specs[task].label_of(value)
    assert info.value.column == specs[task].label_spec.column


BAD = [
    (
        "binary",
        'label: {column: churned, positive: "yes"}',
        "label: {column: churned}",
        "label.positive",
        "required",
    ),
    (
        "binary",
        'label: {column: churned, positive: "yes"}',
        'label: {column: churned, positive: "yes", classes: [a, b, c]}',
        "label.",
        "only a multiclass task has classes",
    ),
    (
        "regression",
        "label: {column: minutes}",
        'label: {column: minutes, positive: "1"}',
        "label.positive",
        "task regression",
    ),
    (
        "regression",
        "label: {column: minutes}",
        "label: {column: minutes, derive: minutes > 3}",
        "label.derive",
        "task regression",
    ),
    (
        "regression",
        "label: {column: minutes}",
        "label: {column: minutes, classes: [a, b, c]}",
        "label.classes",
        "not allowed",
    ),
    (
        "multiclass",
        ", classes: [strength, cardio, mobility, weight]",
        "",
        "label.classes",
        "required with task multiclass",
    ),
    ("multiclass", "[strength, cardio, mobility, weight]", "[a, b]", "label.classes", "at least 3"),
    ("multiclass", "[strength, cardio, mobility, weight]", "[a, b, a]", "label.classes[2]", "listed twice"),
    (
        "multiclass",
        "[strength, cardio, mobility, weight]",
        "[a, 2, c]",
        "label.classes",
        "all strings or all integers",
    ),
    (
        "multiclass",
        "[strength, cardio, mobility, weight]",
        "[a, true, c]",
        "label.classes[1]",
        "YAML boolean",
    ),
]


@pytest.mark.parametrize(
    ("task", "old", "new", "key", "message"), BAD, ids=[f"{b[0]}:{b[3]}:{b[4][:20]}" for b in BAD]
)
def test_a_label_that_does_not_fit_the_task_is_refused_naming_the_key(task, old, new, key, message):
    text = synthetic.SPECS[task]
    assert old in text
    with pytest.raises(S.SpecError, match=message) as info:
        S.loads(text.replace(old, new), origin="s.yaml")
    assert f": {key}" in str(info.value)


def test_clean_writes_class_indices_and_numbers_and_reads_them_back(specs, tmp_path):
    raw = _raw("any", 80)
    for task, dtype in (("multiclass", "Int64"), ("regression", "Float64")):
        spec = specs[task]
        assert clean.is_raw(raw, spec)
        out = clean.clean(raw, spec)
        assert str(out[spec.label.name].dtype) == dtype
        pd.testing.assert_series_equal(
            out[spec.label.name], spec.label_values(raw).astype(dtype), check_names=False
        )
        # Dataset form reads back as itself (cleaning it changes nothing).
        text = out.to_csv(index=False, na_rep="")
        again_raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        assert not clean.is_raw(again_raw, spec)
        again = clean.clean(again_raw, spec)
        pd.testing.assert_series_equal(again[spec.label.name], out[spec.label.name])


def test_the_schema_types_the_label_per_task(specs):
    from tensorflow_metadata.proto.v0 import schema_pb2

    m = tfdv_schema.from_spec(schema_pb2.Schema(), specs["multiclass"])
    goal = next(f for f in m.feature if f.name == "goal")
    assert goal.type == schema_pb2.INT and (goal.int_domain.min, goal.int_domain.max) == (0, 3)
    assert list(goal.not_in_environment) == ["SERVING"] and not goal.HasField("drift_comparator")
    r = tfdv_schema.from_spec(schema_pb2.Schema(), specs["regression"])
    minutes = next(f for f in r.feature if f.name == "minutes")
    assert minutes.type == schema_pb2.FLOAT and minutes.WhichOneof("domain_info") is None
    assert list(minutes.not_in_environment) == ["SERVING"] and not minutes.HasField("drift_comparator")
