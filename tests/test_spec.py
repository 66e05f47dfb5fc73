"""Dataset specs (kfloop.spec): the taxi example, refused specs with their line, round trips, conversions.

Pure tests: they import in the serving env too (``.venv-serving/bin/python -m pytest tests/test_spec.py``);
the hypothesis property test runs where hypothesis is installed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kfloop import spec as S

TAXI = Path(__file__).resolve().parents[1] / "examples" / "taxi" / "spec.yaml"

BASE = """\
name: churn
task: binary
missing_values: ["", NA]
time: {column: ts, format: iso8601}
label:
  column: churned
  positive: "yes"
exclude: [customer_id]
columns:
  - {name: tenure, kind: numeric, range: [0, 100]}
  - {name: plan, kind: categorical_string}
  - {name: region, kind: categorical_int, nullable: true}
  - {name: promo, kind: boolean}
slices: [plan, [plan, region]]
drift:
  default: {threshold: 0.3, mode: trigger}
trainer: keras
"""


def with_line(n: int, text: str | None, base: str = BASE) -> str:
    """BASE with line ``n`` (1-based) replaced by ``text`` (None: the line blanked to a comment)."""
    lines = base.splitlines()
    lines[n - 1] = "# removed" if text is None else text
    return "\n".join(lines) + "\n"


# ----- the taxi example: its facts, as the spec states them -----

TAXI_INPUTS = (
    "trip_miles",
    "fare",
    "trip_seconds",
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
    "trip_start_hour",
    "trip_start_day",
    "trip_start_month",
    "pickup_census_tract",
    "dropoff_census_tract",
    "pickup_community_area",
    "dropoff_community_area",
    "payment_type",
    "company",
)


def test_taxi_spec_vocabulary():
    s = S.load(TAXI)
    assert s.model_name == "taxi-tips" and s.task is S.Task.BINARY
    assert s.input_names == TAXI_INPUTS
    assert s.dataset_columns == ("trip_start_timestamp", *TAXI_INPUTS, "big_tipper")
    assert s.raw_columns == (*TAXI_INPUTS, "trip_start_timestamp", "tips")
    nullable = {n for n in TAXI_INPUTS if n not in ("trip_miles", "fare", "payment_type")} - {
        "trip_start_hour",
        "trip_start_day",
        "trip_start_month",
    }
    assert {f.name for f in s.model_features if f.nullable} == nullable
    encoded = {"numeric": ("float32", "FP32"), "categorical_int": ("int64", "INT64")}
    encoded["categorical_string"] = ("string", "BYTES")
    for f in s.model_features:
        assert (f.dtype, f.v2_datatype) == encoded[f.kind.value], f.name
        missing = {"float32": math.nan, "int64": -1, "string": ""}[f.dtype]
        assert f.missing == missing or (math.isnan(f.missing) and math.isnan(missing)), f.name
        assert f.description, f.name
    assert [f.name for f in s.features_of(S.Kind.NUMERIC)] == list(TAXI_INPUTS[:7])
    assert [f.name for f in s.features_of(S.Kind.CATEGORICAL_STR)] == ["payment_type", "company"]
    assert s.features_of("categorical_str") == s.features_of(S.Kind.CATEGORICAL_STR)
    for f, name, text in (
        (s.event_time, "trip_start_timestamp", "Trip start, seconds since epoch (UTC)"),
        (s.label, "big_tipper", "1 when tips > 20% of fare, else 0"),
    ):
        assert (f.name, f.dtype, f.nullable, f.description) == (name, "int64", False, text)
    assert (s.event_time.kind, s.label.kind) == (S.Kind.TIMESTAMP, S.Kind.LABEL)
    assert [d["name"] for d in s.describe()] == list(TAXI_INPUTS)
    assert s.describe()[0] == {
        "name": "trip_miles",
        "kind": "numeric",
        "dtype": "float32",
        "nullable": False,
        "description": "Trip distance in miles",
    }
    assert s.label_spec.derive == "tips > 0.2 * fare" and s.derive_inputs == ("tips", "fare")
    assert s.exclude == ("tips",)


def test_taxi_spec_carries_the_schema_and_drift_facts():
    pytest.importorskip("tensorflow_metadata")
    from kfloop.tfdv.schema import SERVING, spec_schema

    s = S.load(TAXI)
    proto = spec_schema(s)
    schema = {f.name: f for f in proto.feature}
    assert list(schema) == list(s.dataset_columns)
    box = {"pickup_latitude": (41.5, 42.2), "dropoff_latitude": (41.5, 42.2)}
    box.update({"pickup_longitude": (-88.1, -87.4), "dropoff_longitude": (-88.1, -87.4)})
    for name, (lo, hi) in box.items():
        assert (schema[name].float_domain.min, schema[name].float_domain.max) == pytest.approx((lo, hi))
    for name in ("trip_miles", "fare", "trip_seconds"):  # one-sided: >= 0
        d = schema[name].float_domain
        assert d.min == 0 and not d.HasField("max"), name
    ints = {"trip_start_hour": (0, 23), "trip_start_day": (1, 7), "trip_start_month": (1, 12)}
    ints.update({"pickup_community_area": (1, 77), "dropoff_community_area": (1, 77), "big_tipper": (0, 1)})
    for name, (lo, hi) in ints.items():
        d = schema[name].int_domain
        assert (d.min, d.max, d.is_categorical) == (lo, hi, True), name
    assert list(schema["big_tipper"].not_in_environment) == [SERVING]
    masses = {
        n: f.distribution_constraints.min_domain_mass
        for n, f in schema.items()
        if f.HasField("distribution_constraints")
    }
    assert masses == pytest.approx({"payment_type": 0.99, "company": 0.9})
    assert s.feature("payment_type").domain == (
        "Cash",
        "Credit Card",
        "Dispute",
        "No Charge",
        "Pcard",
        "Unknown",
    )
    assert len(s.feature("company").domain) == 36
    domains = {d.name: tuple(d.value) for d in proto.string_domain}
    for name in ("payment_type", "company"):
        f = schema[name]
        got = domains[f.domain] if f.WhichOneof("domain_info") == "domain" else tuple(f.string_domain.value)
        assert got == s.feature(name).domain, name
    # drift: numeric features by Jensen-Shannon at 0.15, categorical ones by L-infinity at the default 0.075;
    # the census tract is never compared, the month only recorded (the calendar, not drift)
    assert {f.name for f in s.model_features if f.drift_mode == "off"} == {"pickup_census_tract"}
    assert {f.name for f in s.model_features if f.drift_mode == "record"} == {"trip_start_month"}
    for f in s.model_features:
        comparator = schema[f.name].drift_comparator
        if f.drift_mode == "off":
            assert not schema[f.name].HasField("drift_comparator"), f.name
        elif f.kind is S.Kind.NUMERIC:
            assert comparator.jensen_shannon_divergence.threshold == pytest.approx(0.15), f.name
        else:
            assert comparator.infinity_norm.threshold == pytest.approx(0.075), f.name
    assert s.drift_mode("trip_start_timestamp") == "off"
    assert not schema["trip_start_timestamp"].HasField("drift_comparator")
    assert list(s.slices) == ["payment_type", "trip_start_hour"]


def test_unknown_feature_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="unknown feature 'nope'"):
        S.load(TAXI).feature("nope")
    with pytest.raises(KeyError, match="'nope'"):
        S.load(TAXI).drift_mode("nope")


# ----- bad specs: one line naming origin, line and key path -----

BAD = [
    (with_line(13, "  - {name: promo, kind: numberic}"), 13, "columns[3].kind", "unknown kind 'numberic'"),
    (
        with_line(11, "  - {name: plan, kind: categorical_string, colour: red}"),
        11,
        "columns[1].colour",
        "unknown key 'colour'",
    ),
    (with_line(17, "trainerr: keras"), 17, "trainerr", "unknown key 'trainerr'"),
    (
        with_line(12, "  - {name: tenure, kind: categorical_int}"),
        12,
        "columns[2].name",
        "duplicate column 'tenure' (also columns[0])",
    ),
    (
        with_line(13, "  - {name: churned, kind: boolean}"),
        6,
        "label.column",
        "label column 'churned' is also a feature (columns[3])",
    ),
    (with_line(13, "  - {name: ts, kind: numeric}"), 4, "time.column", "time column 'ts' is also a feature"),
    (
        with_line(13, "  - {name: customer_id, kind: numeric}"),
        8,
        "exclude[0]",
        "excluded column 'customer_id' is also a feature",
    ),
    (with_line(14, "slices: [plan, tip_hour]"), 14, "slices[1]", "'tip_hour' is not a feature"),
    (with_line(14, "slices: [plan, [plan, nope]]"), 14, "slices[1][1]", "'nope' is not a feature"),
    (with_line(14, "slices: [plan, [plan]]"), 14, "slices[1]", "a list of 2+ feature names"),
    (with_line(7, None), 5, "label.positive", "required without label.derive"),
    (with_line(7, '  derive: "tenure >"'), 7, "label.derive", "does not parse"),
    (with_line(7, '  derive: "tenur > 3"'), 7, "label.derive", "'tenur' is not a raw column of the spec"),
    (with_line(7, '  derive: "tenure + 1"'), 7, "label.derive", "is not a boolean expression"),
    (with_line(7, '  derive: "abs(tenure) > 1"'), 7, "label.derive", "a function call is not allowed"),
    (
        with_line(7, '  positive: "yes"\n  derive: "tenure > 3"'),
        7,
        "label.positive",
        "not allowed with label.derive",
    ),
    (with_line(7, "  positive: true"), 7, "label.positive", "YAML boolean"),
    (
        with_line(10, "  - {name: tenure, kind: numeric, range: [5, 1]}"),
        10,
        "columns[0].range",
        "range min 5 is greater than max 1",
    ),
    (
        with_line(10, "  - {name: tenure, kind: numeric, range: [0, x]}"),
        10,
        "columns[0].range[1]",
        "finite number or null",
    ),
    (
        with_line(11, "  - {name: plan, kind: categorical_string, range: [0, 1]}"),
        11,
        "columns[1].range",
        "has no range",
    ),
    (
        with_line(12, "  - {name: region, kind: categorical_int, range: [0.5, 3]}"),
        12,
        "columns[2].range",
        "integer bounds",
    ),
    (
        with_line(12, "  - {name: region, kind: categorical_int, domain: [1, ..., x]}"),
        12,
        "columns[2].domain",
        "'...'",
    ),
    (
        with_line(11, "  - {name: plan, kind: categorical_string, domain: [a, b, a]}"),
        11,
        "columns[1].domain[2]",
        "duplicate domain value 'a'",
    ),
    (
        with_line(13, "  - {name: promo, kind: boolean, min_domain_mass: 0.9}"),
        13,
        "columns[3].min_domain_mass",
        "only a categorical_string",
    ),
    (
        with_line(12, "  - {name: region, kind: categorical_int, nullable: maybe}"),
        12,
        "columns[2].nullable",
        "valid boolean",
    ),
    (with_line(10, '  - {name: "ten ure", kind: numeric}'), 10, "columns[0].name", "not a valid column name"),
    (with_line(16, "  default: {threshold: 1.5, mode: trigger}"), 16, "drift.default.threshold", "(0, 1]"),
    (with_line(16, "  default: {threshold: 0, mode: trigger}"), 16, "drift.default.threshold", "(0, 1]"),
    (
        with_line(16, "  default: {threshold: 0.3, mode: sometimes}"),
        16,
        "drift.default.mode",
        "unknown drift mode 'sometimes'",
    ),
    (
        with_line(11, "  - {name: plan, kind: categorical_string, drift: {threshold: -1}}"),
        11,
        "columns[1].drift.threshold",
        "(0, 1]",
    ),
    (with_line(17, "trainer: my_trainer"), 17, "trainer", "'keras' or 'package.module:function'"),
    (with_line(1, "name: Churn_Model"), 1, "name", "DNS-1123 label"),
    (with_line(1, "name: " + "a" * 64), 1, "name", "DNS-1123 label"),
    (
        with_line(2, "task: ordinal"),
        2,
        "task",
        "unknown task 'ordinal' (expected binary, regression, multiclass)",
    ),
    (with_line(4, "time: {column: ts, format: unix}"), 4, "time.format", "unknown time format 'unix'"),
    (with_line(1, None), 1, "name", "required key missing"),
    (with_line(17, "name: again"), 17, "name", "duplicate key 'name' (also line 1)"),
    (with_line(3, 'missing_values: [""'), 4, "(top level)", "not valid YAML"),
    (with_line(3, "missing_values: [[x]]"), 3, "missing_values[0]", "must be a string"),
    (BASE.split("columns:")[0] + "columns: []\n", 9, "columns", "non-empty list"),
]


@pytest.mark.parametrize(("text", "line", "path", "message"), BAD, ids=[b[2] + ":" + b[3][:24] for b in BAD])
def test_a_bad_spec_is_refused_with_its_line_and_key(text, line, path, message):
    with pytest.raises(S.SpecError) as info:
        S.loads(text, origin="churn.yaml")
    err = info.value
    assert (err.origin, err.line, err.path) == ("churn.yaml", line, path), str(err)
    assert message in err.problem
    assert "\n" not in str(err)
    assert str(err).startswith(f"churn.yaml:{line}: {path}: ")


def test_the_documented_error_forms_exactly():
    with pytest.raises(S.SpecError) as info:
        S.loads(with_line(13, "  - {name: promo, kind: numberic}"))
    assert str(info.value) == (
        "spec.yaml:13: columns[3].kind: unknown kind 'numberic' (expected numeric, categorical_int,"
        " categorical_string, boolean)"
    )
    with pytest.raises(S.SpecError) as info:
        S.loads(with_line(14, "slices: [plan, tip_hour]"))
    assert str(info.value) == "spec.yaml:14: slices[1]: 'tip_hour' is not a feature"


def test_every_problem_is_listed_first_line_first():
    text = with_line(
        16, "  default: {threshold: 2, mode: trigger}", with_line(13, "  - {name: promo, kind: nope}")
    )
    with pytest.raises(S.SpecError) as info:
        S.loads(text)
    assert info.value.line == 13
    assert [p.split(": ")[0] for p in info.value.problems] == ["spec.yaml:13", "spec.yaml:16"]


@pytest.mark.parametrize(
    "text",
    [
        with_line(7, '  derive: "customer_id > 3 and tenure < 10"'),  # exclude + feature inputs
        with_line(11, "  - {name: plan, kind: categorical_str}"),  # alias
        with_line(17, "trainer: mypkg.train:fit"),
        with_line(16, "  default: {threshold: 1, mode: off}"),  # YAML 1.1 would make `off` false
        with_line(12, "  - {name: region, kind: categorical_int, domain: [0, 2, ..., 10]}"),
    ],
)
def test_good_variants_load(text):
    s = S.loads(text)
    assert S.loads(S.dump(s)) == s


def test_ellipsis_domain_alias_and_off_mode_are_normalised():
    s = S.loads(
        with_line(
            12, "  - {name: region, kind: categorical_int, domain: [0, 2, ..., 10], drift: {mode: off}}"
        )
    )
    assert s.feature("region").domain == (0, 2, 4, 6, 8, 10)
    assert s.drift_mode("region") == "off" and s.drift_mode("plan") == "trigger"
    alias = S.loads(with_line(11, "  - {name: plan, kind: categorical_str}"))
    assert alias.feature("plan").kind is S.Kind.CATEGORICAL_STR and alias.digest() == S.loads(BASE).digest()


# ----- round trip and digest -----


def test_round_trip_and_digest_ignore_key_order_and_comments():
    for s in (S.load(TAXI), S.loads(BASE)):
        assert S.loads(S.dump(s)) == s
        assert S.loads(S.dump(s)).digest() == s.digest()
    reordered = """\
# the same spec, keys in another order, with comments
trainer: keras   # built in
columns:
  - {kind: numeric, range: [0, 100], name: tenure}
  - {kind: categorical_string, name: plan}
  - {nullable: true, name: region, kind: categorical_int}
  - {name: promo, kind: boolean}
drift: {default: {mode: trigger, threshold: 0.3}}
label: {positive: "yes", column: churned}
slices: [plan, [plan, region]]
exclude: [customer_id]
time: {format: iso8601, column: ts}
missing_values: ["", NA]
name: churn
"""
    assert S.loads(reordered) == S.loads(BASE)
    assert S.loads(reordered).digest() == S.loads(BASE).digest()
    changed = S.loads(with_line(16, "  default: {threshold: 0.31, mode: trigger}"))
    assert changed.digest() != S.loads(BASE).digest() and changed != S.loads(BASE)
    assert len(S.loads(BASE).digest()) == 64


def test_load_reads_paths_uris_and_text(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text(BASE)
    base = S.loads(BASE)
    assert S.load(p) == S.load(str(p)) == S.load(f"file://{p}") == S.load(BASE) == base
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        S.load(str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError):
        S.load(f"file://{tmp_path}/nope.yaml")
    p.write_text(with_line(2, "task: ordinal"))
    with pytest.raises(S.SpecError, match=rf"^{p}:2: task: "):
        S.load(p)
    assert S.SPEC_FILE == "spec.yaml"


def test_a_spec_is_frozen_and_a_copy_is_validated_again():
    import pydantic

    s = S.loads(BASE)
    assert s.input_names[0] == "tenure"
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        s.name = "other"
    copy = s.model_copy(update={"columns": s.model_dump()["columns"][1:], "slices": ["plan"]})
    assert copy.input_names == ("plan", "region", "promo") and s.input_names[0] == "tenure"
    with pytest.raises(pydantic.ValidationError, match="is not a feature"):
        s.model_copy(update={"slices": ["nope"]})


# ----- value conversions -----


def test_iso_times_with_and_without_zone_and_missing():
    s = S.loads(BASE)
    raw = pd.Series(
        ["2015-01-01T00:00:00Z", "2015-01-01T02:00:00+02:00", "2015-01-01 00:00:00", "", None, "NA"]
    )
    out = s.event_seconds(raw)
    assert str(out.dtype) == "Int64"
    assert out.tolist()[:3] == [1420070400] * 3
    assert out.isna().tolist() == [False, False, False, True, True, True]


def test_epoch_millis_and_seconds():
    ms = S.loads(with_line(4, "time: {column: ts, format: epoch_millis}"))
    assert ms.event_seconds(pd.Series([1420070400123, 1420070400999])).tolist() == [1420070400] * 2
    assert ms.event_seconds(pd.Series(["1420070400123", ""])).tolist()[0] == 1420070400
    sec = S.loads(with_line(4, "time: {column: ts, format: epoch_seconds}"))
    assert sec.event_seconds(pd.Series(["1420070400.7", "7"])).tolist() == [1420070400, 7]


@pytest.mark.parametrize(
    ("fmt", "values", "line", "bad"),
    [
        ("iso8601", ["2015-01-01T00:00:00Z", "", "yesterday"], 4, "yesterday"),
        ("epoch_seconds", ["1420070400", "12:30"], 3, "12:30"),
        ("epoch_millis", ["1", "2", "3", "x"], 5, "x"),
    ],
)
def test_a_time_that_does_not_parse_names_column_line_and_value(fmt, values, line, bad):
    s = S.loads(with_line(4, f"time: {{column: ts, format: {fmt}}}"))
    with pytest.raises(S.SpecDataError) as info:
        s.event_seconds(pd.Series(values, name="ts"))
    assert (info.value.column, info.value.line, info.value.value) == ("ts", line, bad)
    assert f"ts: line {line}: {bad!r}" in str(info.value)


def test_label_from_a_positive_class():
    s = S.loads(BASE)
    frame = pd.DataFrame({"churned": ["yes", "no", "maybe", "", None, "NA", "Yes"]})
    out = s.label_values(frame)
    assert str(out.dtype) == "Int64"
    assert out.tolist()[:3] == [1, 0, 0] and out.tolist()[-1] == 0
    assert out.isna().tolist() == [False, False, False, True, True, True, False]
    assert (s.label_of("yes"), s.label_of("no"), s.label_of("whatever")) == (1, 0, 0)
    with pytest.raises(S.SpecDataError, match="missing"):
        s.label_of("")
    numeric = S.loads(with_line(7, "  positive: 1"))
    assert numeric.label_values(pd.DataFrame({"churned": ["1", "0", 1.0, 2]})).tolist() == [1, 0, 1, 0]
    assert numeric.label_of("1") == 1 and numeric.label_of(0) == 0


def test_label_from_a_derivation_over_raw_text_columns():
    s = S.load(TAXI)
    raw = pd.DataFrame({"tips": ["3", "1", "", "5"], "fare": ["10", "10", "10", None], "x": [1, 2, 3, 4]})
    out = s.label_values(raw)
    assert out.tolist()[:2] == [1, 0] and out.isna().tolist() == [False, False, True, True]
    assert s.label_of("true") == 1 and s.label_of(0) == 0 and s.label_of(True) == 1
    with pytest.raises(S.SpecDataError, match="is not a class"):
        s.label_of("maybe")
    with pytest.raises(S.SpecDataError, match="label.derive: 'tips' is not a column of the data"):
        s.label_values(raw.drop(columns=["tips"]))


def test_missing_tokens():
    s = S.loads(BASE)
    assert s.is_missing(pd.Series(["", "NA", "x", None, "na"])).tolist() == [True, True, False, True, False]
    nines = S.loads(with_line(3, "missing_values: [-999]"))
    assert nines.missing_values == ("-999",)
    assert nines.is_missing(pd.Series([1.0, -999.0, math.nan])).tolist() == [False, True, True]


# ----- checks against data -----


def _churn_frame(**overrides):
    data = {
        "ts": ["2015-01-01T00:00:00Z", "2015-01-02"],
        "tenure": ["3", "4.5"],
        "plan": ["basic", "pro"],
        "region": ["1", ""],
        "promo": ["Yes", "f"],
        "churned": ["yes", "no"],
        "customer_id": ["a", "b"],
    }
    data.update(overrides)
    return pd.DataFrame({k: v for k, v in data.items() if v is not None})


def test_check_data_accepts_a_fitting_sample():
    assert S.loads(BASE).check_data(_churn_frame()) == []


def test_check_data_names_the_key_of_each_problem():
    s = S.loads(BASE)
    assert s.check_data(_churn_frame(churned=["Yes", "No"])) == [
        "label.positive: 'yes' never occurs in label column 'churned' (values seen: 'Yes', 'No')"
    ]
    assert s.check_data(_churn_frame(churned=None)) == ["label.column: 'churned' is not a column of the data"]
    assert s.check_data(_churn_frame(region=None)) == [
        "columns[2].name: 'region' is not a column of the data"
    ]
    (ts,) = s.check_data(_churn_frame(ts=["2015-01-01", "soon"]))
    assert ts.startswith("time.format: iso8601: ts: line 3: 'soon'")
    problems = s.check_data(_churn_frame(tenure=["3", "many"], promo=["yes", "perhaps"], region=["1.5", "2"]))
    assert [p.split(":")[0] for p in problems] == ["columns[0].kind", "columns[2].kind", "columns[3].kind"]
    assert "line 3: 'many'" in problems[0] and "line 2: '1.5'" in problems[1] and "'perhaps'" in problems[2]


def test_check_data_on_the_real_taxi_sample(taxi_csv):
    frame = pd.read_csv(taxi_csv, nrows=2000)
    s = S.load(TAXI)
    assert s.check_data(frame) == []
    labels = s.label_values(frame)
    assert set(labels.dropna().unique()) == {0, 1}
    assert s.event_seconds(frame[s.time.column]).notna().all()


# ----- property: generated specs round-trip -----


def test_generated_specs_round_trip():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    import keyword

    names = st.lists(  # Python keywords cannot be named in a label derivation (an expression)
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n)),
        min_size=3,
        max_size=8,
        unique=True,
    )
    kinds = st.sampled_from(
        ["numeric", "categorical_int", "categorical_string", "categorical_str", "boolean"]
    )

    @st.composite
    def specs(draw):
        cols = draw(names)
        label, features = cols[0], cols[1:]
        columns = [
            {
                "name": n,
                "kind": draw(kinds),
                "nullable": draw(st.booleans()),
                "description": draw(st.text(max_size=20)),
            }
            for n in features
        ]
        lab: dict = {"column": label}
        how = draw(st.sampled_from(["derive", "str", "int"]))
        if how == "derive":
            lab["derive"] = f"{features[0]} > {draw(st.integers(-5, 5))}"
        else:
            lab["positive"] = (
                draw(st.text(min_size=1, max_size=8)) if how == "str" else draw(st.integers(-3, 3))
            )
        doc = {
            "name": draw(st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)),
            "label": lab,
            "columns": columns,
            "drift": {
                "default": {
                    "threshold": draw(st.floats(0.01, 1.0)),
                    "mode": draw(st.sampled_from(["trigger", "record", "off"])),
                }
            },
        }
        return doc

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(specs(), st.randoms())
    def check(doc, rnd):
        s = S.loads(yaml.safe_dump(doc))
        again = S.loads(S.dump(s))
        assert again == s and again.digest() == s.digest()
        shuffled = list(doc.items())
        rnd.shuffle(shuffled)
        assert S.loads(yaml.safe_dump(dict(shuffled), sort_keys=False)).digest() == s.digest()
        assert s.dataset_columns[-1] == doc["label"]["column"] and len(s.model_features) == len(
            doc["columns"]
        )

    check()
