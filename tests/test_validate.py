"""TFDV data validation on real taxi rows: clean data passes, each corruption is caught and blocks."""

import html.parser
import json

import pytest

from kfloop import config
from kfloop.tfdv import ops as V
from kfloop.tfdv import schema as kschema
from tests.conftest import TAXI_SPEC_PATH


@pytest.fixture(scope="module")
def schema():
    return V.load_schema(kschema.default_path(TAXI_SPEC_PATH))


@pytest.fixture(scope="module")
def F(taxi_spec):
    """The taxi spec's model features and label under the old feature module's names."""

    class Names:
        MODEL_FEATURES = taxi_spec.model_features
        LABEL = taxi_spec.label

    return Names


@pytest.fixture(scope="module")
def eval_rows(taxi_split):
    """The eval split (~1,900 real rows) as strings, the base of every corrupted copy."""
    return V.read_frame(taxi_split["eval"])


@pytest.fixture(scope="module")
def train_stats(taxi_split, schema, taxi_spec):
    return V.compute_statistics(taxi_split["train"], spec=taxi_spec, schema=schema)


@pytest.fixture
def _run(taxi_spec):
    def run(frame, tmp_path, schema, environment="TRAINING", **kw):
        path = tmp_path / "data.csv"
        frame.to_csv(path, index=False)
        result = V.run_validation(str(path), spec=taxi_spec, schema=schema, environment=environment, **kw)
        assert result.rows == len(frame)
        return result

    return run


def test_clean_splits_pass_with_skew_check(taxi_split, schema, train_stats, F, taxi_spec):
    result = V.run_validation(
        taxi_split["train"], spec=taxi_spec, schema=schema, skew_data=taxi_split["eval"]
    )
    assert result.findings == [], result.findings
    assert result.rows == int(train_stats.datasets[0].num_examples) > 7000
    assert [s["feature"] for s in result.skew] == [f.name for f in F.MODEL_FEATURES]
    assert all(s["score"] is not None for s in result.skew if s["checked"])
    assert not any(s["crossed"] for s in result.skew)


def _drop_fare(df):
    return df.drop(columns=["fare"])


def _miles_as_text(df):
    df = df.copy()
    df["trip_miles"] = df["trip_miles"].astype(str) + " mi"
    return df


def _unseen_payment(df):
    df = df.copy()
    df.loc[df.index[: len(df) // 20], "payment_type"] = "Bitcoin"  # 5% > the allowed 1% unseen share
    return df


def _company_all_null(df):
    df = df.copy()
    df["company"] = None
    return df


def _latitude_out_of_range(df):
    df = df.copy()
    df.loc[df.index[:3], "pickup_latitude"] = "48.5"  # Chicago is at ~41.9 N; the schema allows 41.5..42.2
    return df


def _hour_out_of_range(df):
    df = df.copy()
    df.loc[df.index[:2], "trip_start_hour"] = "25"
    return df


def _no_label(df):
    return df.drop(columns=["big_tipper"])


@pytest.mark.parametrize(
    ("corrupt", "feature", "anomaly"),
    [
        (_drop_fare, "fare", "SCHEMA_MISSING_COLUMN"),
        (_miles_as_text, "trip_miles", "UNEXPECTED_DATA_TYPE"),
        (_unseen_payment, "payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
        (_company_all_null, "company", "FEATURE_TYPE_NOT_PRESENT"),
        (_latitude_out_of_range, "pickup_latitude", "FLOAT_TYPE_BIG_FLOAT"),
        (_hour_out_of_range, "trip_start_hour", "INT_TYPE_BIG_INT"),
        (_no_label, "big_tipper", "SCHEMA_MISSING_COLUMN"),
    ],
    ids=[
        "dropped-column",
        "numeric-as-text",
        "unseen-category",
        "all-null",
        "float-range",
        "int-range",
        "no-label",
    ],
)
def test_corruption_is_caught_and_blocks(corrupt, feature, anomaly, eval_rows, tmp_path, schema, _run):
    result = _run(corrupt(eval_rows), tmp_path, schema)
    found = {(f["feature"], f["type"]) for f in result.blocking}
    assert (feature, anomaly) in found, result.findings
    # Only the corrupted feature is reported (the rest of the rows are real and clean).
    assert {f["feature"] for f in result.findings} == {feature}, result.findings
    message = V.blocking_message(result.findings)
    assert feature in message and anomaly in message


def test_small_unseen_share_is_allowed(eval_rows, tmp_path, schema, _run):
    df = eval_rows.copy()
    df.loc[df.index[:5], "payment_type"] = "Bitcoin"  # 0.26% < the allowed 1%
    assert _run(df, tmp_path, schema).findings == []


def test_serving_data_without_label_passes(eval_rows, tmp_path, schema, F, _run):
    result = _run(eval_rows.drop(columns=[F.LABEL.name]), tmp_path, schema, environment="SERVING")
    assert result.findings == []


def test_unknown_environment_is_rejected(taxi_split, schema, taxi_spec):
    with pytest.raises(V.ValidationError, match="environment 'PROD'"):
        V.run_validation(taxi_split["eval"], spec=taxi_spec, schema=schema, environment="PROD")


def test_new_column_is_reported_but_not_blocking(eval_rows, tmp_path, schema, _run):
    df = eval_rows.copy()
    df["note"] = "x"
    result = _run(df, tmp_path, schema)
    assert [(f["feature"], f["type"], f["blocking"]) for f in result.findings] == [
        ("note", "SCHEMA_NEW_COLUMN", False)
    ]


def test_count_check_fails_loudly(train_stats):
    n = int(train_stats.datasets[0].num_examples)
    V.check_count(train_stats, n)
    with pytest.raises(V.StatisticsCountError, match=f"{n} examples .* but {n + 1} rows were read"):
        V.check_count(train_stats, n + 1)


def test_multi_process_runner_counts_every_row(eval_rows, schema, taxi_spec):
    stats = V.compute_statistics(
        eval_rows,
        spec=taxi_spec,
        schema=schema,
        batch_rows=200,
        beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    assert stats.datasets[0].num_examples == len(eval_rows)


def test_drift_scores_cover_every_feature_and_cross_on_shift(eval_rows, train_stats, schema, F, taxi_spec):
    same = V.drift_scores(train_stats, train_stats, spec=taxi_spec, kind="drift", schema=schema)
    assert [s["feature"] for s in same] == [f.name for f in F.MODEL_FEATURES]
    assert all(s["score"] < 1e-6 for s in same if s["score"] is not None)
    assert not any(s["crossed"] for s in same)

    shifted = eval_rows.copy()
    shifted["pickup_latitude"] = (shifted["pickup_latitude"].astype(float) + 0.05).astype(str)
    shifted.loc[shifted.index[: len(shifted) // 3], "payment_type"] = "Credit Card"
    stats = V.compute_statistics(shifted, spec=taxi_spec, schema=schema)
    cfg = config.ValidationConfig()
    scores = {
        s["feature"]: s
        for s in V.drift_scores(stats, train_stats, spec=taxi_spec, kind="drift", cfg=cfg, schema=schema)
    }
    assert scores["pickup_latitude"]["metric"] == "jensen_shannon_divergence"
    assert scores["pickup_latitude"]["crossed"] and scores["pickup_latitude"]["threshold"] == cfg.drift_jsd
    assert scores["payment_type"]["metric"] == "l_infinity"
    assert scores["payment_type"]["crossed"]
    assert not scores["trip_start_hour"]["crossed"]
    assert 0 < scores["trip_start_hour"]["score"] < cfg.drift_linf  # below-threshold scores are reported
    drift = V.score_findings(list(scores.values()), cfg)
    assert {d["feature"] for d in drift} == {"pickup_latitude", "payment_type"}
    assert not any(d["blocking"] for d in drift)  # drift is recorded, not blocking, by default


class _Html(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.cells, self.remote = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href") and value and "://" in value:
                self.remote.append(value)

    def handle_data(self, data):
        if self.tags and self.tags[-1] == "td":
            self.cells.append(data.strip())


def test_report_and_artifacts(eval_rows, tmp_path, schema, train_stats, F, _run):
    result = _run(_latitude_out_of_range(eval_rows), tmp_path, schema, reference_stats=train_stats)
    written = V.write_artifacts(
        result,
        statistics_uri=str(tmp_path / "out" / "stats.pb"),
        anomalies_dir=str(tmp_path / "out" / "anomalies"),
        report_uri=str(tmp_path / "out" / "report.html"),
    )
    page = _Html()
    page.feed((tmp_path / "out" / "report.html").read_text())
    assert "script" not in page.tags and "link" not in page.tags and page.remote == []
    assert "FLOAT_TYPE_BIG_FLOAT" in page.cells and "pickup_latitude" in page.cells
    assert "company" in page.cells  # per-feature summaries
    summary = json.loads((tmp_path / "out" / "anomalies" / "summary.json").read_text())
    assert summary["blocking"] and summary["num_examples"] == len(eval_rows)
    assert len(summary["drift"]) == len(F.MODEL_FEATURES)
    assert "FLOAT_TYPE_BIG_FLOAT" in (tmp_path / "out" / "anomalies" / "anomalies.pbtxt").read_text()
    again = V.load_statistics(written["statistics"])
    assert again.datasets[0].num_examples == len(eval_rows)
