"""The prediction and feedback log per task (issue 26): output and label columns, round trips, refusals."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfloop import predlog as P
from kfloop import spec as kspec
from kfloop.spec import Kind
from tests import synthetic

MODEL = "visits"
DAY = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
END = DAY + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def specs():
    return {t: kspec.loads(y) for t, y in synthetic.SPECS.items()}


def columns(spec, n: int) -> dict:
    out = {}
    for f in spec.model_features:
        if f.kind == Kind.NUMERIC:
            out[f.name] = np.linspace(1.0, 2.0, n).astype(np.float32)
        elif f.kind in (Kind.CATEGORICAL_INT, Kind.BOOLEAN):
            out[f.name] = np.arange(n, dtype=np.int64) % 2
        else:
            out[f.name] = np.array(["basic"] * n, dtype=object)
    return out


def outputs(task: str, n: int) -> np.ndarray:
    if task == "multiclass":
        base = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
        return np.array([np.roll(base, i) for i in range(n)], dtype=np.float32).reshape(n, 4)
    if task == "regression":
        return np.linspace(-12.5, 80.25, n).astype(np.float32)
    return np.linspace(0.1, 0.9, n).astype(np.float32)


def scan_all(root, kind, **kw) -> pa.Table | None:
    batches = list(P.scan(str(root), MODEL, kind, DAY, END, **kw))
    return pa.Table.from_batches(batches) if batches else None


# -- schemas ----------------------------------------------------------------------------------------------


def test_output_column_and_metadata_per_task(specs):
    b, r, m = (P.prediction_schema(specs[t]) for t in ("binary", "regression", "multiclass"))
    assert b.names[-1] == "probability" and b.field("probability").type == pa.float32()
    assert r.names[-1] == "prediction" and r.field("prediction").type == pa.float32()
    assert m.names[-1] == "probabilities" and m.field("probabilities").type == pa.list_(pa.float32())
    # Binary schemas carry no task metadata (files stay exactly as before tasks); the others name theirs.
    assert P.TASK_KEY not in b.metadata and P.CLASSES_KEY not in b.metadata
    assert r.metadata[P.TASK_KEY] == b"regression" and P.CLASSES_KEY not in r.metadata
    assert m.metadata[P.TASK_KEY] == b"multiclass"
    assert json.loads(m.metadata[P.CLASSES_KEY]) == synthetic.GOALS
    assert [P.prediction_task(s) for s in (b, r, m)] == ["binary", "regression", "multiclass"]
    assert P.schema_classes(m) == tuple(synthetic.GOALS) and P.schema_classes(b) is None
    # The features are the same for every task: only the output column differs.
    assert P.feature_names(b) == P.feature_names(r) == P.feature_names(m)
    assert set(P.OUTPUT_COLUMNS.values()) <= set(P.FIXED_COLUMNS)
    assert [P.output_column(specs[t]) for t in P.TASKS] == ["probability", "prediction", "probabilities"]


def test_binary_schemas_are_the_ones_before_tasks(specs):
    """The binary prediction and feedback schemas, field by field and with their metadata, as written
    before tasks existed."""
    b = P.prediction_schema(specs["binary"])
    assert b.field("probability") == pa.field("probability", pa.float32(), nullable=False)
    assert set(b.metadata) == {P.SPEC_NAME_KEY, P.SPEC_DIGEST_KEY}
    assert P.feedback_schema(specs["binary"]) is P.FEEDBACK_SCHEMA
    assert P.feedback_schema(None) is P.FEEDBACK_SCHEMA and P.FEEDBACK_SCHEMA.metadata is None
    assert P.FEEDBACK_SCHEMA.field("label").type == pa.int8()


def test_feedback_schema_label_type_per_task(specs):
    assert P.feedback_schema(specs["regression"]).field("label").type == pa.float64()
    assert P.feedback_schema("regression").metadata[P.TASK_KEY] == b"regression"
    m = P.feedback_schema(specs["multiclass"])
    assert m.field("label").type == pa.int32() and m.metadata[P.TASK_KEY] == b"multiclass"
    assert json.loads(m.metadata[P.CLASSES_KEY]) == synthetic.GOALS
    assert P.feedback_schema(kspec.Task.MULTICLASS).field("label").type == pa.int32()
    assert m.names == P.FEEDBACK_SCHEMA.names
    with pytest.raises(P.LogError, match="task must be one of"):
        P.feedback_schema("ranking")


def test_a_feature_named_like_any_output_column_is_refused(specs):
    text = synthetic.SPEC_YAML.replace("- {name: age,", "- {name: prediction,")
    with pytest.raises(
        P.LogError, match=r"columns\[0\]\.name: 'prediction' is a column of the prediction log"
    ):
        P.prediction_schema(kspec.loads(text))


def test_normalize_needs_exactly_one_output_column_agreeing_with_the_task(specs):
    b = P.prediction_schema(specs["binary"])
    m = P.prediction_schema(specs["multiclass"])
    with pytest.raises(P.LogError, match="no output column"):
        P.normalize_prediction_schema(b.remove(b.get_field_index("probability")))
    both = b.append(pa.field("prediction", pa.float32()))
    with pytest.raises(P.LogError, match=r"output columns 'probability', 'prediction': .* exactly one"):
        P.normalize_prediction_schema(both)
    lying = b.with_metadata({**b.metadata, P.TASK_KEY: b"regression"})
    with pytest.raises(P.LogError, match="'probability' is the output of task binary.*regression"):
        P.normalize_prediction_schema(lying)
    flat = m.set(m.get_field_index("probabilities"), pa.field("probabilities", pa.float32()))
    with pytest.raises(P.LogError, match="'probabilities' has type float.*list of floats"):
        P.normalize_prediction_schema(flat)
    text = m.set(m.get_field_index("probabilities"), pa.field("probabilities", pa.list_(pa.string())))
    with pytest.raises(P.LogError, match="'probabilities' has type list<item: string>"):
        P.normalize_prediction_schema(text)
    # Widths and list layouts normalise to the log's types.
    wide = m.set(m.get_field_index("probabilities"), pa.field("probabilities", pa.large_list(pa.float64())))
    assert P.normalize_prediction_schema(wide).field("probabilities").type == pa.list_(pa.float32())


# -- prediction tables --------------------------------------------------------------------------------------


def test_prediction_table_per_task_takes_the_tasks_output_shape(specs):
    for task, spec in specs.items():
        t = P.prediction_table("r", DAY.timestamp(), "v1", columns(spec, 3), outputs(task, 3), schema=spec)
        assert t.schema == P.prediction_schema(spec)
        assert t.schema.metadata == P.prediction_schema(spec).metadata
        got = t.column(P.output_column(spec)).to_pylist()
        assert np.allclose(np.asarray(got, dtype=np.float64), outputs(task, 3)), task
    m = P.prediction_table(
        "r", 0, "v1", columns(specs["multiclass"], 2), outputs("multiclass", 2), schema=specs["multiclass"]
    )
    assert [len(v) for v in m.column("probabilities").to_pylist()] == [4, 4]
    # [n, 1] is one output per row.
    r = P.prediction_table(
        "r", 0, "v1", columns(specs["regression"], 2), [[1.5], [2.5]], schema=specs["regression"]
    )
    assert r.column("prediction").to_pylist() == [1.5, 2.5]


def test_prediction_table_refuses_outputs_of_another_shape(specs):
    m, r, b = specs["multiclass"], specs["regression"], specs["binary"]
    with pytest.raises(P.LogError, match=r"probabilities: .* \[n, 4\] .*got shape \[3\]"):
        P.prediction_table("r", 0, "v1", columns(m, 3), [0.1, 0.2, 0.3], schema=m)
    with pytest.raises(P.LogError, match=r"probabilities: .*got shape \[3, 3\]"):
        P.prediction_table("r", 0, "v1", columns(m, 3), np.full((3, 3), 1 / 3), schema=m)
    with pytest.raises(P.LogError, match=r"prediction: a regression model has one output per row .*\[3, 4\]"):
        P.prediction_table("r", 0, "v1", columns(r, 3), outputs("multiclass", 3), schema=r)
    with pytest.raises(P.LogError, match=r"probability: a binary model has one output per row"):
        P.prediction_table("r", 0, "v1", columns(b, 3), outputs("multiclass", 3), schema=b)
    with pytest.raises(P.LogError, match="column 'age' has 3 values for 2 predictions"):
        P.prediction_table("r", 0, "v1", columns(r, 3), [1.0, 2.0], schema=r)
    with pytest.raises(P.LogError, match="probabilities: the multiclass outputs must be numbers"):
        P.prediction_table("r", 0, "v1", columns(m, 1), [["a", "b", "c", "d"]], schema=m)


# -- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_predictions_round_trip_per_task(tmp_path, specs, task):
    spec = specs[task]
    t = P.prediction_table("r1", DAY.timestamp() + 60, "v1", columns(spec, 5), outputs(task, 5), schema=spec)
    (uri,) = P.write_table(str(tmp_path), MODEL, P.PREDICTIONS, t, writer_id="w")
    on_disk = pq.read_schema(uri)
    assert on_disk.metadata.get(P.TASK_KEY) == (None if task == "binary" else task.encode())
    for kw in ({}, {"schema": spec}):  # each file as it is, and conformed to the spec
        got = scan_all(tmp_path, P.PREDICTIONS, **kw)
        assert got.num_rows == 5 and got.schema == P.prediction_schema(spec), kw
        assert P.prediction_task(got.schema) == task
        assert got.column(P.output_column(spec)).to_pylist() == t.column(P.output_column(spec)).to_pylist()
    key = scan_all(tmp_path, P.PREDICTIONS, columns=["request_id", "row", P.output_column(spec)])
    assert key.column_names == ["request_id", "row", P.output_column(spec)]
    assert P.read_file(uri).column(P.output_column(spec)).to_pylist() == t.column(-1).to_pylist()
    frame = pq.read_table(uri).to_pandas()  # generic readers see the list column too
    assert len(frame[P.output_column(spec)].iloc[0] if task == "multiclass" else [0]) in (1, 4)


def test_a_file_of_another_task_or_classes_is_skipped_and_named(tmp_path, specs):
    for task in ("binary", "multiclass"):
        spec = specs[task]
        t = P.prediction_table(
            f"r-{task}", DAY.timestamp(), "v1", columns(spec, 2), outputs(task, 2), schema=spec
        )
        P.write_table(str(tmp_path), MODEL, P.PREDICTIONS, t, writer_id=task)
    rep = P.ScanReport()
    got = scan_all(tmp_path, P.PREDICTIONS, schema=specs["multiclass"], report=rep)
    assert set(got.column("request_id").to_pylist()) == {"r-multiclass"}
    ((uri, reason),) = rep.corrupt
    assert "binary-" in uri and "a binary predictions file, read as multiclass" in reason
    # A multiclass file of other classes is not read as this spec's.
    other = kspec.loads(synthetic.MULTICLASS_SPEC_YAML.replace("weight]", "speed]"))
    rep = P.ScanReport()
    assert scan_all(tmp_path, P.PREDICTIONS, schema=other, report=rep) is None
    assert any("classes" in r and "'weight'" in r for _, r in rep.corrupt)


# -- feedback -----------------------------------------------------------------------------------------------


def test_feedback_table_label_type_per_task(specs):
    r = P.feedback_table(["a", "a"], [0, 1], [12.5, -3], DAY.timestamp(), spec=specs["regression"])
    assert r.schema == P.feedback_schema(specs["regression"]) and r.column("label").type == pa.float64()
    assert r.column("label").to_pylist() == [12.5, -3.0]
    m = P.feedback_table(["a", "b"], [0, 0], [3, 0], DAY.timestamp(), spec=specs["multiclass"])
    assert m.column("label").type == pa.int32() and m.column("label").to_pylist() == [3, 0]
    assert m.schema.metadata[P.TASK_KEY] == b"multiclass"
    b = P.feedback_table(["a"], [0], [1], DAY.timestamp())
    assert b.schema == P.FEEDBACK_SCHEMA and b.column("label").type == pa.int8()
    assert P.feedback_table([], [], [], 0, spec=specs["multiclass"]).num_rows == 0


@pytest.mark.parametrize(
    "task, labels, want",
    [
        ("regression", ["3.5"], "must be a finite number, got '3.5'"),
        ("regression", [True], "must be a finite number"),
        ("regression", [float("nan")], "must be a finite number, got nan"),
        ("regression", [float("inf")], "must be a finite number"),
        ("multiclass", [4], r"must be a class index in 0\.\.3, got 4"),
        ("multiclass", [-1], r"must be a class index in 0\.\.3"),
        ("multiclass", [1.0], r"must be a class index in 0\.\.3, got 1\.0"),
        ("multiclass", ["cardio"], r"must be a class index in 0\.\.3, got 'cardio'"),
        ("binary", [2], "must be 0 or 1"),
    ],
)
def test_feedback_table_refuses_a_label_of_another_type_naming_request_and_row(specs, task, labels, want):
    ids, rows = ["ok", "bad"], [0, 7]
    good = {"regression": 1.0, "multiclass": 2, "binary": 1}[task]
    with pytest.raises(P.LogError, match=f"label of request 'bad' row 7 {want}"):
        P.feedback_table(ids, rows, np.array([good, *labels], dtype=object), 0, spec=specs[task])


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_feedback_round_trip_per_task(tmp_path, specs, task):
    spec = specs[task]
    labels = {"binary": [1, 0, 1], "regression": [4.25, -1.5, 1e6], "multiclass": [0, 3, 2]}[task]
    t = P.feedback_table(["a", "a", "b"], [0, 1, 0], labels, DAY.timestamp() + 90, DAY.timestamp(), spec=spec)
    P.write_table(str(tmp_path), MODEL, P.FEEDBACK, t, writer_id="fb", schema=None)
    for kw in ({}, {"schema": spec}, {"schema": task}):
        got = scan_all(tmp_path, P.FEEDBACK, **kw)
        assert got.column("label").to_pylist() == labels, kw
        assert got.column("label").type == P.LABEL_TYPES[task]
        assert got.column("delay_s").to_pylist() == [90.0] * 3
    cols = scan_all(tmp_path, P.FEEDBACK, columns=["request_id", "row", "label", "timestamp"])
    assert cols.column_names == ["request_id", "row", "label", "timestamp"]


def test_feedback_of_another_task_is_skipped_when_a_task_is_given(tmp_path, specs):
    m = P.feedback_table(["a"], [0], [3], DAY.timestamp(), spec=specs["multiclass"])
    b = P.feedback_table(["b"], [0], [1], DAY.timestamp())
    r = P.feedback_table(["c"], [0], [2.5], DAY.timestamp(), spec=specs["regression"])
    for i, t in enumerate((m, b, r)):
        P.write_table(str(tmp_path), MODEL, P.FEEDBACK, t, writer_id=f"w{i}")
    for task, rid in (("binary", "b"), ("multiclass", "a"), ("regression", "c")):
        rep = P.ScanReport()
        got = scan_all(tmp_path, P.FEEDBACK, schema=specs[task], report=rep)
        assert got.column("request_id").to_pylist() == [rid], task
        assert len(rep.corrupt) == 2 and all(f"read as {task}" in why for _, why in rep.corrupt)


def test_write_table_casts_feedback_to_its_tasks_schema(tmp_path, specs):
    """A multiclass table whose label came in wider (int64) is written as the task's int32."""
    t = P.feedback_table(["a"], [0], [2], DAY.timestamp(), spec=specs["multiclass"])
    wide = t.set_column(2, pa.field("label", pa.int64(), nullable=False), pa.array([2], pa.int64()))
    (uri,) = P.write_table(str(tmp_path), MODEL, P.FEEDBACK, wide)
    assert pq.read_schema(uri).field("label").type == pa.int32()
    assert pq.read_schema(uri).metadata[P.TASK_KEY] == b"multiclass"
