"""Evaluate with real TFMA on real taxi rows: first model, equal champion, worse challenger, bad input.

TFMA runs are the slow part (~10-15 s each), so each scenario runs once per module and several tests
read its result.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from components.evaluate import evaluate as E
from components.evaluate.evaluate import EvaluationError, SliceRow, decide, evaluate
from kfloop.blessing import BlessingError, read_blessing
from kfloop.config import EvaluationConfig

CFG = EvaluationConfig()
#: The taxi example's label column.
LABEL = "big_tipper"


def read_csv(uri):
    """A Dataset CSV as text columns (missing = NaN), numbers parsed where they parse."""
    import pandas as pd

    frame = pd.read_csv(uri, dtype=str, keep_default_na=False, na_values=[""])
    return frame


def label_values(frame):
    return frame[LABEL].astype(float)


def cli(argv: list[str]) -> int:
    """``kfloop evaluate`` as kfloop.app.cli.main runs it, with only this command registered (so that a
    half-finished sibling command module cannot break these tests)."""
    from kfloop.app.cli import _Parser
    from kfloop.app.commands import evaluate as command

    parser = _Parser(prog="kfloop")
    command.register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


# ----------------------------------------------------------------------------- scenarios (TFMA)


@pytest.fixture(scope="module")
def first(taxi_split, trained_model, tmp_path_factory):
    """The trained model with no champion: value thresholds only."""
    out = tmp_path_factory.mktemp("first")
    result = evaluate(
        taxi_split["eval"],
        trained_model,
        "",
        blessing_path=str(out / "blessing.json"),
        report_path=str(out / "report.html"),
    )
    return result, out


@pytest.fixture(scope="module")
def shuffled_model(taxi_split, taxi_spec, tmp_path_factory):
    """A deliberately worse challenger: the real trainer on the train split with shuffled labels."""
    from training_image.trainer import HParams, train

    out = tmp_path_factory.mktemp("shuffled")
    frame = read_csv(taxi_split["train"])
    frame[LABEL] = np.random.default_rng(7).permutation(frame[LABEL].to_numpy())
    frame.to_csv(str(out / "train.csv"), index=False)
    model_dir = out / "model"
    train(str(out / "train.csv"), taxi_split["eval"], str(model_dir), HParams(epochs=2), spec=taxi_spec)
    return str(model_dir)


@pytest.fixture(scope="module")
def worse(taxi_split, trained_model, shuffled_model, tmp_path_factory):
    """``kfloop evaluate`` (in-process) with the shuffled-label challenger against the real champion."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("worse")
    argv = ["evaluate", "--model", shuffled_model, "--data", taxi_split["eval"], "--baseline", trained_model]
    argv += ["--blessing", str(out / "blessing.json"), "--report", str(out / "report.html")]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli(argv)
    return code, buf.getvalue(), out


def _reasons(blessing, kind=None, slice_=None, metric="auc"):
    return [
        r
        for r in blessing["reasons"]
        if r["metric"] == metric
        and (kind is None or r["kind"] == kind)
        and (slice_ is None or r["slice"] == slice_)
    ]


def test_first_model_blessed_on_value_thresholds(first, trained_model):
    result, out = first
    blessing = read_blessing(str(out / "blessing.json"))
    assert blessing == json.loads((out / "blessing.json").read_text())
    assert blessing["blessed"] is True and result.blessed
    assert blessing["champion_version"] is None and blessing["champion_metrics"] is None
    (value,) = _reasons(blessing, "value", "Overall")
    assert value["passed"] and value["threshold"] == CFG.auc_floor
    assert value["challenger"] >= CFG.auc_floor and value["champion"] is None
    # the trainer's own eval AUC (Keras) and TFMA's agree on the same rows
    meta = json.loads((Path(trained_model) / "kfloop_metadata.json").read_text())
    assert value["challenger"] == pytest.approx(meta["metrics"]["auc"], abs=0.01)
    (note,) = _reasons(blessing, "no_champion")
    assert "no champion" in note["message"] and "only value thresholds" in note["message"]
    assert not _reasons(blessing, "change"), "change thresholds must not apply without a champion"
    assert blessing["tfma_validation_ok"] is True


def test_metrics_and_slices(first, taxi_split, taxi_spec):
    result, _ = first
    blessing = result.blessing
    frame = read_csv(taxi_split["eval"])
    m = blessing["metrics"]
    assert m["example_count"] == len(frame) == blessing["eval_rows"]
    assert m["mean_label"] == pytest.approx(label_values(frame).mean(), abs=1e-6)
    for name in ("auc", "pr_auc", "binary_accuracy", "precision", "recall", "calibration"):
        assert name in m and math.isfinite(m[name])
    # slices: overall + every payment type and hour in the data, counts matching pandas
    by_slice = {s["slice"]: s for s in blessing["slices"]}
    assert blessing["slicing"] == [["payment_type"], ["trip_start_hour"]] == [[s] for s in taxi_spec.slices]
    for feat in taxi_spec.slices:
        for value, n in frame[feat].value_counts().items():
            assert by_slice[f"{feat}={value}"]["examples"] == n
    # confusion matrix at 0.5 adds up and matches accuracy; ROC runs from (1, 1) to (0, 0)
    (tn, fp), (fn, tp) = result.confusion_matrix
    assert tn + fp + fn + tp == len(frame)
    assert (tn + tp) / len(frame) == pytest.approx(m["binary_accuracy"], abs=1e-6)
    assert tp + fn == int(label_values(frame).sum())
    assert result.roc["fpr"][0] == pytest.approx(1.0) and result.roc["tpr"][-1] < 0.5
    assert len(result.roc["fpr"]) == len(result.roc["tpr"]) == len(result.roc["thresholds"])


def test_html_report_is_self_contained(first):
    _, out = first
    html = (out / "report.html").read_text()
    assert "BLESSED" in html and "payment_type=Credit Card" in html and "<svg" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html


def test_equal_champion_from_gcs_store_is_blessed(taxi_split, trained_model, gcs_bucket):
    """Same model as champion, read from a gs:// model-store layout; eval data and outputs on gs:// too."""
    from kfloop import fs

    champion = f"gs://{gcs_bucket}/store/models/taxi-tips/v0007/model"
    for f in Path(trained_model).rglob("*"):
        if f.is_file():
            fs.write_bytes(f"{champion}/{f.relative_to(trained_model)}", f.read_bytes())
    eval_uri = f"gs://{gcs_bucket}/data/eval.csv"
    fs.write_bytes(eval_uri, Path(taxi_split["eval"]).read_bytes())
    blessing_uri = f"gs://{gcs_bucket}/out/blessing.json"

    result = evaluate(eval_uri, trained_model, champion, blessing_path=blessing_uri)
    b = read_blessing(blessing_uri)
    assert b == result.blessing
    assert b["blessed"] is True, [r["message"] for r in b["reasons"] if not r["passed"]]
    assert b["champion_version"] == "v0007" and b["champion_uri"] == champion
    (change,) = _reasons(b, "change", "Overall")
    assert change["passed"] and change["challenger"] == pytest.approx(change["champion"])
    assert change["threshold"] == -CFG.max_auc_regression
    assert change["verdict"] == "non_inferior" and change["interval"]["diff"] == pytest.approx(0.0)
    assert b["paired"]["comparison"]["rows"] == b["eval_rows"]
    judged = [r for r in _reasons(b, "change") if r["judged"] and r["slice"] != "Overall"]
    assert judged and all(r["passed"] and r["challenger"] == pytest.approx(r["champion"]) for r in judged)
    assert b["tfma_validation_ok"] is True


def test_small_and_single_class_slices_are_reported_not_vetoes(worse):
    b = json.loads((worse[2] / "blessing.json").read_text())
    slices = {s["slice"]: s for s in b["slices"]}
    reported = [r for r in _reasons(b, "change") if not r["judged"]]
    judged = [r for r in _reasons(b, "change") if r["judged"] and r["slice"] != "Overall"]
    assert reported and judged
    for r in reported:
        s = slices[r["slice"]]
        assert r["passed"] is True and "not a veto" in r["message"]
        assert s["examples"] < CFG.min_slice_examples or s["positives"] in (0, s["examples"])
    # cash trips never record a tip: one class, AUC undefined, reported as such
    (cash,) = [r for r in reported if r["slice"] == "payment_type=Cash"]
    assert "single class" in cash["message"]
    assert slices["payment_type=Cash"]["challenger"]["auc"] is None
    for r in judged:
        assert slices[r["slice"]]["examples"] >= CFG.min_slice_examples


def test_worse_challenger_is_not_blessed_and_names_auc(worse, trained_model):
    code, stdout, out = worse
    assert code == 3, stdout
    b = read_blessing(str(out / "blessing.json"))
    assert b["blessed"] is False
    failed = [r for r in b["reasons"] if not r["passed"]]
    overall = {r["kind"]: r for r in failed if r["slice"] == "Overall" and r["metric"] == "auc"}
    assert set(overall) == {"value", "change"}
    change = overall["change"]
    assert change["challenger"] < change["champion"] - CFG.max_auc_regression
    assert (
        f"{change['challenger']:.4f}" in change["message"]
        and f"{change['champion']:.4f}" in change["message"]
    )
    assert b["champion_uri"] == trained_model
    assert b["tfma_validation_ok"] is False
    # the CLI printed the table and the verdict with the reason
    assert "NOT BLESSED" in stdout and "payment_type=Credit Card" in stdout
    # the overall change is judged on the paired interval of the same eval rows, shown in the reason
    assert change["verdict"] == "worse" and change["interval"]["paired"]
    assert change["interval"]["high"] < 0 and change["interval"]["rows"] == b["eval_rows"]
    assert "interval below 0" in change["message"] and f"{change['interval']['low']:+.4f}" in stdout
    html = (out / "report.html").read_text()
    assert "NOT BLESSED" in html and "FAILED" in html


# ----------------------------------------------------------------------------- bad input (no TFMA)


def test_missing_label_column_is_named(tmp_path, taxi_split, trained_model):
    frame = read_csv(taxi_split["eval"]).drop(columns=[LABEL])
    frame.to_csv(str(tmp_path / "eval.csv"), index=False)
    with pytest.raises(EvaluationError, match="no label column 'big_tipper'"):
        evaluate(str(tmp_path / "eval.csv"), trained_model, blessing_path=str(tmp_path / "b.json"))
    assert not (tmp_path / "b.json").exists()


def test_rows_without_label_are_dropped_and_counted(tmp_path, taxi_split, taxi_spec):
    frame = read_csv(taxi_split["eval"]).head(100)
    frame.loc[[3, 50], LABEL] = None
    frame.to_csv(str(tmp_path / "eval.csv"), index=False)
    kept, dropped = E.load_eval_frame(str(tmp_path / "eval.csv"), taxi_spec)
    assert (len(kept), dropped) == (98, 2) and kept[LABEL].notna().all()
    frame[LABEL] = None
    frame.to_csv(str(tmp_path / "none.csv"), index=False)
    with pytest.raises(EvaluationError, match="no rows with a 'big_tipper' label"):
        E.load_eval_frame(str(tmp_path / "none.csv"), taxi_spec)


def test_bad_label_value_is_named(tmp_path, taxi_split, trained_model):
    frame = read_csv(taxi_split["eval"]).head(100)
    frame.loc[4, LABEL] = "2"
    frame.to_csv(str(tmp_path / "eval.csv"), index=False)
    with pytest.raises(EvaluationError, match=r"'big_tipper' must be 0 or 1, got 2 \(CSV line 6\)"):
        evaluate(str(tmp_path / "eval.csv"), trained_model)


@pytest.mark.parametrize("which", ["model", "champion"])
def test_not_a_saved_model(tmp_path, taxi_split, trained_model, which):
    (tmp_path / "empty").mkdir()
    model, champion = (
        (str(tmp_path / "empty"), "") if which == "model" else (trained_model, str(tmp_path / "empty"))
    )
    with pytest.raises(EvaluationError, match=f"{which} .*empty.* is not a SavedModel"):
        evaluate(taxi_split["eval"], model, champion, blessing_path=str(tmp_path / "b.json"))
    assert not (tmp_path / "b.json").exists()
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate(taxi_split["eval"], str(tmp_path / "nope"))


def test_missing_eval_data(tmp_path, trained_model):
    with pytest.raises(EvaluationError, match="eval data .*nope.csv.* does not exist"):
        evaluate(str(tmp_path / "nope.csv"), trained_model)


def test_bad_thresholds(taxi_split, trained_model):
    import dataclasses

    with pytest.raises(EvaluationError, match="auc_floor must be in"):
        evaluate(taxi_split["eval"], trained_model, config=dataclasses.replace(CFG, auc_floor=1.5))
    import yaml

    spec = yaml.safe_load(Path(trained_model, "spec.yaml").read_text())
    bad_slices = yaml.safe_dump({**spec, "slices": ["payment_type", "tips"]})
    with pytest.raises(EvaluationError, match=r"^spec: .*slices\[1\].*tips"):
        evaluate(taxi_split["eval"], trained_model, spec=bad_slices)


def test_read_blessing_errors(tmp_path):
    with pytest.raises(BlessingError, match="does not exist"):
        read_blessing(str(tmp_path / "none.json"))
    (tmp_path / "b.json").write_text(
        '{"blessed": "yes", "reasons": [], "champion_version": null, "metrics": {}}'
    )
    with pytest.raises(BlessingError, match="'blessed' must be true or false"):
        read_blessing(str(tmp_path / "b.json"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "blessing.json").write_text('{"blessed": true, "reasons": []}')
    with pytest.raises(BlessingError, match="lacks key 'champion_version'"):
        read_blessing(str(tmp_path / "d"))


# ----------------------------------------------------------------------------- decision rules (no TFMA)


def _row(name, n, pos, auc, champ_auc):
    feature, _, value = name.partition("=")
    mk = lambda a: {"example_count": float(n), "mean_label": pos / n, "auc": a}  # noqa: E731
    return SliceRow(
        name, feature or None, value or None, mk(auc), None if champ_auc is None else mk(champ_auc)
    )


def test_decide_slice_regression_vetoes_only_judged_slices():
    slices = [
        _row("Overall", 1000, 200, 0.90, 0.90),
        _row("trip_start_hour=1", 200, 40, 0.70, 0.90),  # big slice, big loss: veto
        _row("trip_start_hour=2", CFG.min_slice_examples - 1, 10, 0.10, 0.90),  # too small: reported
        _row("payment_type=Cash", 500, 0, 0.0, 0.0),  # one class: reported
    ]
    reasons = decide(slices, CFG, has_champion=True)
    by_slice = {r["slice"]: r for r in reasons if r["kind"] == "change"}
    assert by_slice["trip_start_hour=1"]["passed"] is False
    assert (
        by_slice["trip_start_hour=1"]["challenger"] == 0.70
        and by_slice["trip_start_hour=1"]["champion"] == 0.90
    )
    assert by_slice["trip_start_hour=2"]["passed"] and not by_slice["trip_start_hour=2"]["judged"]
    assert f"only {CFG.min_slice_examples - 1} examples" in by_slice["trip_start_hour=2"]["message"]
    assert (
        by_slice["payment_type=Cash"]["passed"] and "single class" in by_slice["payment_type=Cash"]["message"]
    )
    assert not all(r["passed"] for r in reasons)
    # the same slice within the allowed regression passes
    slices[1] = _row("trip_start_hour=1", 200, 40, 0.90 - CFG.max_slice_auc_regression / 2, 0.90)
    assert all(r["passed"] for r in decide(slices, CFG, has_champion=True))


def test_decide_overall_epsilon_and_floor():
    eps = CFG.max_auc_regression
    ok = decide([_row("Overall", 1000, 200, 0.90 - eps / 2, 0.90)], CFG, has_champion=True)
    assert all(r["passed"] for r in ok)
    bad = decide([_row("Overall", 1000, 200, 0.90 - 2 * eps, 0.90)], CFG, has_champion=True)
    assert [r["kind"] for r in bad if not r["passed"]] == ["change"]
    low = decide([_row("Overall", 1000, 200, CFG.auc_floor - 0.01, None)], CFG, has_champion=False)
    assert [r["kind"] for r in low if not r["passed"]] == ["value"]
    nan = decide([_row("Overall", 1000, 200, math.nan, None)], CFG, has_champion=False)
    assert not all(r["passed"] for r in nan)
    tiny = decide([_row("Overall", 10, 2, 0.99, None)], CFG, has_champion=False)
    assert any(r["metric"] == "example_count" and not r["passed"] for r in tiny)


def test_champion_version_from_store_uri():
    assert E.champion_version_of("gs://b/p/models/taxi-tips/20260101-abc/model") == "20260101-abc"
    assert E.champion_version_of("/tmp/x/models/taxi-tips/v3/model/") == "v3"
    assert E.champion_version_of("/some/saved_model") is None


def test_cli_bad_input_is_one_line_exit_2(tmp_path, taxi_split, trained_model, capsys):
    frame = read_csv(taxi_split["eval"]).drop(columns=[LABEL])
    frame.to_csv(str(tmp_path / "eval.csv"), index=False)
    code = cli(["evaluate", "--model", trained_model, "--data", str(tmp_path / "eval.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("kfloop evaluate: ") and "'big_tipper'" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        cli(["evaluate", "--model", trained_model])  # --data missing: argparse, exit 2
    assert e.value.code == 2
