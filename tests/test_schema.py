"""The committed taxi schema, ``kfloop schema infer --spec`` and ``kfloop validate --spec`` on the real taxi
data; the schema a synthetic non-taxi spec gives."""

import json
from pathlib import Path

import pytest

from kfloop import spec as S
from kfloop.app import cli
from kfloop.app.commands.validate import EXIT_BLOCKING
from kfloop.tfdv import ops as V
from kfloop.tfdv import schema as kschema
from tests import synthetic
from tests.conftest import TAXI_SPEC_PATH

#: The committed taxi schema (kept next to the taxi spec).
SCHEMA_PATH = kschema.default_path(TAXI_SPEC_PATH)
SPEC = ["--spec", TAXI_SPEC_PATH]


def test_committed_schema_covers_every_column_and_environment(taxi_spec):
    F = taxi_spec
    schema = kschema.load(SCHEMA_PATH)
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == set(F.dataset_columns)
    assert list(schema.default_environment) == ["TRAINING", "SERVING"]
    assert list(by_name[F.label.name].not_in_environment) == ["SERVING"]
    for f in F.features_of(S.Kind.CATEGORICAL_INT):
        assert by_name[f.name].int_domain.is_categorical, f.name
    for f in F.model_features:
        if not f.nullable:
            assert by_name[f.name].presence.min_fraction == 1.0, f.name
    assert by_name["trip_start_hour"].int_domain.max == 23
    assert by_name["payment_type"].distribution_constraints.min_domain_mass == 0.99
    # Drift comparators from the spec: thresholds per feature, none where the mode is off, on the time
    # column or on the label.
    assert by_name["fare"].drift_comparator.jensen_shannon_divergence.threshold == 0.15
    assert by_name["payment_type"].drift_comparator.infinity_norm.threshold == 0.075
    for name in ("pickup_census_tract", F.event_time.name, F.label.name):
        assert not by_name[name].HasField("drift_comparator"), name


def test_load_rejects_a_broken_schema(tmp_path):
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("feature { name: 'x' type: NOPE }\n")
    with pytest.raises(V.ValidationError, match="bad.pbtxt.*not a valid TFDV Schema"):
        V.load_schema(str(bad))
    with pytest.raises(V.ValidationError, match="does not exist"):
        V.load_schema(str(tmp_path / "missing.pbtxt"))


def test_schema_infer_on_the_train_split_matches_the_committed_schema(taxi_split, capsys):
    before = SCHEMA_PATH.read_text()
    assert cli.main(["schema", "infer", *SPEC, "--data", taxi_split["train"]]) == 0
    assert "schema unchanged" in capsys.readouterr().out
    assert SCHEMA_PATH.read_text() == before


def test_schema_infer_from_the_raw_taxi_csv_matches_too(taxi_csv, tmp_path, capsys):
    """The committed schema is what `kfloop schema infer --spec examples/taxi/spec.yaml --data <taxi csv>`
    writes (the raw CSV is cleaned and labelled first; its tips column is dropped)."""
    assert cli.main(["schema", "infer", *SPEC, "--data", str(taxi_csv)]) == 0
    assert "schema unchanged" in capsys.readouterr().out


def test_schema_infer_prints_a_diff_and_writes_only_when_asked(taxi_split, tmp_path, capsys):
    target = tmp_path / "schema.pbtxt"
    target.write_text(SCHEMA_PATH.read_text())
    frame = V.read_frame(taxi_split["live"])  # 2015-16: presence of the nullable columns changes
    data = tmp_path / "live.csv"
    frame.to_csv(data, index=False)
    argv = ["schema", "infer", *SPEC, "--data", str(data), "--schema", str(target)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "-    min_fraction: 0.8" in out and "NOT changed" in out
    assert target.read_text() == SCHEMA_PATH.read_text()
    assert cli.main([*argv, "--write"]) == 0
    assert target.read_text() != SCHEMA_PATH.read_text()
    assert kschema.load(target).feature  # a valid schema was written


def test_schema_infer_works_on_a_non_taxi_spec(tmp_path, capsys):
    spec_path, data = synthetic.write(tmp_path, rows=400)
    argv = ["schema", "infer", "--spec", str(spec_path), "--data", str(data), "--write"]
    assert cli.main(argv) == 0
    schema = kschema.load(tmp_path / "schema.pbtxt")  # next to the spec by default
    by_name = {f.name: f for f in schema.feature}
    assert list(by_name) == list(S.load(spec_path).dataset_columns)  # visit_id (excluded) dropped
    assert by_name["age"].float_domain.min == 0 and by_name["age"].float_domain.max == 120
    assert by_name["member"].int_domain.max == 1 and by_name["member"].int_domain.is_categorical
    assert by_name["visits"].int_domain.min == 0 and by_name["visits"].int_domain.max == 9
    domain = {d.name: list(d.value) for d in schema.string_domain}[by_name["plan"].domain]
    assert domain == ["basic", "plus", "pro"]
    assert by_name["plan"].distribution_constraints.min_domain_mass == 0.95
    assert by_name["age"].presence.min_fraction < 1 and by_name["plan"].presence.min_fraction == 1
    assert list(by_name["churned"].not_in_environment) == ["SERVING"]
    assert by_name["plan"].drift_comparator.infinity_norm.threshold == 0.2
    assert not by_name["visits"].HasField("drift_comparator")  # drift mode off
    assert not by_name["when"].HasField("drift_comparator")
    assert "synthetic-visits" in (tmp_path / "schema.pbtxt").read_text().splitlines()[0]


def test_validate_cli_clean_exits_zero(taxi_split, taxi_spec, tmp_path, capsys):
    out_dir = tmp_path / "v"
    code = cli.main(["validate", *SPEC, "--data", taxi_split["eval"], "--output-dir", str(out_dir)])
    assert code == 0
    assert capsys.readouterr().out.startswith("PASSED")
    assert (out_dir / "report.html").is_file() and (out_dir / "statistics.pb").is_file()
    # The statistics written here are usable as a drift reference for serving data without a label.
    live = tmp_path / "live.csv"
    V.read_frame(taxi_split["live"]).drop(columns=[taxi_spec.label.name]).to_csv(live, index=False)
    code = cli.main(
        [
            "validate",
            *SPEC,
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
    assert len(summary["drift"]) == len(taxi_spec.model_features)
    assert "drift:" in capsys.readouterr().out


def test_validate_cli_blocking_exit_code_lists_anomalies(taxi_split, taxi_spec, tmp_path, capsys):
    data = tmp_path / "nolabel.csv"
    V.read_frame(taxi_split["eval"]).drop(columns=[taxi_spec.label.name]).to_csv(data, index=False)
    code = cli.main(["validate", *SPEC, "--data", str(data), "--output-dir", str(tmp_path / "v")])
    assert code == EXIT_BLOCKING == 3
    captured = capsys.readouterr()
    assert captured.out.startswith("BLOCKED")
    assert f"{taxi_spec.label.name}: SCHEMA_MISSING_COLUMN" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "--data", "/nonexistent/x.csv"], "data file '/nonexistent/x.csv' does not exist"),
        (["schema", "infer", "--data", "/nonexistent/x.csv"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line(argv, message, tmp_path):
    with pytest.raises(SystemExit) as exc:
        extra = ["--output-dir", str(tmp_path)] if argv[0] == "validate" else []
        cli.main(
            [argv[0], *SPEC, *argv[1:], *extra] if argv[0] == "validate" else [*argv[:2], *SPEC, *argv[2:]]
        )
    assert message in str(exc.value.code) and "\n" not in str(exc.value.code)


def test_cli_bad_environment_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["validate", *SPEC, "--data", "x.csv", "--environment", "PROD"])
    assert exc.value.code == 2
    assert "invalid choice: 'PROD'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (["validate"], ["--output-dir", "OUT"]),
        (["schema", "infer"], []),
        (["ingest"], ["--output-dir", "OUT"]),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_key_and_exit_2(command, extra, tmp_path, capsys):
    spec_path, data = synthetic.write(tmp_path, rows=50)
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(spec_path).read_text().replace("kind: boolean", "kind: bool"))
    data_opt = ["--source", str(data)] if command == ["ingest"] else ["--data", str(data)]
    argv = [
        *command,
        "--spec",
        str(bad),
        *data_opt,
        *[str(tmp_path / "o") if e == "OUT" else e for e in extra],
    ]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.count("\n") == 0, err
    assert "bad.yaml:" in err and "columns[3].kind: unknown kind 'bool'" in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "schema.pbtxt").exists()


def test_a_spec_that_does_not_fit_the_data_is_exit_2_naming_the_key(tmp_path, capsys):
    spec_path, data = synthetic.write(tmp_path, rows=50)
    never = tmp_path / "never.yaml"
    never.write_text(Path(spec_path).read_text().replace('positive: "yes"', 'positive: "si"'))
    for argv in (
        ["validate", "--spec", str(never), "--data", str(data), "--output-dir", str(tmp_path / "o")],
        ["ingest", "--spec", str(never), "--source", str(data), "--output-dir", str(tmp_path / "o")],
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.count("\n") == 0, err
        assert "label.positive: 'si' never occurs in label column 'churned'" in err, err
    assert not (tmp_path / "o" / "train.csv").exists()
