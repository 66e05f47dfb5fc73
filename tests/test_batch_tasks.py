"""Batch prediction per task: a small regression and a small multiclass model scored by the Beam job.

Each model is trained once (module scope) on :mod:`tests.synthetic` rows and published with its spec; the
job (:func:`components.batch_predict.batch_predict.run_job`, in process) scores held-out rows, writes a
Parquet and a CSV output and commits the prediction log. Checked: the task's output column and type, the
values equal to the SavedModel called directly, the CSV's per-class columns and predicted class, the
committed log rows read back by :func:`kfloop.predlog.scan` as the task's.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from components.batch_predict import batch_predict as B
from components.batch_predict.scoring import SavedModel
from kfloop import clean, contract, datasets, predlog, store
from kfloop import spec as S
from tests import synthetic
from training_image.trainer import HParams, train

HP = {"epochs": 2, "batch_size": 64, "learning_rate": 0.02, "hidden_units": (8,)}


def _dataset(folder, spec, rows, seed, name):
    raw = pd.read_csv(io.StringIO(synthetic.csv_text(rows, seed)), dtype=str, keep_default_na=False)
    path = str(folder / f"{name}.csv")
    datasets.write_dataset(clean.clean(raw, spec), path)
    return path


@pytest.fixture(scope="module", params=["regression", "multiclass"])
def scored(request, tmp_path_factory):
    task = request.param
    folder = tmp_path_factory.mktemp(f"batch-{task}")
    spec = S.loads(synthetic.SPECS[task])
    train_csv = _dataset(folder, spec, 400, 1, "train")
    live_csv = _dataset(folder, spec, 250, 5, "live")
    model = folder / "model"
    train(train_csv, train_csv, str(model), HParams(**HP), spec=spec)
    contract.write_spec_and_schema(str(model), spec)
    root = str(folder / "store")
    ms = store.ModelStore(root)
    version = ms.publish(spec.name, str(model), {"run_id": "test"})
    ms.set_alias(spec.name, store.CHAMPION, version, reason="test champion")
    prepared = str(folder / "prepared.csv")
    assert B.prepare_input(live_csv, prepared, spec) == 250
    parquet, csv = str(folder / "out.parquet"), str(folder / "out.csv")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    result = B.run_job(
        prepared,
        root,
        spec.name,
        version,
        str(folder / "parts"),
        [parquet, csv],
        chunk_rows=100,
        progress=False,
    )
    direct = SavedModel(str(model), spec)(datasets.encode(datasets.read_dataset(prepared, spec), spec))
    return {
        "task": task,
        "spec": spec,
        "root": root,
        "version": version,
        "result": result,
        "parquet": pd.read_parquet(parquet),
        "csv": pd.read_csv(csv, keep_default_na=False),
        "direct": direct,
        "window": (start, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)),
    }


def test_the_output_is_the_tasks_and_equals_the_model(scored):
    spec, out, direct = scored["spec"], scored["parquet"], scored["direct"]
    key = contract.output_key(spec)
    assert key in out.columns and not {"probability", "prediction", "probabilities"} - {key} & set(
        out.columns
    )
    assert len(out) == 250 and out["row"].tolist() == list(range(250))
    got = np.asarray(out[key].tolist(), dtype=np.float32)
    if scored["task"] == "multiclass":
        assert direct.shape == (250, spec.n_classes) and got.shape == direct.shape
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    else:
        assert direct.shape == (250,)
    # the same model on the same rows; the job scores in other batch sizes than the direct call, so float32
    # sums may differ in the last bit (seen: 7 of 1,000 values by 3e-8)
    np.testing.assert_allclose(got, direct.astype(np.float32), rtol=1e-6, atol=1e-7)


def test_the_csv_output_flattens_multiclass_probabilities_per_class(scored):
    spec, csv, direct = scored["spec"], scored["csv"], scored["direct"]
    if scored["task"] == "regression":
        np.testing.assert_allclose(csv["prediction"].to_numpy(np.float32), direct, rtol=1e-6)
        return
    cols = [f"probability[{c}]" for c in spec.classes]
    assert [c for c in csv.columns if c.startswith("probability")] == cols and "probabilities" not in csv
    np.testing.assert_allclose(csv[cols].to_numpy(np.float32), direct, rtol=1e-6)
    best = [str(spec.classes[i]) for i in direct.argmax(axis=1)]
    assert csv["class"].astype(str).tolist() == best


def test_the_committed_log_holds_the_tasks_rows(scored):
    spec = scored["spec"]
    start, end = scored["window"]
    batches = list(predlog.scan(scored["root"], spec.name, predlog.PREDICTIONS, start, end, schema=spec))
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 250 and set(table.column("source").to_pylist()) == {"batch"}
    assert set(table.column("model_version").to_pylist()) == {scored["version"]}
    col = table.schema.field(contract.output_key(spec))
    if scored["task"] == "multiclass":
        assert pa.types.is_list(col.type) and pa.types.is_float32(col.type.value_type)
    else:
        assert pa.types.is_float32(col.type)
    got = np.asarray(table.sort_by("row").column(col.name).to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got, scored["direct"].astype(np.float32), rtol=1e-6, atol=1e-7)  # as above


def test_a_model_without_the_tasks_output_is_refused_by_name(scored, tmp_path):
    """A regression spec beside a multiclass model (or the other way round): one line naming the output."""
    other = "multiclass" if scored["task"] == "regression" else "regression"
    model = tmp_path / "model"
    shutil.copytree(
        store.ModelStore(scored["root"]).fetch(scored["spec"].name, scored["version"], str(tmp_path / "f")),
        model,
    )
    with pytest.raises(B.BatchPredictError, match=rf"no '{contract.OUTPUT_KEYS[other]}' output"):
        SavedModel(str(model), S.loads(synthetic.SPECS[other]))
