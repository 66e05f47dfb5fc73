"""The row checks of the data gate (:mod:`kfloop.row_checks`) and their configured event-time range
(:class:`kfloop.config.EventTimeRange`); tests/test_data_gate.py runs them through ingest and validate."""

import pandas as pd
import pytest

from kfloop import config
from kfloop import row_checks as checks

NON_FINITE_SPELLINGS = ["inf", "Infinity", "-inf", "+INF", "NaN", "nan", "1e400"]

# ------------------------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("text", NON_FINITE_SPELLINGS)
def test_every_spelling_of_a_non_finite_number_is_found(text):
    found = checks.non_finite("fare", pd.Series(["7.25", "", text, "inf"]))
    assert found is not None and found.type == checks.NON_FINITE
    assert (found.data_row, found.value) == (2, text)
    assert f"non-finite value {text!r}" in found.message and "CSV line 4" in found.message


def test_missing_values_are_not_non_finite():
    assert checks.non_finite("fare", pd.Series(["7.25", "", None, "1e3"])) is None
    # In the DataFrame form NaN *is* the missing-value token; only infinities are refused there.
    assert checks.non_finite("fare", pd.Series([7.25, float("nan")])) is None
    assert checks.non_finite("fare", pd.Series([7.25, float("-inf")])).data_row == 1


def test_event_time_bounds_are_inclusive_and_exact_at_int64_max():
    lo, hi = 1_356_998_400, 1_483_228_799  # 2013-01-01 .. 2016-12-31T23:59:59
    assert checks.event_time_out_of_range("t", pd.Series([str(lo), str(hi)]), (lo, hi)) is None
    for value in (str(lo - 1), str(hi + 1), str(2**63 - 1), str(2**63)):
        found = checks.event_time_out_of_range("t", pd.Series([str(lo), value]), (lo, hi))
        assert found is not None and found.value == value, value
        assert "2013-01-01T00:00:00+00:00 .. 2016-12-31T23:59:59+00:00" in found.message


def test_a_repeated_header_name_names_every_position():
    (found,) = checks.duplicate_columns(["a", "fare", "b", "fare"])
    assert (found.column, found.type, found.count) == ("fare", checks.DUPLICATE_COLUMN, 2)
    assert "column name 'fare' appears 2 times in the header (columns 2, 4)" in found.message


def test_read_csv_text_keeps_repeated_names(tmp_path):
    frame = checks.read_csv_text(b"a,fare,fare,\n1,2,3,\n", empty_as_na=True)
    assert list(frame.columns) == ["a", "fare", "fare", "Unnamed: 3"]
    assert frame.iloc[0, :3].tolist() == ["1", "2", "3"] and pd.isna(frame.iloc[0, 3])


# ------------------------------------------------------------------------------------------ the config


def test_event_time_range_defaults_and_validation():
    lo, hi = config.EventTimeRange().bounds(now=1_700_000_000)
    assert lo == 946_684_800 and hi == 1_700_000_000 + 24 * 3600  # 2000-01-01 .. now + a day
    assert config.EventTimeRange(latest="2016-12-31T23:59:59Z").bounds()[1] == 1_483_228_799
    assert config.ValidationConfig().event_time == config.EventTimeRange()
    for kw, needle in [
        ({"earliest": "soon"}, "event_time.earliest 'soon' is not a date"),
        ({"latest": "1999-12-31"}, "event_time.latest '1999-12-31' is not after event_time.earliest"),
        ({"future_margin_s": -1}, "future_margin_s must be >= 0"),
        ({"future_margin_s": 1.5}, "future_margin_s must be an integer"),
    ]:
        with pytest.raises(ValueError, match=needle):
            config.EventTimeRange(**kw)
