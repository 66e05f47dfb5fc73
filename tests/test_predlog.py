"""The prediction / feedback log format (kfloop/predlog/): typed rows, atomic files, windowed scans."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kfloop import predlog as P
from kfloop.predlog import write as W
from kfloop.spec import Kind

MODEL = "taxi-tips"
DAY = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def columns(spec, n: int, missing: bool = False) -> dict:
    out = {}
    for f in spec.model_features:
        if f.kind == Kind.NUMERIC:
            col = np.linspace(1.0, 2.0, n).astype(np.float32)
        elif f.kind in (Kind.CATEGORICAL_INT, Kind.BOOLEAN):
            col = np.arange(n, dtype=np.int64) % 7 + 1
        else:
            col = np.array(["Cash"] * n, dtype=object)
        if missing and f.nullable:
            col[0] = f.missing
        out[f.name] = col
    return out


def test_prediction_table_types_and_missing_values_are_null(taxi_spec):
    t = P.prediction_table(
        "r1", DAY.timestamp(), "v0001", columns(taxi_spec, 3, missing=True), [0.1, 0.5, 0.9], schema=taxi_spec
    )
    assert t.schema == P.prediction_schema(taxi_spec)
    assert t.column("row").to_pylist() == [0, 1, 2]
    assert t.column("request_id").to_pylist() == ["r1"] * 3
    assert t.column("timestamp")[0].as_py() == DAY
    for f in taxi_spec.model_features:
        assert t.column(f.name)[0].is_valid is (not f.nullable), f.name
        assert t.column(f.name)[1].is_valid, f.name
    assert t.column("company")[1].as_py() == "Cash"
    assert t.column("probability").type == pa.float32()


def test_prediction_table_takes_string_features_as_arrow_arrays_like_numpy(taxi_spec):
    """Batch scoring hands the CSV reader's Arrow string columns (null = missing) straight to the log."""
    cols = columns(taxi_spec, 3, missing=True)
    as_arrow = dict(cols)
    for f in taxi_spec.model_features:
        if f.kind == Kind.CATEGORICAL_STR:
            as_arrow[f.name] = pa.array([None if v == "" else v for v in cols[f.name]], type=pa.string())
    a = P.prediction_table("r", DAY.timestamp(), "v1", cols, [0.1, 0.2, 0.3], schema=taxi_spec)
    b = P.prediction_table("r", DAY.timestamp(), "v1", as_arrow, [0.1, 0.2, 0.3], schema=taxi_spec)
    assert b.equals(a)
    assert b.column("company").to_pylist() == [None, "Cash", "Cash"]
    with pytest.raises(P.LogError, match="'company' has 2 values"):
        P.prediction_table(
            "r", 0, "v1", {**cols, "company": pa.array(["a", "b"])}, [0.1, 0.2, 0.3], schema=taxi_spec
        )


def test_log_parquet_dictionary_encodes_strings_ints_and_time_not_floats_or_row(taxi_spec):
    t = P.prediction_table(
        "r", DAY.timestamp(), "v1", columns(taxi_spec, 50), np.linspace(0, 1, 50), schema=taxi_spec
    )
    meta = pq.ParquetFile(pa.BufferReader(P.parquet_bytes(t))).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "PLAIN_DICTIONARY" in encodings["company"] or "RLE_DICTIONARY" in encodings["company"]
    assert "PLAIN_DICTIONARY" in encodings["timestamp"] or "RLE_DICTIONARY" in encodings["timestamp"]
    for name in ("fare", "probability", "row"):
        assert not {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & set(encodings[name]), name


def test_prediction_table_rejects_missing_feature_and_length_mismatch(taxi_spec):
    cols = columns(taxi_spec, 2)
    with pytest.raises(P.LogError, match="fare"):
        P.prediction_table(
            "r", 0, "v1", {k: v for k, v in cols.items() if k != "fare"}, [0.1, 0.2], schema=taxi_spec
        )
    with pytest.raises(P.LogError, match="3 probabilities"):
        P.prediction_table("r", 0, "v1", cols, [0.1, 0.2, 0.3], schema=taxi_spec)
    with pytest.raises(P.LogError, match="source"):
        P.prediction_table("r", 0, "v1", cols, [0.1, 0.2], source="elsewhere", schema=taxi_spec)


def test_write_splits_by_date_and_scan_reads_two_dates_two_versions(tmp_path, taxi_spec):
    late = DAY + dt.timedelta(hours=23, minutes=59)
    a = P.prediction_table(
        "a", late.timestamp(), "v0001", columns(taxi_spec, 2), [0.1, 0.2], schema=taxi_spec
    )
    b = P.prediction_table(
        "b",
        (late + dt.timedelta(minutes=2)).timestamp(),
        "v0002",
        columns(taxi_spec, 3),
        [0.3, 0.4, 0.5],
        schema=taxi_spec,
    )
    uris = P.write_table(str(tmp_path), MODEL, "predictions", pa.concat_tables([a, b]))
    assert [u.split("/")[-2] for u in uris] == ["date=2026-11-23", "date=2026-11-24"]
    batches = list(P.scan(str(tmp_path), MODEL, "predictions", DAY, DAY + dt.timedelta(days=2)))
    got = pa.Table.from_batches(batches)
    assert sorted(got.column("model_version").to_pylist()) == ["v0001"] * 2 + ["v0002"] * 3
    assert sorted(got.column("request_id").to_pylist()) == ["a", "a", "b", "b", "b"]
    # The window filter is on the timestamp, inside partitions too.
    one = pa.Table.from_batches(
        list(P.scan(str(tmp_path), MODEL, "predictions", DAY, late + dt.timedelta(minutes=1)))
    )
    assert one.column("request_id").to_pylist() == ["a", "a"]


def test_scan_lists_only_the_window_partitions(tmp_path, monkeypatch, taxi_spec):
    for d in range(5):
        t = P.prediction_table(
            f"r{d}",
            (DAY + dt.timedelta(days=d)).timestamp(),
            "v1",
            columns(taxi_spec, 1),
            [0.5],
            schema=taxi_spec,
        )
        P.write_table(str(tmp_path), MODEL, "predictions", t)
    listed = []
    real = P.fs.list_files
    monkeypatch.setattr(P.fs, "list_files", lambda prefix: listed.append(prefix) or real(prefix))
    got = pa.Table.from_batches(
        list(
            P.scan(
                str(tmp_path), MODEL, "predictions", DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=3)
            )
        )
    )
    assert got.column("request_id").to_pylist() == ["r1", "r2"]
    # the window's partitions, and the (flat) folder of batch-job commit objects: nothing else
    assert [p.rsplit("/", 1)[-1] for p in listed] == ["date=2026-11-24", "date=2026-11-25", P.COMMITS]


def test_corrupt_truncated_and_foreign_files_are_skipped_and_named(tmp_path, taxi_spec):
    t = P.prediction_table("good", DAY.timestamp(), "v1", columns(taxi_spec, 4), [0.1] * 4, schema=taxi_spec)
    (good,) = P.write_table(str(tmp_path), MODEL, "predictions", t)
    part = tmp_path / "predictions" / MODEL / "date=2026-11-23"
    data = Path(good).read_bytes()
    (part / "truncated.parquet").write_bytes(data[: len(data) // 2])
    (part / "garbage.parquet").write_bytes(b"not parquet at all")
    (part / "empty.parquet").write_bytes(b"")
    pq.write_table(pa.table({"x": [1, 2]}), part / "foreign.parquet")
    (part / ".inflight.parquet.tmp").write_bytes(data[:10])  # a writer's temporary file: never listed
    seen = []
    report = P.ScanReport()
    rows = sum(
        b.num_rows
        for b in P.scan(
            str(tmp_path),
            MODEL,
            "predictions",
            DAY,
            DAY + dt.timedelta(days=1),
            on_corrupt=lambda u, r: seen.append(u),
            report=report,
        )
    )
    assert rows == 4
    names = sorted(u.rsplit("/", 1)[-1] for u, _ in report.corrupt)
    assert names == ["empty.parquet", "foreign.parquet", "garbage.parquet", "truncated.parquet"]
    assert sorted(s.rsplit("/", 1)[-1] for s in seen) == names
    assert all(reason for _, reason in report.corrupt)
    assert report.as_dict()["corrupt_files"] == 4 and report.files == 1


def test_write_is_atomic_and_never_overwrites(tmp_path, monkeypatch, taxi_spec):
    t = P.prediction_table("r", DAY.timestamp(), "v1", columns(taxi_spec, 2), [0.1, 0.2], schema=taxi_spec)

    def boom(table):
        raise OSError("disk full")

    monkeypatch.setattr(W, "parquet_bytes", boom)
    with pytest.raises(OSError):
        P.write_table(str(tmp_path), MODEL, "predictions", t)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    monkeypatch.undo()
    (uri,) = P.write_table(str(tmp_path), MODEL, "predictions", t, writer_id="w")
    with pytest.raises(FileExistsError):
        W._publish(uri, b"x")
    assert pq.read_table(uri).num_rows == 2


def test_feedback_table_validates_labels():
    t = P.feedback_table(["a", "a"], [0, 1], [1, 0], DAY.timestamp() + 60, DAY.timestamp())
    assert t.schema == P.FEEDBACK_SCHEMA
    assert t.column("delay_s").to_pylist() == [60.0, 60.0]
    for bad in ([1.7, 0], [2, 0], [-1, 0]):
        with pytest.raises(P.LogError, match="must be 0 or 1"):
            P.feedback_table(["a", "a"], [0, 1], bad, 0)
    with pytest.raises(P.LogError, match="kind"):
        list(P.scan("/nowhere", MODEL, "labels", DAY, DAY + dt.timedelta(days=1)))
    with pytest.raises(P.LogError, match="path segment"):
        P.write_table("/tmp/x", "../x", "feedback", t)


def test_size_per_row_on_taxi_rows(taxi_csv, taxi_spec):
    """The log-size target (<= 80 bytes per predicted row) on real taxi rows, one-row requests."""
    import pandas as pd

    df = pd.read_csv(taxi_csv).head(2000)
    cols = {}
    for f in taxi_spec.model_features:
        s = df[f.name]
        if f.kind == Kind.NUMERIC:
            cols[f.name] = s.astype("float32").to_numpy()
        elif f.kind == Kind.CATEGORICAL_INT:
            cols[f.name] = s.fillna(-1).astype("int64").to_numpy()
        else:
            cols[f.name] = s.fillna("").astype(str).to_numpy(dtype=object)
    tables = [
        P.prediction_table(
            f"{i:032x}",
            DAY.timestamp() + i,
            "v0001",
            {k: v[i : i + 1] for k, v in cols.items()},
            [0.5],
            schema=taxi_spec,
        )
        for i in range(len(df))
    ]
    size = len(P.parquet_bytes(pa.concat_tables(tables)))
    assert size / len(df) <= 80
    back = pq.read_table(pa.BufferReader(P.parquet_bytes(pa.concat_tables(tables))))
    fare = back.column("fare").combine_chunks().to_numpy(zero_copy_only=False)
    assert np.allclose(fare, df["fare"].astype("float32").to_numpy(), equal_nan=True)
    assert math.isclose(back.column("probability")[0].as_py(), 0.5)


def test_log_reads_as_a_hive_dataset_with_pyarrow_dataset_and_pandas(tmp_path, taxi_spec):
    """The files are readable as they are by generic readers (the README's examples)."""
    import pandas as pd
    import pyarrow.dataset as ds

    for d in range(2):
        t = P.prediction_table(
            f"r{d}",
            (DAY + dt.timedelta(days=d)).timestamp(),
            f"v{d}",
            columns(taxi_spec, 3),
            [0.5] * 3,
            schema=taxi_spec,
        )
        P.write_table(str(tmp_path), MODEL, "predictions", t)
    root = tmp_path / "predictions" / MODEL
    log = ds.dataset(str(root), format="parquet", partitioning="hive")
    got = log.to_table(filter=ds.field("date") == "2026-11-24", columns=["model_version", "fare"])
    assert got.column("model_version").to_pylist() == ["v1"] * 3
    frame = pd.read_parquet(str(root))
    assert len(frame) == 6 and set(frame["date"].astype(str)) == {"2026-11-23", "2026-11-24"}


@pytest.mark.parametrize(
    "column, values",
    [
        ("label", pa.array(["1", "0"])),
        ("label", pa.array([1.7, 0.0])),
        ("label", pa.array([True, False])),
    ],
)
def test_feedback_file_with_a_wrong_typed_label_is_skipped_and_named(tmp_path, column, values):
    good = P.feedback_table(["a", "b"], [0, 0], [1, 0], DAY.timestamp())
    P.write_table(str(tmp_path), MODEL, "feedback", good)
    bad = good.set_column(good.schema.get_field_index(column), column, values)
    part = tmp_path / "feedback" / MODEL / "date=2026-11-23"
    pq.write_table(bad, part / "bad.parquet")
    report = P.ScanReport()
    got = list(P.scan(str(tmp_path), MODEL, "feedback", DAY, DAY + dt.timedelta(days=1), report=report))
    assert sum(b.num_rows for b in got) == 2
    ((uri, reason),) = report.corrupt
    assert uri.endswith("bad.parquet") and "'label'" in reason


def test_numbers_written_as_text_are_not_coerced(tmp_path, taxi_spec):
    t = P.prediction_table("r", DAY.timestamp(), "v1", columns(taxi_spec, 2), [0.1, 0.2], schema=taxi_spec)
    hour = t.schema.get_field_index("trip_start_hour")
    part = tmp_path / "predictions" / MODEL / "date=2026-11-23"
    part.mkdir(parents=True)
    pq.write_table(t.set_column(hour, "trip_start_hour", pa.array(["12", "13"])), part / "text.parquet")
    report = P.ScanReport()
    assert not list(
        P.scan(
            str(tmp_path),
            MODEL,
            "predictions",
            DAY,
            DAY + dt.timedelta(days=1),
            schema=taxi_spec,
            report=report,
        )
    )
    assert "trip_start_hour" in report.corrupt[0][1]
