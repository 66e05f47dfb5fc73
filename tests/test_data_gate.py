"""The data gate's row checks (issue 23, item 8): non-finite numbers, event times out of range and repeated
header names are refused by ingest and by validate, raw extract or Dataset form, naming column and line."""

import json
import re

import pandas as pd
import pytest

from components.gate import gate
from kfloop import clean as I
from kfloop import config
from kfloop.app import cli
from kfloop.app.commands.validate import EXIT_BLOCKING
from kfloop.ingest import ingest
from kfloop.tfdv import ops as V
from kfloop.tfdv import schema as kschema
from tests.conftest import TAXI_SPEC_PATH

SPEC = ["--spec", TAXI_SPEC_PATH]
#: The taxi event-time column.
EVENT_TIME = "trip_start_timestamp"

#: A 1967 trip, one in the year 5138 and the int64 maximum (all seen in the attack of issue 23).
OUT_OF_RANGE_TIMES = ["-86400", "99999999999", str(2**63 - 1)]
NON_FINITE_SPELLINGS = ["inf", "Infinity", "-inf", "+INF", "NaN", "nan", "1e400"]


@pytest.fixture(scope="module")
def raw(taxi_csv):
    """300 real raw rows (2013), as strings."""
    return pd.read_csv(taxi_csv, dtype=str, keep_default_na=False).head(300)


def _with(frame, column, value, row=7):
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame


def _duplicate_fare(frame):
    """The frame with a second ``fare`` column at position 5 (1-based), its values all 0."""
    out = frame.copy()
    out.insert(4, "fare", "0", allow_duplicates=True)
    return out


def _ingest(tmp_path, frame, spec, **kw):
    frame.to_csv(tmp_path / "x.csv", index=False)
    paths = [str(tmp_path / f"{k}.csv") for k in ("train", "eval", "live")]
    kw.setdefault("event_times", config.EventTimeRange())  # the configured range (earliest 2000-01-01)
    return ingest(str(tmp_path / "x.csv"), spec, "2014-01-01", *paths, **kw)


# ------------------------------------------------------------------------------------ raw form: ingest


@pytest.mark.parametrize("text", NON_FINITE_SPELLINGS)
@pytest.mark.parametrize("column", ["fare", "trip_seconds", "tips", "trip_start_hour"])
def test_ingest_refuses_non_finite_numbers(tmp_path, raw, column, text, taxi_spec):
    with pytest.raises(
        I.IngestError, match=rf"column '{column}': non-finite value '{re.escape(text)}' .*CSV line 9"
    ):
        _ingest(tmp_path, _with(raw, column, text), taxi_spec)
    assert not list(tmp_path.glob("train.csv"))


@pytest.mark.parametrize("value", OUT_OF_RANGE_TIMES)
def test_ingest_refuses_event_times_out_of_range(tmp_path, raw, value, taxi_spec):
    with pytest.raises(
        I.IngestError,
        match=rf"column 'trip_start_timestamp': event time '{value}' is outside the accepted range "
        r"2000-01-01T00:00:00\+00:00 \.\. .*CSV line 9",
    ):
        _ingest(tmp_path, _with(raw, EVENT_TIME, value), taxi_spec)
    assert not (tmp_path / "train.csv").exists()


def test_ingest_range_is_configured(tmp_path, raw, taxi_spec):
    first = int(raw[EVENT_TIME].astype(int).min())
    strict = config.EventTimeRange(earliest=str(first + 1))
    with pytest.raises(I.IngestError, match=f"event time '{first}' is outside the accepted range"):
        _ingest(tmp_path, raw, taxi_spec, event_times=strict)
    loose = config.EventTimeRange(earliest=str(first))
    assert _ingest(tmp_path, raw, taxi_spec, event_times=loose).rows_read == 300


def test_ingest_default_range_is_generic(tmp_path, raw, taxi_spec):
    """Without a configured range: the Unix epoch .. now + a day (nothing about taxi dates)."""
    assert _ingest(tmp_path, _with(raw, EVENT_TIME, "86400"), taxi_spec, event_times=None).rows_read == 300
    with pytest.raises(I.IngestError, match=r"outside the accepted range 1970-01-01T00:00:00\+00:00"):
        _ingest(tmp_path, _with(raw, EVENT_TIME, "-86400"), taxi_spec, event_times=None)


def test_ingest_refuses_a_repeated_header_name(tmp_path, raw, taxi_spec):
    with pytest.raises(
        I.IngestError, match=r"column name 'fare' appears 2 times in the header \(columns 2, 5\)"
    ):
        _ingest(tmp_path, _duplicate_fare(raw), taxi_spec)
    assert not (tmp_path / "train.csv").exists()


def test_ingest_command_names_column_and_line(tmp_path, raw):
    _with(raw, "fare", "Infinity", row=3).to_csv(tmp_path / "m.csv", index=False)
    argv = [
        "ingest",
        *SPEC,
        "--source",
        str(tmp_path / "m.csv"),
        "--no-split",
        "--output-dir",
        str(tmp_path / "o"),
    ]
    with pytest.raises(
        SystemExit, match=r"^kfloop ingest: column 'fare': non-finite value 'Infinity' .*CSV line 5"
    ):
        cli.main(argv)
    assert not (tmp_path / "o" / "dataset.csv").exists()


# -------------------------------------------------------------------------- raw form: kfloop validate


@pytest.mark.parametrize(
    ("corrupt", "needles"),
    [
        (lambda r: _with(r, "fare", "inf"), ["column 'fare': non-finite value 'inf'", "CSV line 9"]),
        (
            lambda r: _with(r, EVENT_TIME, "-86400"),
            ["column 'trip_start_timestamp': event time '-86400' is outside", "CSV line 9"],
        ),
        (_duplicate_fare, ["column name 'fare' appears 2 times", "columns 2, 5"]),
    ],
    ids=["non-finite", "event-time", "repeated-name"],
)
def test_validate_blocks_a_raw_extract(corrupt, needles, raw, tmp_path, capsys):
    corrupt(raw).to_csv(tmp_path / "raw.csv", index=False)
    code = cli.main(
        ["validate", *SPEC, "--data", str(tmp_path / "raw.csv"), "--output-dir", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == EXIT_BLOCKING, err
    assert "BLOCKED" in err and "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


# ---------------------------------------------------------------------------------- Dataset form


@pytest.fixture(scope="module")
def eval_rows(taxi_split):
    return V.read_frame(taxi_split["eval"])


def _validate(frame, tmp_path, spec, **kw):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return V.run_validation(str(path), spec=spec, schema=_schema(), **kw)


def _schema():
    return V.load_schema(kschema.default_path(TAXI_SPEC_PATH))


def test_dataset_with_infinity_blocks_naming_column_and_line(eval_rows, tmp_path, taxi_spec):
    result = _validate(_with(eval_rows, "fare", "Infinity", row=40), tmp_path, taxi_spec)
    (finding,) = [f for f in result.blocking if f["type"] == "NON_FINITE_VALUE"]
    assert finding["feature"] == "fare" and "CSV line 42" in finding["description"]
    assert finding["first_row"] == {"data_row": 41, "csv_line": 42, "value": "Infinity"}
    assert {f["feature"] for f in result.findings} == {"fare"}, result.findings


def test_dataset_with_event_times_out_of_range_blocks(eval_rows, tmp_path, taxi_spec):
    frame = _with(_with(eval_rows, EVENT_TIME, "99999999999", row=3), EVENT_TIME, "-86400", row=9)
    result = _validate(frame, tmp_path, taxi_spec)
    (finding,) = result.blocking
    assert (finding["feature"], finding["type"]) == (EVENT_TIME, "EVENT_TIME_OUT_OF_RANGE")
    assert "event time '99999999999'" in finding["description"] and "2 rows" in finding["description"]
    assert finding["first_row"]["csv_line"] == 5


def test_dataset_with_a_repeated_header_name_blocks_and_validates_the_first(eval_rows, tmp_path, capsys):
    path = tmp_path / "data.csv"
    _duplicate_fare(eval_rows).to_csv(path, index=False)
    out = tmp_path / "out"
    code = cli.main(["validate", *SPEC, "--data", str(path), "--output-dir", str(out)])
    cap = capsys.readouterr()
    assert code == EXIT_BLOCKING, (cap.out, cap.err)
    assert "DUPLICATE_COLUMN_NAME" in cap.err and "columns 3, 5" in cap.err
    summary = json.loads((out / "anomalies" / "summary.json").read_text())
    assert [(f["feature"], f["type"]) for f in summary["anomalies"]] == [("fare", "DUPLICATE_COLUMN_NAME")]
    assert summary["num_examples"] == len(eval_rows)
    with pytest.raises(V.BlockingAnomaliesError, match="fare: DUPLICATE_COLUMN_NAME"):
        gate.check(str(out / "anomalies"))


def test_skew_data_is_checked_too(eval_rows, taxi_split, tmp_path, taxi_spec):
    bad = tmp_path / "skew.csv"
    _with(eval_rows, "trip_miles", "-inf").to_csv(bad, index=False)
    result = V.run_validation(taxi_split["eval"], spec=taxi_spec, schema=_schema(), skew_data=str(bad))
    (finding,) = [f for f in result.blocking if f["type"] == "NON_FINITE_VALUE"]
    assert finding["description"].startswith("skew data: column 'trip_miles'")


def test_statistics_refuse_a_repeated_header_name(eval_rows, tmp_path, taxi_spec):
    path = tmp_path / "data.csv"
    _duplicate_fare(eval_rows.head(20)).to_csv(path, index=False)
    with pytest.raises(V.ValidationError, match="column name 'fare' appears 2 times"):
        V.compute_statistics(str(path), spec=taxi_spec)
