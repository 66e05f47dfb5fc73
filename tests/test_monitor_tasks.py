"""The monitor per task (issue 26): the live metric and its retrain rule, output drift, the decide record.

Cheap: counters are fed the rows a prediction log holds (the per-task output columns of contract 4) and the
window is streamed without the TFDV statistics; the whole-loop tests are elsewhere.
"""

from __future__ import annotations

import collections
import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from components.decide import decide as D
from components.monitor import live as LV
from components.monitor import stream
from kfloop import config, predlog
from kfloop import reference as R
from kfloop import spec as kspec
from tests import synthetic

CFG = config.MonitoringConfig()
NOW = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def specs():
    return {t: kspec.loads(y) for t, y in synthetic.SPECS.items()}


def _table(spec, outputs) -> pa.Table:
    """Rows as the prediction log holds them: key columns and the task's output column(s)."""
    n = len(outputs)
    cols = {
        "request_id": pa.array([f"r{i // 10}" for i in range(n)]),
        "row": pa.array([i % 10 for i in range(n)], pa.int32()),
        "model_version": pa.array(["v1"] * n),
    }
    name = stream.output_column(spec)
    if spec.task.value == "multiclass":
        flat = pa.array(np.asarray(outputs, dtype=np.float32).reshape(-1))
        cols[name] = pa.FixedSizeListArray.from_arrays(flat, spec.n_classes)
    else:
        cols[name] = pa.array(np.asarray(outputs, dtype=np.float32))
    return pa.table(cols)


def _window(spec, outputs, labels, output_ref=None) -> stream.WindowStats:
    """The counters of one window of these rows (``labels``: NaN = none arrived)."""
    ws = stream.WindowStats(task=spec.task.value)
    if ws.task == "multiclass":
        ws.class_labels = np.zeros(spec.n_classes, dtype=np.int64)
        ws.probability_sums = np.zeros(spec.n_classes)
    elif ws.task == "binary":
        ws.pos_hist = np.zeros(stream.AUC_BINS, dtype=np.int64)
        ws.neg_hist = np.zeros(stream.AUC_BINS, dtype=np.int64)
    if output_ref is not None:
        ws.output_counts = np.zeros(len(output_ref["counts"]), dtype=np.int64)
    stream._count(_table(spec, outputs), np.asarray(labels, dtype=np.float64), ws, spec, output_ref)
    return ws


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_regression_live_rmse_and_mae_and_the_relative_rule(specs):
    spec = specs["regression"]
    y = np.array([10.0, 20.0, 30.0, 40.0] * 50)
    err = np.array([3.0, -3.0, 4.0, -4.0] * 50)
    ws = _window(spec, y + err, np.r_[y[:-10], [np.nan] * 10])  # the last 10 labels have not arrived
    m = LV.live_metrics(ws)
    assert m["n"] == 190 and m["rmse"] == pytest.approx(np.sqrt((err[:190] ** 2).mean()), rel=1e-5)
    assert m["mae"] == pytest.approx(np.abs(err[:190]).mean(), rel=1e-5)
    assert m["mean_prediction"] == pytest.approx((y + err).mean(), rel=1e-5)
    # the champion's eval RMSE 3.0: retrain above 3.0 x (1 + 0.25) = 3.75; live 3.53 does not
    ok = LV.performance("regression", m, {"rmse": 3.0}, CFG, enough=True)
    assert not ok["exceeded"] and ok["threshold"] == pytest.approx(3.75) and ok["units"] == "label units"
    bad = LV.performance("regression", m, {"rmse": 2.0}, CFG, enough=True)
    assert bad["exceeded"] and "live RMSE 3.53 > 2.5 label units" in bad["message"]
    unknown = LV.performance("regression", m, {}, CFG, enough=True)
    assert not unknown["exceeded"] and unknown["threshold"] is None and "unknown" in unknown["message"]


def test_multiclass_live_accuracy_log_loss_and_the_absolute_rule(specs):
    spec = specs["multiclass"]
    k = spec.n_classes
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, 400)
    z = rng.normal(size=(400, k))
    z[np.arange(400), y] += 1.5  # mostly right
    p = _softmax(z)
    ws = _window(spec, p, y.astype(float))
    m = LV.live_metrics(ws)
    acc = float((p.argmax(axis=1) == y).mean())
    assert m["accuracy"] == pytest.approx(acc) and m["n"] == 400
    assert m["log_loss"] == pytest.approx(float(-np.log(p[np.arange(400), y]).mean()), rel=1e-4)
    assert not LV.performance("multiclass", m, {"accuracy": acc + 0.04}, CFG, enough=True)["exceeded"]
    drop = LV.performance("multiclass", m, {"accuracy": acc + 0.06}, CFG, enough=True)
    assert drop["exceeded"] and drop["metric"] == "accuracy" and drop["units"] == "fraction of rows"
    few = LV.performance("multiclass", m, {"accuracy": 0.99}, CFG, enough=False)
    assert not few["exceeded"] and few["value"] is None and "min_labelled" in few["message"]


def test_bad_outputs_and_labels_of_each_task_are_skipped_by_reason(specs):
    reg, mc = specs["regression"], specs["multiclass"]
    counts = collections.Counter()
    t = _table(reg, [1.0, np.nan, np.inf, -5.0]).to_batches()[0]
    assert stream.check_predictions(t, counts, (), reg).num_rows == 2
    assert counts == {"prediction not a finite number": 2}
    counts.clear()
    rows = [[0.25] * 4, [0.7, 0.2, 0.2, 0.1], [1.0, 0.0, 0.0, 0.0], [np.nan, 0.5, 0.5, 0.0]]
    assert stream.check_predictions(_table(mc, rows).to_batches()[0], counts, (), mc).num_rows == 2
    assert counts == {"probabilities not a distribution over the 4 classes": 2}
    fb = pa.record_batch(
        [pa.array(["a"] * 4), pa.array([0, 1, 2, 3], pa.int32()), pa.array([0, 3, 4, -1], pa.int16())],
        names=["request_id", "row", "label"],
    )
    counts.clear()
    assert stream.check_feedback(fb, counts, mc).num_rows == 2
    assert counts == {"label not a class index in 0..3": 2}
    fb = pa.record_batch(
        [pa.array(["a"] * 3), pa.array([0, 1, 2], pa.int32()), pa.array([-12.5, np.nan, 3.0])],
        names=["request_id", "row", "label"],
    )
    counts.clear()
    assert stream.check_feedback(fb, counts, reg).num_rows == 2 and counts == {"label not a finite number": 1}


@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
def test_output_drift_a_shifted_output_drifts_the_same_does_not(specs, task):
    spec = specs[task]
    rng = np.random.default_rng(1)
    n = 2000

    def outputs(shift: float):
        if task == "binary":
            return 1 / (1 + np.exp(-(rng.normal(size=n) + shift)))
        if task == "regression":
            return rng.normal(40 + 15 * shift, 10, size=n)
        z = rng.normal(size=(n, spec.n_classes))
        z[:, 0] += 2 * shift  # the model now predicts class 0 far more often
        return _softmax(z)

    eval_out = outputs(0.0)
    eval_labels = rng.integers(0, 2, n) if task != "regression" else rng.normal(40, 10, n)
    if task == "multiclass":
        eval_labels = rng.integers(0, spec.n_classes, n)
    ref = R.output_reference(spec, eval_out, eval_labels, CFG.clip_quantile)
    assert sum(ref["counts"]) == n and ref["eval_metrics"]["n"] == n
    same = LV.output_drift(ref, _window(spec, outputs(0.0), np.full(n, np.nan), ref).output_counts, CFG)
    moved = LV.output_drift(ref, _window(spec, outputs(1.5), np.full(n, np.nan), ref).output_counts, CFG)
    assert same["available"] and same["value"] < 0.02 and not same["exceeded"]
    assert moved["value"] > CFG.output_drift_threshold and moved["exceeded"] and moved["ignored"]
    assert moved["of"] == {"binary": "probability", "regression": "prediction"}.get(task, "predicted class")
    # mode trigger: the decision retrains on it; record (default) only reports it
    summary = _summary(task, output_drift=moved)
    assert not any(r["feature"] == "(output)" for r in D.triggers(summary, CFG))
    trig = config.MonitoringConfig(output_drift_mode="trigger")
    summary["output_drift"] = LV.output_drift(
        ref, _window(spec, outputs(1.5), np.full(n, np.nan), ref).output_counts, trig
    )
    (r,) = [r for r in D.triggers(summary, trig) if r["feature"] == "(output)"]
    assert r["kind"] == "drift" and r["value"] > trig.output_drift_threshold


def test_a_reference_without_eval_predictions_reports_output_drift_unavailable():
    od = LV.output_drift(None, None, CFG)
    assert od["available"] is False and od["value"] is None and not od["exceeded"]
    assert "unavailable" in od["message"]


def test_output_reference_refuses_outputs_that_do_not_fit(specs):
    with pytest.raises(R.ReferenceError_, match=r"shape \(3, 4\)"):
        R.output_reference(specs["multiclass"], np.ones((3, 3)) / 3, [0, 1, 2], 0.01)


def _summary(task, **kw) -> dict:
    out = {
        "task": task,
        "model_name": "m",
        "champion_version": "v1",
        "status": "ok",
        "rows": 1000,
        "labelled_rows": 500,
        "drift": [],
        "anomalies": [],
        "run_id": "r1",
    }
    out.update(kw)
    return out


@pytest.mark.parametrize(
    "task,live,champion,retrain",
    [
        ("regression", {"rmse": 14.0, "mae": 10.0, "n": 500}, {"rmse": 10.0}, True),
        ("regression", {"rmse": 12.0, "mae": 9.0, "n": 500}, {"rmse": 10.0}, False),
        ("multiclass", {"accuracy": 0.60, "log_loss": 1.1, "n": 500}, {"accuracy": 0.70}, True),
        ("multiclass", {"accuracy": 0.68, "log_loss": 0.9, "n": 500}, {"accuracy": 0.70}, False),
    ],
)
def test_decide_records_the_tasks_metric_name_units_and_rule(task, live, champion, retrain):
    perf = LV.performance(task, live, champion, CFG, enough=True)
    d = D.decide(_summary(task, performance=perf, live_metrics=live), CFG, now=NOW)
    assert d["retrain"] is retrain and d["task"] == task and d["live_metrics"] == live
    (r,) = [r for r in d["reasons"] if r["kind"] == "performance"]
    name = "live_rmse" if task == "regression" else "live_accuracy"
    assert r["measure"] == name and r["units"] == perf["units"] and r["threshold"] == perf["threshold"]
    assert ("RMSE" if task == "regression" else "accuracy") in d["summary"]


def test_binary_decisions_keep_the_live_auc_rule():
    d = D.decide(_summary("binary", live_auc=0.6), CFG, now=NOW)
    assert d["retrain"] and d["reasons"][0]["measure"] == "live_auc"
    assert d["summary"] == "retrain: 1 trigger(s): live AUC 0.6000 < 0.7 on 500 labelled rows"


@pytest.mark.skipif(not hasattr(predlog, "output_columns"), reason="per-task prediction log (HD) not landed")
@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_a_window_of_a_task_log_gives_its_live_metric(tmp_path, specs, task):
    """Written with kfloop.predlog through the replay's writers, streamed (no TFDV)."""
    from kfloop import clean
    from kfloop.app import replay

    spec = specs[task]
    _, data = synthetic.write(tmp_path / "d", rows=150, task=task)
    frame = clean.clean(clean.read_raw(str(data)), spec)
    n = len(frame)
    y = frame[spec.label.name].to_numpy(dtype=np.float64)
    if task == "regression":
        outs = np.nan_to_num(y, nan=40.0) + 2.0
    else:
        outs = np.full((n, spec.n_classes), 0.1 / (spec.n_classes - 1))
        outs[np.arange(n), np.nan_to_num(y).astype(int)] = 0.9
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    recs = replay.prediction_records(frame, outs, spec=spec, model_name="m", model_version="v1", start=t0)
    replay.write_prediction_log(str(tmp_path), "m", recs, spec=spec)
    arrived = [
        (r["request_id"], r["row"], float(v) if task == "regression" else int(v))
        for r, v in zip(recs, y, strict=True)
        if v == v
    ]
    replay.write_feedback(str(tmp_path), "m", arrived, when=t0 + dt.timedelta(hours=1), spec=spec)
    ws, _ = stream.process_window(
        str(tmp_path),
        "m",
        t0,
        t0 + dt.timedelta(hours=1),
        t0 + dt.timedelta(days=2),
        spec=spec,
        bounds={},
        stage_dir=str(tmp_path / "stage"),
    )
    m = LV.live_metrics(ws)
    assert ws.rows == n and ws.labelled_rows == len(arrived)
    if task == "regression":
        assert m["rmse"] == pytest.approx(2.0, rel=1e-4) and m["mae"] == pytest.approx(2.0, rel=1e-4)
    else:
        assert m["accuracy"] == 1.0
