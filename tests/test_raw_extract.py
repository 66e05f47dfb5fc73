"""Raw taxi extracts as they come: `kfloop ingest`, and `kfloop validate` recognising and cleaning them."""

import json

import pandas as pd
import pytest

from kfloop import datasets
from kfloop.app import cli
from kfloop.app.commands.validate import EXIT_BLOCKING
from tests.conftest import TAXI_SPEC_PATH

SPEC = ["--spec", TAXI_SPEC_PATH]


@pytest.fixture(scope="module")
def raw_month(taxi_csv):
    """~2,000 real raw rows (the CSV columns as they come, with ``tips``), as strings."""
    raw = pd.read_csv(taxi_csv, dtype=str, keep_default_na=False)
    return raw.iloc[5000:7000].reset_index(drop=True)


def _validate(frame, tmp_path, capsys, *extra):
    path = tmp_path / "raw.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    code = cli.main(["validate", *SPEC, "--data", str(path), "--output-dir", str(out), *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err, out


def test_clean_raw_extract_passes_and_says_it_was_cleaned(raw_month, tmp_path, capsys, taxi_spec):
    code, out, err, outdir = _validate(raw_month, tmp_path, capsys)
    assert code == 0, (out, err)
    assert "raw extract" in out and "deriving big_tipper" in out
    assert out.count("PASSED") == 1 and f"{len(raw_month)} rows" in out
    ingested = datasets.read_dataset(str(outdir / "ingested.csv"), taxi_spec)
    assert list(ingested.columns) == list(taxi_spec.dataset_columns)
    expected = (raw_month["tips"].astype(float) > 0.2 * raw_month["fare"].astype(float)).astype(int)
    assert ingested[taxi_spec.label.name].astype(int).tolist() == expected.tolist()


def _set(col, value, rows=slice(0, 3)):
    def corrupt(df):
        df = df.copy()
        df.loc[df.index[rows], col] = value
        return df

    return corrupt


def _drop(col):
    return lambda df: df.drop(columns=[col])


def _all_empty(col):
    return _set(col, "", slice(None))


# The corruptions of tests/test_validate.py, applied to the raw form, and what the refusal must name.
@pytest.mark.parametrize(
    ("corrupt", "needles"),
    [
        (_drop("fare"), ["missing column(s): fare"]),
        (_set("trip_miles", "3.2 mi", slice(40, 41)), ["'trip_miles'", "'3.2 mi'", "CSV line 42"]),
        (
            _set("payment_type", "Bitcoin", slice(100, 200)),
            ["ENUM_TYPE_UNEXPECTED", "CSV line 102", "Bitcoin"],
        ),
        (_all_empty("company"), ["company", "FEATURE_TYPE_NOT_PRESENT"]),
        (_set("pickup_latitude", "48.5", slice(7, 9)), ["FLOAT_TYPE_BIG_FLOAT", "CSV line 9", "48.5"]),
        (
            _set("trip_start_hour", "25", slice(11, 12)),
            ["INT_TYPE_BIG_INT", "CSV line 13", "trip_start_hour"],
        ),
        (_set("trip_start_hour", "7.5", slice(11, 12)), ["'trip_start_hour'", "non-integer", "CSV line 13"]),
        (_drop("tips"), ["big_tipper", "SCHEMA_MISSING_COLUMN", "'tips' column"]),
    ],
    ids=[
        "dropped-column",
        "numeric-as-text",
        "unseen-category",
        "all-null",
        "float-range",
        "int-range",
        "fraction-in-int",
        "no-label-source",
    ],
)
def test_corrupt_raw_extract_is_refused_naming_row_and_column(corrupt, needles, raw_month, tmp_path, capsys):
    code, out, err, _ = _validate(corrupt(raw_month), tmp_path, capsys)
    assert code == EXIT_BLOCKING, (out, err)
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def test_range_anomaly_row_is_in_the_summary(raw_month, tmp_path, capsys):
    code, _, _, outdir = _validate(_set("pickup_latitude", "48.5", slice(7, 9))(raw_month), tmp_path, capsys)
    assert code == EXIT_BLOCKING
    summary = json.loads((outdir / "anomalies" / "summary.json").read_text())
    (finding,) = [f for f in summary["anomalies"] if f["feature"] == "pickup_latitude"]
    assert finding["first_row"] == {"data_row": 8, "csv_line": 9, "value": "48.5"}


def test_missing_raw_file_is_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["validate", *SPEC, "--data", str(tmp_path / "nope.csv"), "--output-dir", str(tmp_path)])


def test_ingest_command_splits_and_no_split(taxi_csv, raw_month, tmp_path, capsys, taxi_spec):
    argv = ["ingest", *SPEC, "--source", str(taxi_csv), "--output-dir", str(tmp_path / "s")]
    assert cli.main([*argv, "--cutoff", "2015-01-01"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["rows_read"] == 15002
    assert counts["train_rows"] + counts["eval_rows"] + counts["live_rows"] == 15002
    assert len(datasets.read_dataset(counts["live"], taxi_spec)) == counts["live_rows"]
    assert counts["live_window"][0].startswith("2015-01-01")
    # Without --cutoff: the middle row by time (no dataset-specific default date).
    assert cli.main([*argv, "--overwrite"]) == 0
    middle = json.loads(capsys.readouterr().out)
    assert abs(middle["live_rows"] - 15002 / 2) < 20  # rows sharing the middle time go live together

    raw_month.to_csv(tmp_path / "m.csv", index=False)
    argv = [
        "ingest",
        *SPEC,
        "--source",
        str(tmp_path / "m.csv"),
        "--no-split",
        "--output-dir",
        str(tmp_path / "n"),
    ]
    assert cli.main(argv) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["rows_read"] == len(raw_month)
    again = datasets.read_dataset(one["dataset"], taxi_spec)
    assert list(again.columns) == list(taxi_spec.dataset_columns)
    # A Dataset-form file goes through ingest unchanged.
    argv = ["ingest", *SPEC, "--source", one["dataset"], "--no-split", "--output-dir", str(tmp_path / "d")]
    assert cli.main(argv) == 0
    twice = json.loads(capsys.readouterr().out)
    assert (tmp_path / "d" / "dataset.csv").read_bytes() == (tmp_path / "n" / "dataset.csv").read_bytes()
    assert twice["rows_read"] == len(raw_month)


def test_ingest_command_names_the_bad_value(raw_month, tmp_path):
    bad = raw_month.copy()
    bad.loc[3, "fare"] = "twelve"
    bad.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(
        SystemExit, match=r"kfloop ingest: column 'fare': non-numeric value 'twelve' .*CSV line 5"
    ):
        cli.main(
            [
                "ingest",
                *SPEC,
                "--source",
                str(tmp_path / "m.csv"),
                "--no-split",
                "--output-dir",
                str(tmp_path),
            ]
        )


def test_raw_skew_data_is_cleaned_too(raw_month, tmp_path, capsys):
    raw_month.sample(frac=1.0, random_state=3).to_csv(tmp_path / "other.csv", index=False)  # same rows
    code, out, err, outdir = _validate(
        raw_month, tmp_path, capsys, "--skew-data", str(tmp_path / "other.csv")
    )
    assert code == 0, (out, err)
    assert out.count("raw extract") == 2 and "skew: 0/16 features above threshold" in out
    assert (outdir / "ingested_skew.csv").exists()
