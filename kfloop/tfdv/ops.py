"""TFDV data validation as plain functions: statistics, schema, anomalies, drift / skew scores.

Used by the ``validate`` component, the ``kfloop validate`` / ``kfloop schema`` commands and the monitor.

Data flow: a Dataset CSV (or a DataFrame) → :func:`to_record_batches` (Arrow, one list value per cell,
missing cell = null) → :func:`compute_statistics` (Apache Beam, ``beam_pipeline_args`` passed through) →
:func:`validate` against the schema of :mod:`kfloop.tfdv.schema` → :func:`summarize_anomalies` (which are
blocking, per :class:`kfloop.config.ValidationConfig`) and :func:`drift_scores` (every feature's drift or
skew score, not only the ones above threshold).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from kfloop import config, fs
from kfloop import features as F
from kfloop import row_checks as checks
from kfloop.tfdv import schema as kschema

TRAINING = kschema.TRAINING
SERVING = kschema.SERVING

#: Rows per Arrow record batch fed to Beam.
DEFAULT_BATCH_ROWS = 10_000


class ValidationError(ValueError):
    """Bad input to validation (unreadable data, bad environment, empty dataset); names the culprit."""


class StatisticsCountError(RuntimeError):
    """The statistics do not account for every row read (records were dropped, data-validation#247)."""


class BlockingAnomaliesError(RuntimeError):
    """Blocking anomalies were found. ``findings`` holds the summaries (see :func:`summarize_anomalies`)."""

    def __init__(self, message: str, findings: list[dict]):
        super().__init__(message)
        self.findings = findings


# --------------------------------------------------------------------------------------------- reading


def read_frame(uri: str):
    """Reads a CSV (local path or ``gs://``) as strings, without type coercion.

    Unlike :func:`kfloop.datasets.read_dataset`, a value that does not parse as its column's type is kept
    as text so that TFDV reports the type anomaly instead of the reader failing, and a column name repeated
    in the header stays repeated (:func:`kfloop.row_checks.read_csv_text`) for the data gate to refuse.

    Raises:
        ValidationError: the file does not exist, is empty or has no header.
    """
    import pandas as pd

    try:
        payload = fs.read_bytes(uri)
    except FileNotFoundError:
        raise ValidationError(f"data file {uri!r} does not exist") from None
    if not payload.strip():
        raise ValidationError(f"data file {uri!r} is empty")
    try:
        return checks.read_csv_text(payload, empty_as_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValidationError(f"data file {uri!r} is not a readable CSV: {e}") from None


def _column_values(name: str, series):
    """A column's present values as a numpy array (int64 / float32 / object str) and its validity mask.

    Known features are decoded as their :mod:`kfloop.features` kind; when a value does not parse (text in a
    numeric column, a fraction in an integer column) the whole column stays text so TFDV sees the wrong type.
    Unknown columns are decoded as int, else float, else text.
    """
    import numpy as np
    import pandas as pd

    valid = series.notna().to_numpy()
    try:
        kind = F.feature(name).kind
    except KeyError:
        kind = None
    present = series[valid]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        numbers = pd.to_numeric(present).astype("float64")
    else:
        numbers = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
        if numbers.isna().any() or kind == F.Kind.CATEGORICAL_STR:
            return present.astype(str).to_numpy(dtype=object), valid
        numbers = numbers.astype("float64")
    as_float = numbers.to_numpy(dtype=np.float64)
    integral = bool(np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)))
    if kind == F.Kind.CATEGORICAL_STR:
        return present.astype(str).to_numpy(dtype=object), valid
    if kind == F.Kind.NUMERIC or (kind is None and not integral) or not integral:
        return as_float.astype(np.float32), valid
    return as_float.astype(np.int64), valid


def to_record_batches(frame, batch_rows: int = DEFAULT_BATCH_ROWS) -> list:
    """Converts a DataFrame to Arrow record batches in TFDV's format (a list column per feature).

    Each cell becomes a one-element list; a missing cell (NaN / None / empty) becomes a null list, which
    TFDV counts as "feature missing in this example".
    """
    import numpy as np
    import pyarrow as pa

    if batch_rows < 1:
        raise ValidationError(f"batch_rows must be >= 1, got {batch_rows}")
    columns = {}
    for name in frame.columns:
        values, valid = _column_values(str(name), frame[name])
        if values.dtype == object:  # text: TFDV wants bytes; utf8 -> binary is a free cast
            arr = pa.array(values, type=pa.string()).cast(pa.binary())
        else:
            arr = pa.array(values)
        columns[str(name)] = (arr, valid)
    batches = []
    n = len(frame)
    for start in range(0, n, batch_rows):
        stop = min(start + batch_rows, n)
        arrays, names = [], []
        for name, (arr, valid) in columns.items():
            v = valid[start:stop]
            counts = np.concatenate([[0], np.cumsum(v)]).astype(np.int32)
            first = int(np.sum(valid[:start]))
            offsets = pa.array(counts, mask=np.concatenate([~v, [False]]))
            arrays.append(pa.ListArray.from_arrays(offsets, arr.slice(first, int(counts[-1]))))
            names.append(name)
        batches.append(pa.RecordBatch.from_arrays(arrays, names))
    return batches


# ------------------------------------------------------------------------------------------ statistics


def stats_options(schema=None):
    """``tfdv.StatsOptions`` for the taxi data (categorical ints from ``schema``, default: feature hints)."""
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(
        schema=schema if schema is not None else kschema.hints(),
        enable_semantic_domain_stats=False,
        num_top_values=20,
        num_rank_histogram_buckets=1000,
        # Quantile buckets feed the numeric Jensen-Shannon divergence of drift_scores.
        num_quantiles_histogram_buckets=20,
    )


def compute_statistics(
    data,
    *,
    schema=None,
    beam_pipeline_args: tuple[str, ...] | list[str] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    output_path: str | None = None,
    staging_dir: str | None = None,
):
    """Computes TFDV statistics of a dataset with an Apache Beam pipeline and checks the example count.

    Args:
        data: A Dataset CSV (local path or ``gs://``) or a pandas DataFrame (one row per example; NaN /
            None = missing).
        schema: Schema for statistics options (which INT features are categorical); default: the hints of
            :func:`kfloop.tfdv.schema.hints` derived from :mod:`kfloop.features`.
        beam_pipeline_args: Beam pipeline options, e.g. ``["--direct_running_mode=multi_processing",
            "--direct_num_workers=2"]`` or ``["--runner=DataflowRunner", ...]``. Default: in-process
            DirectRunner.
        batch_rows: Rows per Arrow record batch.
        output_path: Where the Beam pipeline writes the binary statistics (must be reachable by the workers
            on a remote runner); default: a temporary local file.
        staging_dir: Where the record batches are staged for the workers (a ``gs://`` prefix on a remote
            runner); default: a temporary local folder.

    Returns:
        A ``DatasetFeatureStatisticsList`` with one dataset.

    Raises:
        ValidationError: unreadable or empty data, or a column name repeated in the header.
        StatisticsCountError: ``num_examples`` differs from the number of rows read.
    """
    frame = read_frame(os.fspath(data)) if isinstance(data, str | os.PathLike) else data
    rows = len(frame)
    if rows == 0:
        raise ValidationError(f"dataset {data if isinstance(data, str) else '(DataFrame)'} has no rows")
    repeated = checks.duplicate_columns(frame.columns)
    if repeated:
        raise ValidationError("; ".join(p.message for p in repeated))
    batches = to_record_batches(frame, batch_rows)
    stats = statistics_from_batches(
        batches,
        schema=schema,
        beam_pipeline_args=beam_pipeline_args,
        output_path=output_path,
        staging_dir=staging_dir,
    )
    check_count(stats, rows)
    return stats


def _read_batch(uri: str):
    """One Arrow record batch from an IPC stream file written by :func:`statistics_from_batches`."""
    import pyarrow as pa

    from kfloop import fs as kfs

    with pa.ipc.open_stream(kfs.read_bytes(uri)) as reader:
        yield from reader


def statistics_from_batches(
    batches,
    *,
    schema=None,
    beam_pipeline_args=(),
    output_path: str | None = None,
    staging_dir: str | None = None,
):
    """Runs TFDV's ``GenerateStatistics`` in a Beam pipeline over Arrow record batches (no count check).

    The batches are staged as Arrow IPC files and the pipeline reads them by path: putting the data itself
    into ``beam.Create`` makes Beam pickle and bz2-compress all of it into the pipeline graph (60% of the
    time at 100k rows, and a graph too large for remote runners).

    Args:
        batches: Arrow record batches (:func:`to_record_batches`).
        schema: See :func:`compute_statistics`.
        beam_pipeline_args: See :func:`compute_statistics`.
        output_path: See :func:`compute_statistics`.
        staging_dir: Where to stage the batches; must be readable by the Beam workers (a ``gs://`` prefix
            for Dataflow). Default: a temporary local folder, removed afterwards.

    Returns:
        The statistics; callers must check the count themselves (:func:`check_count`).
    """
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    options = stats_options(schema)
    with tempfile.TemporaryDirectory(prefix="kfloop-stats-") as tmp:
        stage = staging_dir or tmp
        paths = []
        for n, batch in enumerate(batches):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            paths.append(fs.join(stage, f"batch-{n:06d}.arrow"))
            fs.write_bytes(paths[-1], sink.getvalue().to_pybytes())
        out = output_path or os.path.join(tmp, "stats.pb")
        with beam.Pipeline(options=PipelineOptions(list(beam_pipeline_args))) as p:
            _ = (
                p
                | "Paths" >> beam.Create(paths)
                | "Read" >> beam.FlatMap(_read_batch)
                | "Stats" >> tfdv.GenerateStatistics(options)
                | "Write" >> tfdv.WriteStatisticsToBinaryFile(out)
            )
        return tfdv.load_stats_binary(out)


def check_count(stats, rows: int) -> None:
    """Fails loudly unless the statistics account for exactly ``rows`` examples.

    Raises:
        StatisticsCountError: the counts differ (TFDV's multi-process DirectRunner has been reported to
            drop records, data-validation#247).
    """
    got = sum(int(ds.num_examples) for ds in stats.datasets)
    if len(stats.datasets) != 1 or got != rows:
        raise StatisticsCountError(
            f"statistics count {got} examples in {len(stats.datasets)} dataset(s), but {rows} rows were read: "
            "records were dropped or duplicated while computing statistics"
        )


def write_statistics(stats, uri: str) -> None:
    """Writes statistics as a binary ``DatasetFeatureStatisticsList`` (local path or ``gs://``)."""
    fs.write_bytes(uri, stats.SerializeToString())


def load_statistics(uri: str):
    """Reads statistics written by :func:`write_statistics` (binary proto).

    Raises:
        ValidationError: the file is missing or not a statistics proto.
    """
    from google.protobuf.message import DecodeError
    from tensorflow_metadata.proto.v0 import statistics_pb2

    try:
        payload = fs.read_bytes(uri)
    except FileNotFoundError:
        raise ValidationError(f"statistics file {uri!r} does not exist") from None
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        stats.ParseFromString(payload)
    except DecodeError:
        raise ValidationError(
            f"statistics file {uri!r} is not a DatasetFeatureStatisticsList proto"
        ) from None
    if not stats.datasets:
        raise ValidationError(f"statistics file {uri!r} holds no dataset statistics")
    return stats


# -------------------------------------------------------------------------------------- schema, anomalies


def load_schema(path: str | None = None):
    """Loads the schema (default: the committed ``examples/taxi/schema.pbtxt``).

    Raises:
        ValidationError: the file is missing or not a schema text proto.
    """
    try:
        return kschema.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise ValidationError(str(e)) from None


def infer_schema(stats):
    """Infers a schema from statistics and applies :func:`kfloop.tfdv.schema.adjust_schema` to it."""
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(stats, infer_feature_shape=False)
    return kschema.adjust_schema(schema, stats)


def _with_linf_comparators(schema, kind: str):
    """A throwaway copy of ``schema`` reduced to names, types and a tiny L-infinity comparator on every
    categorical model feature (so that TFDV reports every categorical feature's distance)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    probe = schema_pb2.Schema()
    categorical = {f.name for f in F.MODEL_FEATURES if f.kind != F.Kind.NUMERIC}
    for feat in schema.feature:
        if feat.name not in categorical:
            continue
        keep = probe.feature.add(name=feat.name, type=feat.type)
        if feat.HasField("int_domain") and feat.int_domain.is_categorical:
            keep.int_domain.is_categorical = True
        comparator = keep.drift_comparator if kind == "drift" else keep.skew_comparator
        comparator.infinity_norm.threshold = 1e-12
    return probe


def validate(stats, schema, environment: str = TRAINING):
    """Validates statistics against the schema with TFDV (types, presence, domains, ranges, environment).

    Drift and skew are not part of this (see :func:`drift_scores`, which scores every feature).

    Args:
        stats: Statistics of the dataset under test.
        schema: The schema (:func:`load_schema`).
        environment: ``"TRAINING"`` (label required) or ``"SERVING"`` (label must be absent).

    Returns:
        A TFDV ``Anomalies`` proto.

    Raises:
        ValidationError: unknown environment.
    """
    import tensorflow_data_validation as tfdv

    if environment not in kschema.ENVIRONMENTS:
        raise ValidationError(f"environment {environment!r} is not one of {', '.join(kschema.ENVIRONMENTS)}")
    return tfdv.validate_statistics(stats, schema, environment=environment)


def summarize_anomalies(anomalies, cfg: config.ValidationConfig = config.ValidationConfig()) -> list[dict]:
    """Flattens an ``Anomalies`` proto into one dict per (feature, anomaly type), sorted by feature.

    A finding is blocking unless its type is in ``cfg.non_blocking``.

    Returns:
        ``[{"feature", "type", "short_description", "description", "blocking"}, ...]``; dataset-level
        anomalies use feature ``"(dataset)"``.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    out = []

    def add(feature: str, info) -> None:
        for reason in info.reason:
            type_name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            out.append(
                {
                    "feature": feature,
                    "type": type_name,
                    "short_description": reason.short_description,
                    "description": reason.description,
                    "blocking": type_name not in cfg.non_blocking,
                }
            )

    for name in sorted(anomalies.anomaly_info):
        add(name, anomalies.anomaly_info[name])
    if anomalies.HasField("dataset_anomaly_info"):
        add("(dataset)", anomalies.dataset_anomaly_info)
    return out


def score_findings(
    scores: list[dict], cfg: config.ValidationConfig = config.ValidationConfig()
) -> list[dict]:
    """Findings (same shape as :func:`summarize_anomalies`) for the drift / skew scores that crossed.

    Drift blocks only with ``cfg.block_on_drift``, skew only with ``cfg.block_on_skew``.
    """
    out = []
    for s in scores:
        if not s["crossed"]:
            continue
        linf = s["metric"] == "l_infinity"
        what = "L-infinity distance" if linf else "Jensen-Shannon divergence"
        against = "the reference statistics" if s["kind"] == "drift" else "the training split"
        out.append(
            {
                "feature": s["feature"],
                "type": f"{s['kind'].upper()}_{'L_INFTY' if linf else 'JENSEN_SHANNON_DIVERGENCE'}_HIGH",
                "short_description": f"High {s['kind']} ({what})",
                "description": f"{s['kind']}: {what} {s['score']:.4g} against {against} is above the "
                f"threshold {s['threshold']:g}",
                "blocking": bool(cfg.block_on_drift if s["kind"] == "drift" else cfg.block_on_skew),
            }
        )
    return out


def blocking_message(findings: list[dict]) -> str:
    """One line per blocking finding: ``feature: TYPE: description``."""
    lines = [f"  {f['feature']}: {f['type']}: {f['description']}" for f in findings if f["blocking"]]
    return f"{len(lines)} blocking data anomal{'y' if len(lines) == 1 else 'ies'}:\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------------ drift / skew


def _feature_stats(stats) -> dict:
    return {(f.path.step[-1] if f.path.step else f.name): f for f in stats.datasets[0].features}


def _quantile_buckets(fstats):
    """``[(low, high, count), ...]`` of a numeric feature's quantiles histogram (None if it has none)."""
    if fstats is None or fstats.WhichOneof("stats") != "num_stats":
        return None
    for h in fstats.num_stats.histograms:
        if h.type == h.QUANTILES:
            buckets = [(b.low_value, b.high_value, b.sample_count) for b in h.buckets if b.sample_count > 0]
            return buckets or None
    return None


def _cdf(buckets, xs):
    """Share of values <= each x, assuming values spread evenly inside each bucket (point mass if low==high)."""
    import numpy as np

    xs = np.asarray(xs, dtype=np.float64)
    total = sum(c for _, _, c in buckets)
    out = np.zeros_like(xs)
    for lo, hi, c in buckets:
        if hi > lo:
            out += c * np.clip((xs - lo) / (hi - lo), 0.0, 1.0)
        else:
            out += c * (xs >= lo)
    return out / total


def jensen_shannon(buckets, reference_buckets) -> float:
    """Jensen-Shannon divergence (log base 2, in [0, 1]) of a numeric distribution against a reference, both
    given as quantile histograms ``[(low, high, count), ...]``.

    The bins are the reference's quantile boundaries (about 20 equal-mass bins, plus one below and one above
    its range); the reference's mass per bin is exact, the other distribution's comes from its
    piecewise-linear CDF. Equal-mass reference bins keep the score stable on long-tailed features (one
    72,000 s trip makes TFDV's equal-width histogram put 99.9% of ``trip_seconds`` into a single bucket, and
    TFDV's own approximate JSD then reports 0.46 "skew" between two random halves of one time window) and
    on the discrete pickup / dropoff coordinates (census-tract centroids). On the taxi data, random train /
    eval halves score <= 0.03; fares x1.3 score about 0.09 and latitudes shifted by 0.02 degrees about 0.33.
    """
    import numpy as np

    edges = np.unique([v for lo, hi, _ in reference_buckets for v in (lo, hi)])
    p = np.clip(np.diff(np.concatenate([[0.0], _cdf(buckets, edges), [1.0]])), 0.0, None)
    q = np.clip(np.diff(np.concatenate([[0.0], _cdf(reference_buckets, edges), [1.0]])), 0.0, None)
    m = (p + q) / 2

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return max(0.0, min(1.0, (kl(p, m) + kl(q, m)) / 2))


def drift_scores(
    stats,
    reference_stats,
    *,
    kind: str = "drift",
    cfg: config.ValidationConfig = config.ValidationConfig(),
    schema=None,
) -> list[dict]:
    """Every model feature's drift (or skew) score, its threshold and whether it crossed.

    TFDV only reports features whose score crosses a threshold (data-validation#181); this gives all of
    them, also below threshold:

    * Categorical features (strings and categorical ints): L-infinity distance between the two value
      distributions, TFDV's own number (TFDV runs on a throwaway copy of the schema whose comparators
      have a tiny threshold, and the score is read from ``drift_skew_info``).
    * Numeric features: Jensen-Shannon divergence (:func:`jensen_shannon`) of the two quantile
      histograms, in bins of the reference's quantiles, over present values (presence has its own
      schema check).

    Args:
        stats: Statistics of the dataset under test (for skew: the "serving" side, e.g. the eval split).
        reference_stats: Statistics to compare against (for drift: the reference dataset; for skew: the
            training split).
        kind: ``"drift"`` (thresholds ``cfg.drift_*``) or ``"skew"`` (``cfg.skew_*``).
        cfg: Thresholds.
        schema: Schema (for the feature types; default: the committed one).

    Returns:
        One dict per model feature, in model order: ``{"feature", "kind", "metric": "l_infinity" |
        "jensen_shannon_divergence", "score", "threshold", "crossed", "checked"}``. ``score`` is None when
        either side has no values of the feature; ``checked`` is False for features exempt from the check
        (:data:`kfloop.tfdv.schema.NO_DRIFT_CHECK`), which never cross.

    Raises:
        ValidationError: unknown ``kind``.
    """
    import tensorflow_data_validation as tfdv

    if kind not in ("drift", "skew"):
        raise ValidationError(f"kind must be 'drift' or 'skew', got {kind!r}")
    base = schema if schema is not None else load_schema()
    probe = _with_linf_comparators(base, kind)
    if kind == "drift":
        result = tfdv.validate_statistics(stats, probe, previous_statistics=reference_stats)
    else:
        result = tfdv.validate_statistics(reference_stats, probe, serving_statistics=stats)
    linf: dict[str, float] = {}
    for info in result.drift_skew_info:
        for m in info.drift_measurements if kind == "drift" else info.skew_measurements:
            linf[info.path.step[-1]] = float(m.value)
    mine, theirs = _feature_stats(stats), _feature_stats(reference_stats)
    present = _present_features(stats) & _present_features(reference_stats)
    out = []
    for f in F.MODEL_FEATURES:
        numeric = f.kind == F.Kind.NUMERIC
        metric = "jensen_shannon_divergence" if numeric else "l_infinity"
        threshold = getattr(cfg, f"{kind}_{'jsd' if numeric else 'linf'}")
        score = None
        if f.name in present:
            if numeric:
                p, q = _quantile_buckets(mine.get(f.name)), _quantile_buckets(theirs.get(f.name))
                score = jensen_shannon(p, q) if p and q else None
            else:
                score = linf.get(f.name)
        checked = f.name not in kschema.NO_DRIFT_CHECK
        out.append(
            {
                "feature": f.name,
                "kind": kind,
                "metric": metric,
                "score": score,
                "threshold": threshold,
                "crossed": bool(checked and score is not None and score > threshold),
                "checked": checked,
            }
        )
    return out


def _present_features(stats) -> set[str]:
    """Features with at least one non-missing value."""
    out = set()
    for fstats in stats.datasets[0].features:
        which = fstats.WhichOneof("stats")
        if which and getattr(fstats, which).common_stats.num_non_missing > 0:
            out.add(fstats.path.step[-1] if fstats.path.step else fstats.name)
    return out


# ------------------------------------------------------------------------------------- whole validation


@dataclasses.dataclass
class ValidationResult:
    """Everything one validation produced.

    Attributes:
        stats: Statistics of the dataset.
        anomalies: TFDV ``Anomalies`` proto (schema checks).
        findings: :func:`summarize_anomalies` of ``anomalies`` plus :func:`score_findings` of drift / skew.
        drift: :func:`drift_scores` against the reference statistics (empty without a reference).
        skew: :func:`drift_scores` with ``kind="skew"`` against the skew dataset (empty without one).
        environment: The schema environment used.
        rows: Rows read.
    """

    stats: object
    anomalies: object
    findings: list[dict]
    drift: list[dict]
    skew: list[dict]
    environment: str
    rows: int

    @property
    def blocking(self) -> list[dict]:
        """The blocking findings."""
        return [f for f in self.findings if f["blocking"]]

    def summary(self) -> dict:
        """A JSON-ready summary (written next to the anomalies proto)."""
        return {
            "environment": self.environment,
            "rows": self.rows,
            "num_examples": int(self.stats.datasets[0].num_examples),
            "blocking": bool(self.blocking),
            "num_anomalies": len(self.findings),
            "num_blocking": len(self.blocking),
            "anomalies": self.findings,
            "drift": self.drift,
            "skew": self.skew,
        }


def run_validation(
    data,
    *,
    schema=None,
    environment: str = TRAINING,
    reference_stats=None,
    skew_data=None,
    cfg: config.ValidationConfig = config.ValidationConfig(),
    beam_pipeline_args: tuple[str, ...] | list[str] = (),
) -> ValidationResult:
    """Statistics, anomalies, drift and skew of one dataset (what the component and the CLI run).

    Args:
        data: Dataset CSV (path / ``gs://``) or DataFrame.
        schema: Schema proto; default: the committed one.
        environment: ``"TRAINING"`` or ``"SERVING"``.
        reference_stats: Statistics to measure drift against (optional).
        skew_data: A second dataset (e.g. the eval split, as CSV / DataFrame) for the skew check, or its
            statistics (optional).
        cfg: Thresholds and which anomalies block.
        beam_pipeline_args: Passed to Beam.

    Besides TFDV's schema checks, the rows are checked for what a schema cannot express
    (:mod:`kfloop.row_checks`: a column name repeated in the header, non-finite numbers, event times
    outside ``cfg.event_time``); each is a blocking finding naming the column and the first CSV line. Of a
    repeated column only the first is validated.

    Returns:
        A :class:`ValidationResult`; raising on blocking anomalies is up to the caller.

    Raises:
        ValidationError: unreadable or empty data, unknown environment.
    """
    if environment not in kschema.ENVIRONMENTS:
        raise ValidationError(f"environment {environment!r} is not one of {', '.join(kschema.ENVIRONMENTS)}")
    schema = schema if schema is not None else load_schema()
    bounds = cfg.event_time.bounds()
    frame, gate = _checked_frame(data, bounds, "")
    stats = compute_statistics(frame, schema=schema, beam_pipeline_args=beam_pipeline_args)
    skew_stats = None
    if skew_data is not None:
        if hasattr(skew_data, "datasets"):
            skew_stats = skew_data
        else:
            skew_frame, skew_gate = _checked_frame(skew_data, bounds, "skew data: ")
            gate += skew_gate
            skew_stats = compute_statistics(skew_frame, schema=schema, beam_pipeline_args=beam_pipeline_args)
    anomalies = validate(stats, schema, environment)
    drift = (
        drift_scores(stats, reference_stats, kind="drift", cfg=cfg, schema=schema)
        if reference_stats is not None
        else []
    )
    skew = (
        drift_scores(skew_stats, stats, kind="skew", cfg=cfg, schema=schema) if skew_stats is not None else []
    )
    gate = [{**g, "blocking": g["type"] not in cfg.non_blocking} for g in gate]
    findings = gate + summarize_anomalies(anomalies, cfg) + score_findings(drift + skew, cfg)
    rows = int(stats.datasets[0].num_examples)
    return ValidationResult(stats, anomalies, findings, drift, skew, environment, rows)


def _checked_frame(data, bounds: tuple[int, int], prefix: str):
    """Reads ``data`` (path or DataFrame) and runs :func:`kfloop.row_checks.frame_problems` on it.

    Returns:
        ``(frame, findings)``: the frame without the repeats of a repeated column name, and one finding per
        problem (its description prefixed with ``prefix``).

    Raises:
        ValidationError: unreadable or empty data.
    """
    path = isinstance(data, str | os.PathLike)
    frame = read_frame(os.fspath(data)) if path else data
    if len(frame) == 0:
        raise ValidationError(f"dataset {os.fspath(data) if path else '(DataFrame)'} has no rows")
    findings = []
    for problem in checks.frame_problems(frame, bounds, extra_numeric=(F.TIPS,)):
        finding = problem.finding()
        finding["description"] = prefix + finding["description"]
        findings.append(finding)
    if frame.columns.duplicated().any():
        frame = frame.loc[:, ~frame.columns.duplicated()]
    return frame, findings


def write_artifacts(
    result: ValidationResult,
    *,
    statistics_uri: str | None = None,
    anomalies_dir: str | None = None,
    report_uri: str | None = None,
    title: str = "Data validation",
) -> dict[str, str]:
    """Writes what a validation produced; every argument left None is skipped.

    Args:
        result: From :func:`run_validation`.
        statistics_uri: Binary ``DatasetFeatureStatisticsList`` file.
        anomalies_dir: Folder that gets ``anomalies.pbtxt`` (TFDV ``Anomalies`` text proto) and
            ``summary.json`` (:meth:`ValidationResult.summary`).
        report_uri: Self-contained HTML report (:mod:`kfloop.tfdv.validation_report`).
        title: Report title.

    Returns:
        ``{"statistics"|"anomalies"|"summary"|"report": uri}`` of what was written.
    """
    import json

    from google.protobuf import text_format

    from kfloop.tfdv import validation_report as report

    written = {}
    if statistics_uri:
        write_statistics(result.stats, statistics_uri)
        written["statistics"] = statistics_uri
    if anomalies_dir:
        written["anomalies"] = fs.join(anomalies_dir, "anomalies.pbtxt")
        fs.write_text(written["anomalies"], text_format.MessageToString(result.anomalies))
        written["summary"] = fs.join(anomalies_dir, "summary.json")
        fs.write_text(written["summary"], json.dumps(result.summary(), indent=2, sort_keys=True) + "\n")
    if report_uri:
        fs.write_text(report_uri, report.render(result.summary(), result.stats, title=title))
        written["report"] = report_uri
    return written
