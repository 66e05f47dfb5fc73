"""The TFDV schema of the taxi data, kept as reviewed code.

``examples/taxi/schema.pbtxt`` is a TFDV ``Schema`` text proto that a person reviews in pull
requests. ``kfloop schema infer --data CSV`` refreshes it from data: TFDV infers a schema, then
:func:`adjust_schema` applies what we know about the taxi data that inference cannot see (or gets too
strict / too loose), and the command prints a diff against the committed file instead of overwriting it.

Only the standard library is imported at module level (the serving env imports :mod:`kfloop` too).
"""

from __future__ import annotations

import math
from pathlib import Path

from kfloop import features as F

#: The committed schema file.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "examples" / "taxi" / "schema.pbtxt"

#: TFDV environments: the label exists in TRAINING data only.
TRAINING = "TRAINING"
SERVING = "SERVING"
ENVIRONMENTS = (TRAINING, SERVING)

#: Value ranges the taxi data obeys (inclusive). Distances, fares and durations are never negative;
#: pickup / dropoff points are census-tract centroids inside the Chicago area (the data spans about
#: 41.65..42.02 N and -87.91..-87.53 E), the box below leaves a margin around the city.
FLOAT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "trip_miles": (0.0, None),
    "fare": (0.0, None),
    "trip_seconds": (0.0, None),
    "pickup_latitude": (41.5, 42.2),
    "dropoff_latitude": (41.5, 42.2),
    "pickup_longitude": (-88.1, -87.4),
    "dropoff_longitude": (-88.1, -87.4),
}

#: Integer domains of categorical ints (inclusive); census tracts have no useful range.
INT_RANGES: dict[str, tuple[int, int]] = {
    "trip_start_hour": (0, 23),
    "trip_start_day": (1, 7),
    "trip_start_month": (1, 12),
    "pickup_community_area": (1, 77),
    "dropoff_community_area": (1, 77),
    F.LABEL.name: (0, 1),
}

#: Smallest share of values that must fall inside a string feature's known domain. New taxi companies
#: appear every year (about 1.6% of 2015-16 trips name a company unseen before 2015) and rare payment types
#: show up (e.g. "Prcard"), so a tiny unseen share is normal; more than this is an anomaly.
MIN_DOMAIN_MASS: dict[str, float] = {
    "payment_type": 0.99,
    "company": 0.9,
}

#: Model features without drift / skew checks: ``pickup_census_tract`` is filled in for about one trip in
#: ten thousand, so its distribution is noise (one row decides it).
NO_DRIFT_CHECK = frozenset({"pickup_census_tract"})

#: Slack below the observed presence of a nullable feature before its presence is an anomaly.
PRESENCE_SLACK = 0.1


def schema_path(path: str | Path | None = None) -> Path:
    """The schema file to use: ``path`` if given, else the committed one."""
    return Path(path) if path else SCHEMA_PATH


def load(path: str | Path | None = None):
    """Loads a schema text proto (default: the committed one).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a valid ``Schema`` text proto (message names the file).
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    p = schema_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"schema file {str(p)!r} does not exist")
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(p.read_text(), schema)
    except text_format.ParseError as e:
        raise ValueError(f"schema file {str(p)!r} is not a valid TFDV Schema text proto: {e}") from None
    return schema


def to_text(schema) -> str:
    """The schema as text proto, with a header comment (the form committed to the repository)."""
    from google.protobuf import text_format

    header = (
        "# TFDV schema of the Chicago taxi Dataset artifacts (kfloop/features.py describes the columns).\n"
        "# Reviewed code: refresh with `kfloop schema infer --data CSV` (prints a diff), then commit.\n"
        "# Code-level adjustments of the inferred schema live in kfloop/tfdv/schema.py (adjust_schema).\n"
    )
    return header + text_format.MessageToString(schema)


def hints():
    """A minimal schema for statistics generation: marks categorical ints as categorical.

    TFDV computes string-style statistics (top values, rank histogram; needed for L-infinity drift) for an
    INT feature only when the schema passed to ``StatsOptions`` says ``int_domain.is_categorical``.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    for f in (*F.features_of(F.Kind.CATEGORICAL_INT), F.LABEL):
        feat = schema.feature.add(name=f.name, type=schema_pb2.INT)
        feat.int_domain.is_categorical = True
    return schema


def _presence(stats, name: str) -> float | None:
    """Observed share of examples where ``name`` is present, from statistics (None if unknown)."""
    if stats is None:
        return None
    ds = stats.datasets[0]
    for fs in ds.features:
        if (fs.path.step and fs.path.step[-1] == name) or fs.name == name:
            which = fs.WhichOneof("stats")
            common = getattr(fs, which).common_stats if which else None
            if common is None or ds.num_examples == 0:
                return None
            return common.num_non_missing / ds.num_examples
    return None


def adjust_schema(schema, stats=None):
    """Applies what we know about the taxi data to a TFDV-inferred schema (in place; also returned).

    Every rule says why inference alone is not right for this data:

    * Categorical ints (hour, day, month, community areas, census tracts) are categories, not quantities:
      ``int_domain.is_categorical`` so statistics carry top values and drift uses L-infinity. Known code
      ranges (:data:`INT_RANGES`) are declared; inference does not infer int ranges.
    * Float ranges (:data:`FLOAT_RANGES`): inference declares none; values outside them are data errors.
    * Presence: a feature that :mod:`kfloop.features` calls non-nullable must be present in every example
      (``min_fraction = 1``). A nullable one must be present in at least one example, and in at least its
      observed share minus :data:`PRESENCE_SLACK` (rounded down to a tenth) so that a column turning mostly
      or all null is caught; inference only requires ``min_count = 1``. ``pickup_census_tract`` is almost
      never filled in the taxi data (a single row before 2015), so its presence is not checked at all.
    * String domains: inference rejects *any* unseen value; :data:`MIN_DOMAIN_MASS` allows a small share of
      new companies / payment types, as the real data has them. A string feature inferred without a domain
      (too many values) keeps none.
    * The label ``big_tipper`` is only in the ``TRAINING`` environment; ``default_environment`` lists both,
      so serving data without the label is valid and training data without it is not.
    * The event time ``trip_start_timestamp`` stays an INT feature that must be present; it is not a model
      input and has no drift / skew check (its distribution moves by construction).
    * Columns that are not in :data:`kfloop.features.DATASET_COLUMNS` are dropped from the schema.

    Args:
        schema: A ``tensorflow_metadata`` ``Schema`` (usually from ``tfdv.infer_schema``).
        stats: The statistics it was inferred from (for observed presence); optional.

    Returns:
        The same schema object.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    known = set(F.DATASET_COLUMNS)
    keep = [f for f in schema.feature if f.name in known]
    del schema.feature[:]
    schema.feature.extend(keep)

    del schema.default_environment[:]
    schema.default_environment.extend(ENVIRONMENTS)

    by_name = {f.name: f for f in schema.feature}
    for name, feat in by_name.items():
        spec = F.feature(name)
        feat.ClearField("presence")
        feat.presence.min_count = 1
        if not spec.nullable:
            feat.presence.min_fraction = 1.0
        else:
            observed = _presence(stats, name)
            if observed is not None and observed > PRESENCE_SLACK:
                feat.presence.min_fraction = math.floor((observed - PRESENCE_SLACK) * 10) / 10
        if spec.kind in (F.Kind.CATEGORICAL_INT, F.Kind.LABEL):
            feat.type = schema_pb2.INT
            feat.int_domain.is_categorical = True
            if name in INT_RANGES:
                feat.int_domain.min, feat.int_domain.max = INT_RANGES[name]
        elif spec.kind == F.Kind.TIMESTAMP:
            feat.type = schema_pb2.INT
        elif spec.kind == F.Kind.NUMERIC:
            feat.type = schema_pb2.FLOAT
            lo, hi = FLOAT_RANGES.get(name, (None, None))
            if lo is not None:
                feat.float_domain.min = lo
            if hi is not None:
                feat.float_domain.max = hi
        elif spec.kind == F.Kind.CATEGORICAL_STR:
            feat.type = schema_pb2.BYTES
            if name in MIN_DOMAIN_MASS and (feat.HasField("domain") or feat.HasField("string_domain")):
                feat.distribution_constraints.min_domain_mass = MIN_DOMAIN_MASS[name]
        # A feature's presence is checked above; the number of values per example is always one.
        feat.ClearField("shape")
        feat.value_count.min = 1
        feat.value_count.max = 1
        del feat.not_in_environment[:]
        if spec.kind == F.Kind.LABEL:
            feat.not_in_environment.append(SERVING)

    # pickup_census_tract: practically always missing (see the docstring); do not check its presence.
    tract = by_name.get("pickup_census_tract")
    if tract is not None:
        tract.ClearField("presence")
        tract.presence.min_count = 0
    # Inference also writes top-level string domains for categorical ints; their int_domain replaced the
    # reference to them above, so drop the domains no feature uses any more.
    used = {f.domain for f in schema.feature if f.WhichOneof("domain_info") == "domain"}
    keep_domains = [d for d in schema.string_domain if d.name in used]
    del schema.string_domain[:]
    schema.string_domain.extend(keep_domains)
    return schema
