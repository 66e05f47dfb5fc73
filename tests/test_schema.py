"""The committed schema, ``kfloop schema infer`` and ``kfloop validate`` on the real taxi data."""

import json

import pytest

from kfloop import features as F
from kfloop.app import cli
from kfloop.app.commands.validate import EXIT_BLOCKING
from kfloop.tfdv import ops as V
from kfloop.tfdv import schema as kschema


def test_committed_schema_covers_every_column_and_environment():
    schema = kschema.load()
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == set(F.DATASET_COLUMNS)
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    assert list(by_name[F.LABEL.name].not_in_environment) == ["SERVING"]
    for f in F.features_of(F.Kind.CATEGORICAL_INT):
        assert by_name[f.name].int_domain.is_categorical, f.name
    for f in F.MODEL_FEATURES:
        if not f.nullable:
            assert by_name[f.name].presence.min_fraction == 1.0, f.name
    assert by_name["trip_start_hour"].int_domain.max == 23
    assert by_name["payment_type"].distribution_constraints.min_domain_mass == 0.99


def test_load_rejects_a_broken_schema(tmp_path):
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("feature { name: 'x' type: NOPE }\n")
    with pytest.raises(V.ValidationError, match="bad.pbtxt.*not a valid TFDV Schema"):
        V.load_schema(str(bad))
    with pytest.raises(V.ValidationError, match="does not exist"):
        V.load_schema(str(tmp_path / "missing.pbtxt"))


def test_schema_infer_on_the_train_split_matches_the_committed_schema(taxi_split, capsys):
    before = kschema.SCHEMA_PATH.read_text()
    assert cli.main(["schema", "infer", "--data", taxi_split["train"]]) == 0
    assert "schema unchanged" in capsys.readouterr().out
    assert kschema.SCHEMA_PATH.read_text() == before


def test_schema_infer_prints_a_diff_and_writes_only_when_asked(taxi_split, tmp_path, capsys):
    target = tmp_path / "schema.pbtxt"
    target.write_text(kschema.SCHEMA_PATH.read_text())
    frame = V.read_frame(taxi_split["live"])  # 2015-16: new companies and the payment type "Prcard"
    data = tmp_path / "live.csv"
    frame.to_csv(data, index=False)
    assert cli.main(["schema", "infer", "--data", str(data), "--schema", str(target)]) == 0
    out = capsys.readouterr().out
    assert '+  value: "Prcard"' in out and "NOT changed" in out
    assert target.read_text() == kschema.SCHEMA_PATH.read_text()
    assert cli.main(["schema", "infer", "--data", str(data), "--schema", str(target), "--write"]) == 0
    assert 'value: "Prcard"' in target.read_text()


def test_validate_cli_clean_exits_zero(taxi_split, tmp_path, capsys):
    out_dir = tmp_path / "v"
    code = cli.main(["validate", "--data", taxi_split["eval"], "--output-dir", str(out_dir)])
    assert code == 0
    assert capsys.readouterr().out.startswith("PASSED")
    assert (out_dir / "report.html").is_file() and (out_dir / "statistics.pb").is_file()
    # The statistics written here are usable as a drift reference for serving data without a label.
    live = tmp_path / "live.csv"
    V.read_frame(taxi_split["live"]).drop(columns=[F.LABEL.name]).to_csv(live, index=False)
    code = cli.main(
        [
            "validate",
            "--data",
            str(live),
            "--environment",
            "SERVING",
            "--reference-stats",
            str(out_dir / "statistics.pb"),
            "--output-dir",
            str(tmp_path / "v2"),
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "v2" / "anomalies" / "summary.json").read_text())
    assert len(summary["drift"]) == len(F.MODEL_FEATURES)
    assert "drift:" in capsys.readouterr().out


def test_validate_cli_blocking_exit_code_lists_anomalies(taxi_split, tmp_path, capsys):
    data = tmp_path / "nolabel.csv"
    V.read_frame(taxi_split["eval"]).drop(columns=[F.LABEL.name]).to_csv(data, index=False)
    code = cli.main(["validate", "--data", str(data), "--output-dir", str(tmp_path / "v")])
    assert code == EXIT_BLOCKING == 3
    captured = capsys.readouterr()
    assert captured.out.startswith("BLOCKED")
    assert f"{F.LABEL.name}: SCHEMA_MISSING_COLUMN" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "--data", "/nonexistent/x.csv"], "data file '/nonexistent/x.csv' does not exist"),
        (["schema", "infer", "--data", "/nonexistent/x.csv"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line(argv, message, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, *(["--output-dir", str(tmp_path)] if argv[0] == "validate" else [])])
    assert message in str(exc.value.code) and "\n" not in str(exc.value.code)


def test_cli_bad_environment_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["validate", "--data", "x.csv", "--environment", "PROD"])
    assert exc.value.code == 2
    assert "invalid choice: 'PROD'" in capsys.readouterr().err
