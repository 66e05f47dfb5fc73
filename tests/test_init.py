"""``kfloop init``: the proposed spec and schema for a CSV (issue 24).

The guesses are checked on small synthetic frames through :func:`kfloop.app.commands.init.propose` (kinds,
missing-value tokens, the time column and its format, id-like and leaking columns excluded, label
refusals); exit codes and one-line errors through the real CLI in a subprocess; and on the Minneapolis
stops (examples/mpls_stops), what ``init`` proposes is compared with the hand-written spec and, in the slow
test, the training pipeline runs under kfp.local on it without an edit.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kfloop import spec as kspec
from kfloop.app.commands.init import InitRefused, propose

ROOT = Path(__file__).resolve().parents[1]
START = 1_704_067_200  # 2024-01-01T00:00:00Z
ROWS = 240


def _columns(n: int = ROWS, seed: int = 7, time: str = "iso_z") -> dict[str, list[str]]:
    """A churn table as raw text: ids, an ISO time, a yes/no label, "NA" in a number, a leak, a boolean
    of each spelling, a categorical int and a categorical string."""
    import datetime as dt

    rng = random.Random(seed)
    cols: dict[str, list[str]] = {k: [] for k in ("customer_id", "code", "signup", "age", "plan", "seats")}
    cols.update({k: [] for k in ("active", "newsletter", "refund", "spend", "churned")})
    for i in range(n):
        churned = rng.random() < 0.3
        t = dt.datetime.fromtimestamp(START + i * 3600 + rng.randrange(60), dt.UTC)
        signup = {
            "iso_z": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "iso_naive": t.strftime("%Y-%m-%d %H:%M:%S"),
            "iso_offset": t.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat(),
        }[time]
        cols["customer_id"].append(f"C{i:05d}")
        cols["code"].append(f"k{rng.getrandbits(32):08x}{i:04d}")
        cols["signup"].append(signup)
        cols["age"].append("NA" if rng.random() < 0.1 else f"{rng.uniform(18, 80):.1f}")
        cols["plan"].append(rng.choice(["basic", "pro", "team"]))
        cols["seats"].append(str(rng.randint(1, 5)))
        cols["active"].append(rng.choice(["true", "false"]))
        cols["newsletter"].append(rng.choice(["yes", "no"]))
        refund = (churned and rng.random() < 0.6) or rng.random() < 0.01  # asked for after leaving
        cols["refund"].append("requested" if refund else "not_requested")
        cols["spend"].append(f"{rng.gauss(50 + 10 * churned, 20):.2f}")
        cols["churned"].append("yes" if churned else "no")
    return cols


def _frame(cols: dict[str, list[str]]):
    import pandas as pd

    return pd.DataFrame(cols, dtype=str)


def _write_csv(path: Path, cols: dict[str, list[str]]) -> Path:
    names = list(cols)
    lines = [",".join(names)] + [",".join(cols[c][i] for c in names) for i in range(len(cols[names[0]]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _proposed(frame, label: str = "churned", **kw):
    text, review = propose(frame, label, **kw)
    return kspec.loads(text, origin="proposed"), text, review


def _kinds(spec) -> dict[str, str]:
    return {c.name: c.kind.value for c in spec.columns}


def _init(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kfloop.app.cli", "init", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )


def _error_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def churn():
    return _columns()


# ------------------------------------------------------------------------------------------ the guesses


def test_kinds_tokens_time_label_and_exclusions_are_guessed(churn):
    spec, text, review = _proposed(_frame(churn))
    assert _kinds(spec) == {
        "age": "numeric",
        "plan": "categorical_string",
        "seats": "categorical_int",
        "active": "boolean",
        "newsletter": "boolean",
        "spend": "numeric",
    }
    assert spec.missing_values == ("", "NA")
    assert [c.name for c in spec.columns if c.nullable] == ["age"]
    assert (spec.time.column, spec.time.format.value) == ("signup", "iso8601")
    assert (spec.label_spec.column, spec.label_spec.positive) == ("churned", "yes")
    assert set(spec.exclude) == {"customer_id", "code", "refund"}
    reasons = {line.split()[1].rstrip(":"): line for line in review if line.lstrip().startswith("excluded")}
    assert "its name looks like an id" in reasons["customer_id"]
    assert "unique per row" in reasons["code"]
    assert "label leak" in reasons["refund"] and "'requested'" in reasons["refund"]
    assert "proposed: every value is an ISO 8601 time" in next(r for r in review if "time " in r)
    assert spec.slices == ("plan",) and text.startswith("# Proposed by `kfloop init`")
    assert spec.check_data(_frame(churn)) == []


def test_a_few_integers_holding_minus_one_are_proposed_as_text_not_categorical_int(churn):
    # -1 is categorical_int's missing-value sentinel: a real -1 would be logged as missing when served
    cols = dict(churn, seats=[str(i % 5 - 2) for i in range(len(churn["seats"]))])
    spec, _, review = _proposed(_frame(cols))
    assert _kinds(spec)["seats"] == "categorical_string"
    (line,) = [r for r in review if "seats:" in r]
    assert "holds -1, which categorical_int reserves for a missing value" in line
    assert spec.check_data(_frame(cols)) == []
    # without -1 the same small set of integers stays categorical_int
    cols = dict(churn, seats=[str(i % 5) for i in range(len(churn["seats"]))])
    assert _kinds(_proposed(_frame(cols))[0])["seats"] == "categorical_int"


@pytest.mark.parametrize("time", ["iso_naive", "iso_offset"])
def test_iso_times_without_and_with_an_offset_are_proposed(time):
    cols, utc = _columns(time=time), _columns(time="iso_z")
    spec, _, _ = _proposed(_frame(cols))
    assert (spec.time.column, spec.time.format.value) == ("signup", "iso8601")
    assert cols["signup"][0] != utc["signup"][0]
    seconds = spec.event_seconds(_frame(cols)["signup"])
    assert seconds.tolist() == spec.event_seconds(_frame(utc)["signup"]).tolist()  # naive times are UTC
    assert int(seconds.iloc[0]) - START in range(60)


@pytest.mark.parametrize(("scale", "fmt"), [(1, "epoch_seconds"), (1000, "epoch_millis")])
def test_epoch_times_with_time(churn, scale, fmt):
    cols = {k: v for k, v in churn.items() if k != "signup"}
    cols["ts"] = [str((START + i * 3600) * scale) for i in range(ROWS)]
    spec, _, review = _proposed(_frame(cols), time="ts")
    assert (spec.time.column, spec.time.format.value) == ("ts", fmt)
    assert f"  time      ts: {fmt}" in review
    assert int(spec.event_seconds(_frame(cols)["ts"]).iloc[1]) == START + 3600
    no_time, _, _ = _proposed(_frame(cols))  # without --time an integer column is not taken for a time
    assert no_time.time is None and "ts" in no_time.exclude  # its integers only increase: id-like


def test_numeric_only_tokens_and_spellings_of_booleans(churn):
    cols = dict(churn)
    cols["age"] = ["?" if v == "NA" else v for v in churn["age"]]  # "?" only among numbers: a token
    cols["plan"] = ["-" if i % 9 == 0 else v for i, v in enumerate(churn["plan"])]  # text: "-" is a value
    cols["flag"] = [random.Random(i).choice(["T", "F"]) for i in range(ROWS)]
    spec, _, _ = _proposed(_frame(cols))
    assert spec.missing_values == ("", "?")
    assert spec.feature("age").nullable and not spec.feature("plan").nullable
    assert _kinds(spec)["flag"] == "boolean" and spec.check_data(_frame(cols)) == []


def test_a_legit_correlated_feature_is_kept_and_constant_columns_dropped(churn):
    cols = dict(churn, region=["north"] * ROWS)
    spec, _, review = _proposed(_frame(cols))
    assert "spend" in spec.input_names and "region" in spec.exclude
    assert any("region: one value in the sample ('north')" in r for r in review)


def test_integer_label_with_an_obvious_positive(churn):
    cols = dict(churn, churned=["1" if v == "yes" else "0" for v in churn["churned"]])
    spec, _, _ = _proposed(_frame(cols))
    assert spec.label_spec.positive == 1
    assert int(spec.label_values(_frame(cols)).sum()) == churn["churned"].count("yes")


def test_a_missing_label_is_a_token_not_a_third_class(churn):
    cols = dict(churn, age=[v if v != "NA" else "30" for v in churn["age"]])  # "NA" only in the label now
    cols["churned"] = ["NA" if i % 17 == 0 else v for i, v in enumerate(churn["churned"])]
    spec, _, _ = _proposed(_frame(cols))
    assert spec.missing_values == ("", "NA") and spec.label_spec.positive == "yes"
    assert int(spec.label_values(_frame(cols)).isna().sum()) == len(range(0, ROWS, 17))


def test_the_sample_is_drawn_uniformly_in_file_order(churn, tmp_path):
    from kfloop.app import init_guess

    csv = _write_csv(tmp_path / "d.csv", churn)
    frame, total = init_guess.sample(str(csv), rows=50)
    assert total == ROWS and len(frame) == 50 and list(frame.columns) == list(churn)
    positions = [churn["customer_id"].index(v) for v in frame["customer_id"]]
    assert positions == sorted(positions) and positions[-1] > ROWS // 2  # not just the first rows
    again, _ = init_guess.sample(str(csv), rows=50)
    assert again.equals(frame)  # seeded
    whole, _ = init_guess.sample(str(csv))
    assert whole["code"].tolist() == churn["code"]


@pytest.mark.parametrize(
    ("values", "positive", "task", "expected"),
    [
        (lambda i: f"{i * 1.5:.1f}", None, "binary", "--task binary: label 'churned' has 240 numeric values"),
        (lambda i: str(i % 4), None, "binary", "(it looks like a multiclass task)"),
        (lambda i: ["red", "green", "blue"][i % 3], None, "binary", "has 3 values ('blue', 'green', 'red')"),
        (lambda i: ["cat", "dog"][i % 2], None, None, "values 'cat', 'dog': which one is the positive class"),
        (
            lambda i: ["cat", "dog"][i % 2],
            "bird",
            None,
            "--positive 'bird' is not a value of label 'churned'",
        ),
    ],
)
def test_labels_refused(churn, values, positive, task, expected):
    """Binary labels (the tasks' own refusals are in test_init_tasks.py)."""
    cols = dict(churn, churned=[values(i) for i in range(ROWS)])
    with pytest.raises(InitRefused) as e:
        propose(_frame(cols), "churned", positive=positive, task=task)
    assert expected in e.value.message and e.value.code == 2
    if "numeric" in expected:
        assert "regression task" in e.value.message


# --------------------------------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def written(churn, tmp_path_factory):
    """``kfloop init`` on the churn CSV: ``(output dir, csv, completed process)``."""
    tmp = tmp_path_factory.mktemp("init")
    csv = _write_csv(tmp / "churn_data.csv", churn)
    r = _init("--data", str(csv), "--label", "churned", "--output", str(tmp / "out"))
    return tmp / "out", csv, r


def test_cli_writes_a_spec_that_loads_and_a_schema_that_parses(written):
    from kfloop.tfdv import schema as kschema

    out, csv, r = written
    assert r.returncode == 0, r.stderr[-3000:]
    spec = kspec.load(str(out / "spec.yaml"))
    assert spec.name == "churn-data" and set(spec.exclude) == {"customer_id", "code", "refund"}
    schema = kschema.load_schema(out / "schema.pbtxt")
    assert [f.name for f in schema.feature] == list(spec.dataset_columns)
    assert f"wrote {out / 'spec.yaml'} and {out / 'schema.pbtxt'} from all {ROWS} rows" in r.stdout
    assert (
        f"then: kfloop run --spec {out / 'spec.yaml'} --schema {out / 'schema.pbtxt'} --data {csv}"
        in r.stdout
    )


def test_cli_refuses_an_existing_output_and_changes_nothing(written):
    out, csv, r = written
    assert r.returncode == 0, r.stderr[-3000:]
    (out / "schema.pbtxt").unlink()
    before = (out / "spec.yaml").read_bytes()
    r2 = _init("--data", str(csv), "--label", "churned", "--output", str(out))
    assert r2.returncode == 1
    assert _error_line(r2) == (
        f"kfloop init: --output {out / 'spec.yaml'}: already exists (pass --overwrite to replace it)"
    )
    assert (out / "spec.yaml").read_bytes() == before and not (out / "schema.pbtxt").exists()


@pytest.mark.parametrize(
    ("label", "values", "extra", "expected"),
    [
        ("churned", lambda i: str(i), ["--task", "binary"], "--task binary: label 'churned' has 240 numeric"),
        ("churned", lambda i: ["a", "b"][i % 2], [], "which one is the positive class (1) is not obvious"),
        ("churned", lambda i: ["a", "b"][i % 2], ["--positive", "c"], "--positive 'c' is not a value"),
        ("nope", lambda i: "x", [], "--label 'nope' is not a column of the data"),
    ],
)
def test_cli_refusals_are_one_line_exit_2_and_write_nothing(churn, tmp_path, label, values, extra, expected):
    csv = _write_csv(tmp_path / "d.csv", dict(churn, churned=[values(i) for i in range(ROWS)]))
    r = _init("--data", str(csv), "--label", label, "--output", str(tmp_path / "out"), *extra)
    assert r.returncode == 2
    line = _error_line(r)
    assert line.startswith("kfloop init: ") and expected in line, line
    assert not (tmp_path / "out").exists() and r.stdout == ""


# ---------------------------------------------------------------------------------- the stops, no edit

STOPS_SPEC = ROOT / "examples" / "mpls_stops" / "spec.yaml"
STOPS_EXCLUDED = {"rownames", "idNum", "vehicleSearch"}


@pytest.fixture(scope="module")
def stops_init(stops_sample, tmp_path_factory):
    """The spec ``kfloop init`` writes for the stops sample (no --time, no --positive)."""
    out = tmp_path_factory.mktemp("stops-init")
    r = _init(
        "--data", str(stops_sample), "--label", "personSearch", "--output", str(out), "--name", "mpls-stops"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out / "spec.yaml", r.stdout


def test_stops_proposal_is_the_hand_written_spec_less_the_known_facts(stops_init):
    path, stdout = stops_init
    got, hand = kspec.load(str(path)), kspec.load(str(STOPS_SPEC))
    assert (got.name, got.time, got.label_spec) == (hand.name, hand.time, hand.label_spec)
    assert set(got.exclude) == set(hand.exclude) == STOPS_EXCLUDED
    assert _kinds(got) == _kinds(hand)  # every feature, in the data's order, with the same kind
    assert [c.name for c in got.columns if c.nullable] == [c.name for c in hand.columns if c.nullable]
    assert "excluded  vehicleSearch: label leak: 'YES' marks" in stdout
    # What a person added by hand: the empty cell is not one of its tokens; domains, ranges, descriptions,
    # per-feature drift (citationIssued recorded only, lat/long at 0.15) and a second slice.
    assert (got.missing_values, hand.missing_values) == (("", "NA"), ("NA",))
    assert not any(c.domain or c.range or c.description or c.drift for c in got.columns)
    assert {c.name for c in hand.columns if c.domain or c.range} == {
        "problem",
        "lat",
        "long",
        "policePrecinct",
    }
    assert {c.name: c.drift.mode for c in hand.columns if c.drift and c.drift.mode} == {
        "citationIssued": kspec.DriftMode.RECORD
    }
    assert (got.slices, hand.slices) == (("problem",), ("problem", "policePrecinct"))
    assert got.drift_threshold("lat") == 0.1 and hand.drift_threshold("lat") == 0.15


@pytest.mark.slow
def test_the_training_pipeline_runs_on_what_init_wrote(stops_init, stops_sample, tmp_path):
    """The issue's promise: no edit between ``kfloop init`` and a training run (the pipeline ``kfloop run``
    starts with), on ordinary data: a version is pushed whose spec and served inputs are init's."""
    import tensorflow as tf

    from kfloop import contract
    from kfloop.app.local import run_pipeline
    from kfloop.store import ModelStore
    from pipelines import training

    path, _ = stops_init
    spec = kspec.load(str(path))
    store_uri = str(tmp_path / "store")
    run_pipeline(
        training.create_pipeline(),
        tmp_path / "root",
        spec=str(path),
        source=str(stops_sample),
        store_uri=store_uri,
        model_name=spec.name,
        schema=str(path.parent / "schema.pbtxt"),  # init's schema validates the training window, as proposed
        deploy_mode="local",
        epochs=3,
    )
    store = ModelStore(store_uri)
    assert store.versions(spec.name) == ["v0001"]
    assert store.aliases(spec.name).get("champion") == "v0001"
    version_dir = store.model_uri(spec.name, "v0001")
    stored = contract.read_spec(version_dir)
    assert stored.digest() == spec.digest() and not STOPS_EXCLUDED & set(stored.input_names)
    served = tf.saved_model.load(version_dir).signatures[contract.RAW_SIGNATURE]
    assert set(served.structured_input_signature[1]) == set(spec.input_names)
    assert contract.check_model(version_dir, stored) == []
    from kfloop.tfdv.schema import load_schema

    assert load_schema(contract.schema_uri(version_dir)) == load_schema(path.parent / "schema.pbtxt")
