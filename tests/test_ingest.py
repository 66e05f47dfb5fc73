"""Ingest on the real taxi CSV (the taxi spec): time split, counts, label rule, and each bad input's error;
then on a synthetic non-taxi spec (no time column: split by row order)."""

from pathlib import Path

import pandas as pd
import pytest

from kfloop import datasets
from kfloop import spec as S
from kfloop.clean import IngestError
from kfloop.ingest import ingest


@pytest.fixture(scope="module")
def F(taxi_spec):
    """The taxi spec under the names the old feature module had (EVENT_TIME, LABEL, DATASET_COLUMNS)."""

    class Names:
        EVENT_TIME = taxi_spec.event_time
        LABEL = taxi_spec.label
        DATASET_COLUMNS = taxi_spec.dataset_columns
        RAW_COLUMNS = taxi_spec.raw_columns

    return Names


@pytest.fixture
def _run(taxi_spec):
    def run(tmp_path, source, cutoff="2015-01-01", spec=taxi_spec, **kw):
        paths = [str(tmp_path / f"{k}.csv") for k in ("train", "eval", "live")]
        return ingest(str(source), spec, cutoff, *paths, **kw), paths

    return run


def test_time_split_counts_and_label(tmp_path, taxi_csv, taxi_spec, F, _run):
    result, (train, evals, live) = _run(tmp_path, taxi_csv)
    tr, ev, lv = (datasets.read_dataset(p, taxi_spec) for p in (train, evals, live))
    assert result.rows_read == 15002
    assert len(tr) + len(ev) + len(lv) == result.rows_read
    assert (len(tr), len(ev), len(lv)) == (result.train_rows, result.eval_rows, result.live_rows)
    history_max = max(tr[F.EVENT_TIME.name].max(), ev[F.EVENT_TIME.name].max())
    history_min = min(tr[F.EVENT_TIME.name].min(), ev[F.EVENT_TIME.name].min())
    assert lv[F.EVENT_TIME.name].min() >= history_max  # no live row earlier than any training row
    assert history_max < pd.Timestamp("2015-01-01", tz="UTC").timestamp() <= lv[F.EVENT_TIME.name].min()
    assert history_min == pd.read_csv(taxi_csv)[F.EVENT_TIME.name].min()
    assert 0.15 < len(ev) / (len(tr) + len(ev)) < 0.25
    assert list(tr.columns) == list(F.DATASET_COLUMNS)

    raw = pd.read_csv(taxi_csv)
    expected = (raw["tips"] > 0.2 * raw["fare"]).astype(int)
    got = pd.concat([tr, ev, lv])
    raw_key = raw.set_index([F.EVENT_TIME.name, "fare", "trip_seconds"]).index
    assert int(got[F.LABEL.name].sum()) == int(expected.sum())
    assert len(raw_key) == len(got)


def test_split_is_deterministic(tmp_path, taxi_csv, _run):
    _, a = _run(tmp_path / "a", taxi_csv)
    _, b = _run(tmp_path / "b", taxi_csv)
    for pa, pb in zip(a, b, strict=True):
        assert Path(pa).read_bytes() == Path(pb).read_bytes()


def test_window_start_and_live_end(tmp_path, taxi_csv, taxi_spec, F, _run):
    result, (train, _, live) = _run(tmp_path, taxi_csv, window_start="2014-01-01", live_end="2015-07-01")
    tr, lv = datasets.read_dataset(train, taxi_spec), datasets.read_dataset(live, taxi_spec)
    assert tr[F.EVENT_TIME.name].min() >= pd.Timestamp("2014-01-01", tz="UTC").timestamp()
    assert lv[F.EVENT_TIME.name].max() < pd.Timestamp("2015-07-01", tz="UTC").timestamp()
    assert result.train_window[0].startswith("2014-01-01")


@pytest.fixture
def raw(taxi_csv):
    return pd.read_csv(taxi_csv, dtype=str, keep_default_na=False).head(300)


def test_missing_column_is_named(tmp_path, raw, _run):
    raw.drop(columns=["payment_type"]).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(IngestError, match="missing column.*payment_type"):
        _run(tmp_path, tmp_path / "x.csv", cutoff="2014-01-01")


def test_non_numeric_value_is_named(tmp_path, raw, _run):
    raw.loc[7, "fare"] = "twelve"
    raw.to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(IngestError, match=r"column 'fare': non-numeric value 'twelve' .*CSV line 9"):
        _run(tmp_path, tmp_path / "x.csv", cutoff="2014-01-01")


def test_empty_file(tmp_path, F, _run):
    (tmp_path / "x.csv").write_text("")
    with pytest.raises(IngestError, match="is empty"):
        _run(tmp_path, tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text(",".join(F.RAW_COLUMNS) + "\n")
    with pytest.raises(IngestError, match="no rows"):
        _run(tmp_path, tmp_path / "y.csv")


@pytest.mark.parametrize("cutoff", ["2030-01-01", "2001-01-01"])
def test_cutoff_outside_the_data(tmp_path, taxi_csv, cutoff, _run):
    with pytest.raises(IngestError, match=f"cutoff '{cutoff}' is outside the data, which spans 2013-01-01"):
        _run(tmp_path, taxi_csv, cutoff=cutoff)


def test_bad_cutoff_string(tmp_path, taxi_csv, _run):
    with pytest.raises(IngestError, match="cutoff 'soon' is not a date"):
        _run(tmp_path, taxi_csv, cutoff="soon")


def test_nothing_written_on_bad_input(tmp_path, raw, _run):
    raw.loc[3, "trip_start_hour"] = "noon"
    raw.to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(IngestError, match="trip_start_hour"):
        _run(tmp_path, tmp_path / "x.csv", cutoff="2014-01-01")
    assert not list(tmp_path.glob("train.csv"))


# ------------------------------------------------------------------------------ a spec without a time column

PLAIN = """
name: plain
missing_values: ["?"]
label: {column: outcome, positive: "good"}
exclude: [row_id]
columns:
  - {name: size, kind: numeric, nullable: true}
  - {name: shade, kind: categorical_string}
"""


def _plain_csv(tmp_path, n=200):
    rows = ["row_id,size,shade,outcome"]
    for i in range(n):
        size = "?" if i % 9 == 0 else str(i * 0.5)
        rows.append(f"{i},{size},{'dark' if i % 2 else 'light'},{'good' if i % 3 else 'bad'}")
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_without_a_time_column_the_row_order_splits(tmp_path, _run):
    spec = S.loads(PLAIN)
    result, (train, evals, live) = _run(tmp_path, _plain_csv(tmp_path), cutoff="150", spec=spec)
    tr, ev, lv = (datasets.read_dataset(p, spec) for p in (train, evals, live))
    assert (result.rows_read, result.train_rows + result.eval_rows, result.live_rows) == (200, 150, 50)
    assert result.train_window == ("0", "150") and result.live_window == ("150", "200")
    assert list(tr.columns) == ["size", "shade", "outcome"]  # row_id excluded, no time column
    assert lv["size"].tolist()[:2] == [75.0, 75.5]  # rows 150, 151 in file order
    assert pd.isna(pd.concat([tr, ev]).sort_values("size", na_position="first")["size"].iloc[0])  # "?"
    assert set(tr["outcome"].astype(int)) == {0, 1}
    half, _ = _run(tmp_path / "half", _plain_csv(tmp_path), cutoff="0.5", spec=spec)
    assert half.live_rows == 100
    with pytest.raises(IngestError, match="cutoff 'soon' is not a row position"):
        _run(tmp_path, _plain_csv(tmp_path), cutoff="soon", spec=spec)
