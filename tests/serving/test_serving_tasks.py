"""The predictor per task (issue 26) on live servers over HTTP: regression and multiclass (string and integer
classes) demo models answer V1 and V2 in the task's shapes, describe them in the V2 metadata, take feedback
of the task's label type (and refuse others naming the field, writing nothing), and log rows per task that
:mod:`kfloop.predlog` reads."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow as pa
import pytest

from kfloop import predlog
from kfloop import spec as kspec
from tests import synthetic
from tests.serving.conftest import Server

pytestmark = pytest.mark.serving

httpx = pytest.importorskip("httpx")

NAME = "visits"
#: The multiclass spec with integer classes (the goal column holds 1, 2, 3).
INT_CLASSES_YAML = synthetic.MULTICLASS_SPEC_YAML.replace(
    f"classes: [{', '.join(synthetic.GOALS)}]", "classes: [3, 1, 2]"
)
CASES = {
    "regression": synthetic.REGRESSION_SPEC_YAML,
    "multiclass": synthetic.MULTICLASS_SPEC_YAML,
    "multiclass-int": INT_CLASSES_YAML,
}


def rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` V1 instances of the synthetic spec (missing values included)."""
    plans, cities = ["basic", "plus", "pro"], [*synthetic.CITIES, None]
    return [
        {
            "age": None if (i + seed) % 5 == 4 else 20.0 + 3 * i + seed,
            "plan": plans[(i + seed) % 3],
            "visits": (i * 3 + seed) % 10,
            "member": None if i % 4 == 3 else bool((i + seed) % 2),
            "city": cities[(i + seed) % len(cities)],
        }
        for i in range(n)
    ]


def v2_body(spec, instances: list[dict], request_id: str) -> dict:
    inputs = []
    for f in spec.model_features:
        dtype = "BOOL" if f.kind.value == "boolean" else f.v2_datatype
        data = [r[f.name] for r in instances]
        inputs.append({"name": f.name, "datatype": dtype, "shape": [len(instances)], "data": data})
    return {"id": request_id, "inputs": inputs}


class Case:
    def __init__(self, key: str, spec, model_dir: str, log_root: str, server: Server):
        self.key, self.spec, self.model_dir, self.log_root, self.server = (
            key,
            spec,
            model_dir,
            log_root,
            server,
        )
        self.task = spec.task.value

    def post(self, path: str, body, request_id: str | None = None):
        headers = {"x-request-id": request_id} if request_id else {}
        return httpx.post(f"{self.server.url}{path}", json=body, headers=headers, timeout=30)

    def predict(self, instances, request_id: str):
        r = self.post(f"/v1/models/{NAME}:predict", {"instances": instances}, request_id)
        assert r.status_code == 200, r.text
        return r.json()["predictions"]

    def feedback(self, items):
        return self.post(f"/v1/models/{NAME}:feedback", {"feedback": items})

    def scan(self, kind: str, **kw) -> pa.Table | None:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        batches = list(predlog.scan(self.log_root, NAME, kind, start, start + dt.timedelta(hours=2), **kw))
        return pa.Table.from_batches(batches) if batches else None


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """One live server per case (``--model-dir``, the log and feedback on), stopped at the end."""
    from serving import demo_model

    out = {}
    try:
        for key, text in CASES.items():
            tmp = tmp_path_factory.mktemp(key)
            spec = kspec.loads(text)
            model_dir = demo_model.build(tmp / "model", spec, seed=5)
            log_root = str(tmp / "log")
            server = Server(
                [
                    "--model-dir", model_dir, "--model-name", NAME, "--log-uri", log_root,
                    "--reload-interval", "0", "--log-flush-seconds", "0.3", "--feedback-flush-seconds", "0.05",
                ],
                tmp / "server.log",
            )  # fmt: skip
            out[key] = Case(key, spec, model_dir, log_root, server)
        yield out
    finally:
        for c in out.values():
            assert c.server.stop() == 0, c.server.log_text()[-3000:]


@pytest.fixture(scope="module")
def in_process(cases):
    """The demo models' ``predict_raw`` outputs called in this process (what the server should answer)."""
    import tensorflow as tf

    from kfloop import contract
    from serving import request

    def call(case, instances):
        sig = tf.saved_model.load(case.model_dir).signatures[contract.RAW_SIGNATURE]
        cols = request.RequestDecoder(case.spec).decode_v1({"instances": instances}, 1000)
        return sig(**{k: tf.constant(v) for k, v in cols.items()})[contract.output_key(case.spec)].numpy()

    return call


@pytest.mark.parametrize("key", list(CASES))
def test_v1_and_v2_answer_in_the_tasks_shapes(cases, in_process, key):
    case = cases[key]
    spec, inst = case.spec, rows(7)
    want = in_process(case, inst)
    v1 = case.predict(inst, f"{key}-v1")
    r = case.post(f"/v2/models/{NAME}/infer", v2_body(spec, inst, f"{key}-v2"))
    assert r.status_code == 200, r.text
    v2 = r.json()
    assert v2["id"] == f"{key}-v2" and v2["model_name"] == NAME
    if case.task == "regression":
        assert want.shape == (7,)
        assert isinstance(v1[0], float) and np.allclose(v1, want, rtol=1e-6)
        ((out,),) = [v2["outputs"]]
        assert (out["name"], out["datatype"], out["shape"]) == ("prediction", "FP32", [7])
        assert np.allclose(out["data"], want, rtol=1e-6)
        return
    classes = list(spec.classes)
    assert want.shape == (7, len(classes))
    best = [classes[i] for i in want.argmax(axis=1)]
    assert [p["class"] for p in v1] == best  # the class as the spec declares it (str or int)
    assert all(type(p["class"]) is type(classes[0]) for p in v1)
    for p, w in zip(v1, want, strict=True):
        assert list(p["probabilities"]) == [str(c) for c in classes]  # every class, in the spec's order
        assert np.allclose(list(p["probabilities"].values()), w, rtol=1e-6)
    probs, cls = v2["outputs"]
    assert (probs["name"], probs["datatype"], probs["shape"]) == ("probabilities", "FP32", [7, len(classes)])
    assert np.allclose(np.reshape(probs["data"], (7, -1)), want, rtol=1e-6)
    dtype = "INT64" if key == "multiclass-int" else "BYTES"
    assert (cls["name"], cls["datatype"], cls["shape"], cls["data"]) == ("class", dtype, [7], best)


@pytest.mark.parametrize("key", list(CASES))
def test_v2_metadata_says_the_task_outputs_and_classes(cases, key):
    case = cases[key]
    r = httpx.get(f"{case.server.url}/v2/models/{NAME}", timeout=10)
    assert r.status_code == 200, r.text
    meta = r.json()
    params = meta["parameters"]
    assert params["task"] == case.task and params["label"] == case.spec.label.name
    if case.task == "regression":
        assert meta["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]
        assert "classes" not in params
    else:
        k = len(case.spec.classes)
        dtype = "INT64" if key == "multiclass-int" else "BYTES"
        assert meta["outputs"] == [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]},
            {"name": "class", "datatype": dtype, "shape": [-1]},
        ]
        assert params["classes"] == list(case.spec.classes)


@pytest.mark.parametrize("key", list(CASES))
def test_prediction_log_rows_per_task_read_by_predlog(cases, key):
    case = cases[key]
    rid = f"{key}-logged"
    got = case.predict(rows(5, seed=2), rid)
    col = predlog.output_column(case.spec)
    deadline = time.monotonic() + 20
    table = None
    while time.monotonic() < deadline:
        table = case.scan(predlog.PREDICTIONS, schema=case.spec)
        if table is not None and rid in table.column("request_id").to_pylist():
            break
        time.sleep(0.2)
    mine = table.filter(pa.compute.equal(table.column("request_id"), rid))
    mine = mine.take(pa.compute.sort_indices(mine.column("row")))
    assert mine.num_rows == 5 and mine.column("row").to_pylist() == list(range(5))
    assert table.schema.field(col).type == predlog.OUTPUT_FIELDS[case.task].type
    logged = mine.column(col).to_pylist()
    if case.task == "regression":
        assert logged == [float(np.float32(v)) for v in got]  # the same float32 numbers as answered
    else:
        assert [[float(np.float32(v)) for v in p["probabilities"].values()] for p in got] == logged
    # Read as the files are (no schema): the task's column and metadata come from each file.
    files = predlog.log_files(case.log_root, NAME, predlog.PREDICTIONS, *_window())
    schema = predlog.read_file(files[0]).schema
    assert predlog.prediction_task(schema) == case.task
    assert schema.metadata[predlog.TASK_KEY] == case.task.encode()


def _window():
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return start, start + dt.timedelta(hours=2)


#: Per case: labels sent (as a labeler would), and the log's labels they become.
GOOD_LABELS = {
    "regression": ([12.5, 3, -0.25], [12.5, 3.0, -0.25]),
    "multiclass": (["weight", "strength", "cardio"], [3, 0, 1]),
    "multiclass-int": ([1, 3, 2.0], [1, 0, 2]),
}


@pytest.mark.parametrize("key", list(CASES))
def test_feedback_per_task_is_written_with_the_tasks_label_type(cases, key):
    case = cases[key]
    rid = f"{key}-fb"
    case.predict(rows(3), rid)
    sent, logged = GOOD_LABELS[key]
    items = [{"request_id": rid, "row": i, "label": v} for i, v in enumerate(sent)]
    r = case.feedback(items)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3 and r.json()["new"] == 3
    table = case.scan(predlog.FEEDBACK)
    mine = table.filter(pa.compute.equal(table.column("request_id"), rid))
    assert mine.column("label").type == predlog.LABEL_TYPES[case.task]
    pairs = zip(mine.column("row").to_pylist(), mine.column("label").to_pylist(), strict=True)
    assert sorted(pairs) == list(enumerate(logged))
    # The same labels again are repeats (nothing written twice); a contradicting one is 409.
    r = case.feedback(items)
    assert r.status_code == 200 and r.json()["repeated"] == 3, r.text
    other = {"regression": 99.0, "multiclass": "mobility", "multiclass-int": 2}[key]
    r = case.feedback([{"request_id": rid, "row": 0, "label": other}])
    assert r.status_code == 409 and r.json()["field"] == "feedback[0].label", r.text
    first = {"regression": "12.5", "multiclass": "'weight'", "multiclass-int": "1"}[key]
    assert f"already has the label {first}" in r.json()["error"]
    again = case.scan(predlog.FEEDBACK)
    assert again.filter(pa.compute.equal(again.column("request_id"), rid)).num_rows == 3


BAD_LABELS = {
    "regression": [("3.5", "expected a number"), (True, "expected a number"), (None, "expected a number"),
                   ([1.0], "expected a number"), (float("nan"), "not a finite number")],
    "multiclass": [("yoga", "not one of the classes"), (0, "expected a string class"),
                   ("NA", "missing"), (True, "expected a string class")],
    "multiclass-int": [(4, "not one of the classes"), (1.5, "not one of the classes"),
                       ("1", "expected an integer class"), (False, "expected an integer class")],
}  # fmt: skip


@pytest.mark.parametrize(
    ("key", "bad", "needle"), [(k, b, n) for k, bads in BAD_LABELS.items() for b, n in bads]
)
def test_feedback_of_another_label_type_is_400_naming_the_field_and_nothing_is_written(
    cases, key, bad, needle
):
    case = cases[key]
    rid = f"{key}-bad-{abs(hash(repr(bad)))}"
    case.predict(rows(2), rid)
    good = {"request_id": rid, "row": 0, "label": GOOD_LABELS[key][0][0]}
    if isinstance(bad, float) and bad != bad:  # NaN: JSON's NaN literal, as some clients send it
        body = (
            f'{{"feedback": [{{"request_id": "{rid}", "row": 0, "label": 3}}, '
            f'{{"request_id": "{rid}", "row": 1, "label": NaN}}]}}'
        ).encode()
        r = httpx.post(
            f"{case.server.url}/v1/models/{NAME}:feedback",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
    else:
        r = case.feedback([good, {"request_id": rid, "row": 1, "label": bad}])
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "feedback[1].label" and needle in r.json()["error"], r.json()
    table = case.scan(predlog.FEEDBACK)
    assert table is None or rid not in table.column("request_id").to_pylist()


def test_kserve_request_path_answers_multiclass_per_task(cases, tmp_path):
    """kserve's own path (gRPC and its dataplane): ``Predictor.predict`` with a V1 dict and an
    ``InferRequest`` gives the same per-task outputs (in process, no log)."""
    import asyncio
    import dataclasses

    from kserve.protocol.infer_type import InferInput, InferRequest

    from kfloop import config
    from serving.model import ModelSource, Predictor

    case = cases["multiclass"]
    cfg = dataclasses.replace(config.ServingConfig(), max_call_seconds=10.0)
    model = Predictor(NAME, ModelSource(NAME, model_dir=case.model_dir, workdir=str(tmp_path)), cfg, None, 0)
    assert model.load()
    model.start()
    inst = rows(4)
    inputs = []
    for f in case.spec.model_features:
        dtype = "BOOL" if f.kind.value == "boolean" else f.v2_datatype
        inputs.append(InferInput(f.name, [4], dtype, data=[r[f.name] for r in inst]))

    async def both():  # one event loop: the micro-batcher lives on it
        v1 = await model.predict({"instances": inst})
        return v1, await model.predict(InferRequest(NAME, inputs, request_id="kserve-1"))

    v1, v2 = asyncio.run(asyncio.wait_for(both(), 60))
    model.close()
    classes = list(case.spec.classes)
    names = [c.decode() if isinstance(c, bytes) else c for c in v2.outputs[1].as_numpy().tolist()]
    assert [p["class"] for p in v1["predictions"]] == names
    assert v2.outputs[0].name == "probabilities" and v2.outputs[0].shape == [4, len(classes)]
    assert v2.outputs[1].name == "class" and v2.outputs[1].datatype == "BYTES"
    got = v2.outputs[0].as_numpy().astype(np.float64)
    assert got.shape == (4, len(classes))
    want = [list(p["probabilities"].values()) for p in v1["predictions"]]
    assert np.allclose(got, want, rtol=1e-6) and all(c in classes for c in names)
