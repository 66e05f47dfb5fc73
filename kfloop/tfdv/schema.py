"""The TFDV schema of a dataset, built from its training statistics and its dataset spec, kept as reviewed code.

A schema is a TFDV ``Schema`` text proto that a person reviews next to the spec (e.g.
``examples/taxi/schema.pbtxt`` next to ``examples/taxi/spec.yaml``). ``kfloop schema infer --spec SPEC
--data CSV`` refreshes it: TFDV infers a schema from the data's statistics, then :func:`from_spec` applies
the spec (what inference cannot know, or gets too strict / too loose) and the command prints a diff against
the file instead of overwriting it. ``kfloop init`` writes the first one.

Only the standard library is imported at module level (the serving env imports :mod:`kfloop` too).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from kfloop.spec import DriftMode, Kind

if TYPE_CHECKING:
    from kfloop.spec import DatasetSpec

#: TFDV environments: the label exists in TRAINING data only.
TRAINING = "TRAINING"
SERVING = "SERVING"
ENVIRONMENTS = (TRAINING, SERVING)

#: Slack below the observed presence of a nullable feature before its presence is an anomaly.
PRESENCE_SLACK = 0.1

#: A nullable feature present in fewer than this share of the training rows has no presence check at all:
#: a window of live data without a single value of it is normal (the taxi data's pickup census tract is
#: filled in for one trip in 15,000).
RARE_PRESENCE = 0.01

#: Name of the schema file kept next to a spec (``kfloop init`` writes both; ``kfloop schema infer``
#: compares with it by default).
SCHEMA_FILE = "schema.pbtxt"


def default_path(spec_path: str | Path) -> Path:
    """The schema file kept next to a spec file: ``<spec folder>/schema.pbtxt``."""
    return Path(spec_path).resolve().parent / SCHEMA_FILE


def load(path: str | Path):
    """Loads a schema text proto.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a valid ``Schema`` text proto (message names the file).
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"schema file {str(p)!r} does not exist")
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(p.read_text(), schema)
    except text_format.ParseError as e:
        raise ValueError(f"schema file {str(p)!r} is not a valid TFDV Schema text proto: {e}") from None
    return schema


def load_schema(path: str | Path):
    """:func:`load` of a path, ``file://`` or ``gs://`` URI, or the text proto itself (a string with a newline
    and no file of that name), with its errors as :class:`kfloop.tfdv.errors.ValidationError` (one line).

    Raises:
        ValidationError: no path, a missing file or one that is not a schema text proto.
    """
    import os

    from kfloop import fs
    from kfloop.tfdv.errors import ValidationError

    if not path:
        raise ValidationError("no schema file given (the schema kept next to the dataset spec)")
    text = str(path)
    try:
        if "\n" in text and not os.path.isfile(text):
            return parse_text(text, "(schema text)")
        if text.startswith("gs://"):
            return parse_text(fs.read_text(text), text)
        return load(text[len("file://") :] if text.startswith("file://") else text)
    except (FileNotFoundError, ValueError) as e:
        raise ValidationError(str(e)) from None


def parse_text(text: str, origin: str = "schema"):
    """A schema from its text proto (``origin`` names it in the error).

    Raises:
        ValueError: not a valid ``Schema`` text proto.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as e:
        raise ValueError(f"schema file {origin!r} is not a valid TFDV Schema text proto: {e}") from None
    return schema


def to_text(schema, spec: DatasetSpec) -> str:
    """The schema as text proto, with a header comment (the form committed next to the spec)."""
    from google.protobuf import text_format

    header = (
        f"# TFDV schema of the {spec.name} Dataset artifacts (its dataset spec describes the columns).\n"
        "# Reviewed code: refresh with `kfloop schema infer --spec SPEC --data CSV` (prints a diff), then "
        "commit.\n"
        "# How the spec shapes the inferred schema: kfloop/tfdv/schema.py (from_spec).\n"
    )
    return header + text_format.MessageToString(schema)


def _categorical_ints(spec: DatasetSpec):
    """Features stored as categorical INT: categorical ints, booleans and a class label (not a regression
    label: it is a FLOAT)."""
    label = (spec.label,) if spec.label.kind is Kind.LABEL else ()
    return (*spec.features_of(Kind.CATEGORICAL_INT), *spec.features_of(Kind.BOOLEAN), *label)


def hints(spec: DatasetSpec):
    """A minimal schema for statistics generation: marks categorical ints (and booleans, the label) as
    categorical.

    TFDV computes string-style statistics (top values, rank histogram; needed for L-infinity drift) for an
    INT feature only when the schema passed to ``StatsOptions`` says ``int_domain.is_categorical``.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = schema_pb2.Schema()
    for f in _categorical_ints(spec):
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


def _string_domain(schema, feat, values) -> None:
    """Points ``feat`` at a top-level string domain named after it holding exactly ``values``."""
    name = feat.domain if feat.WhichOneof("domain_info") == "domain" else feat.name
    for d in schema.string_domain:
        if d.name == name:
            del d.value[:]
            d.value.extend(values)
            break
    else:
        schema.string_domain.add(name=name, value=list(values))
    feat.domain = name


def from_spec(schema, spec: DatasetSpec, stats=None):
    """Applies the dataset spec to a TFDV-inferred schema (in place; also returned).

    Inference sees the data; the spec says what the data is. Each rule:

    * Columns: the schema holds the Dataset columns only (``spec.dataset_columns``); excluded, raw-only
      and unknown columns are dropped.
    * Types from kinds: numeric and a regression label → FLOAT; categorical int, boolean, a class label → INT with
      ``int_domain.is_categorical`` (statistics carry top values, drift uses L-infinity); the time column →
      INT; categorical string → BYTES.
    * Ranges: a numeric ``range`` becomes ``float_domain`` min / max (either end may be open); a
      categorical-int ``range`` becomes ``int_domain`` min / max, and so does an integer ``domain`` (TFDV's
      int domain is a range: its smallest and largest value); booleans and a binary label are 0..1, a
      multiclass label (the class index) 0..K-1.
    * String domains: a categorical string with a ``domain`` in the spec gets exactly that domain (and the
      spec's ``min_domain_mass`` as ``distribution_constraints``, so a small unseen share is allowed); one
      without keeps no domain (inference would reject every value unseen in training).
    * Presence (``nullable``): a non-nullable column must be present in every example
      (``min_fraction = 1``). A nullable one must be present in at least one example, and in at least its
      observed share minus :data:`PRESENCE_SLACK` (rounded down to a tenth), so a column turning mostly or
      all null is caught; one present in fewer than :data:`RARE_PRESENCE` of the rows (or, without
      statistics, any nullable one) is not checked.
    * Environments: the label is only in ``TRAINING`` data; ``default_environment`` lists both, so serving
      data without the label is valid and training data without it is not.
    * Drift: every model feature whose drift mode is not ``off`` gets a drift comparator with its threshold
      (``spec.drift_threshold``): L-infinity for categorical kinds, Jensen-Shannon divergence for numeric
      ones. Whether a drift triggers retraining or is only recorded is the monitor's business
      (``spec.drift_mode``). The time column and the label have none.
    * Every column has exactly one value per example.

    Args:
        schema: A ``tensorflow_metadata`` ``Schema`` (usually from ``tfdv.infer_schema``; an empty one gives
            the schema the spec alone implies).
        spec: The dataset spec.
        stats: The statistics it was inferred from (for observed presence); optional.

    Returns:
        The same schema object.
    """
    from tensorflow_metadata.proto.v0 import schema_pb2

    by_name = {f.name: f for f in schema.feature}
    ordered = []
    for name in spec.dataset_columns:
        feat = by_name.get(name)
        if feat is None:
            feat = schema_pb2.Feature(name=name)
        ordered.append(feat)
    copies = [schema_pb2.Feature() for _ in ordered]
    for copy, feat in zip(copies, ordered, strict=True):
        copy.CopyFrom(feat)
    del schema.feature[:]
    schema.feature.extend(copies)

    del schema.default_environment[:]
    schema.default_environment.extend(ENVIRONMENTS)

    categorical_ints = {f.name for f in _categorical_ints(spec)}
    for feat in schema.feature:
        f = spec.feature(feat.name)
        feat.ClearField("presence")
        feat.presence.min_count = 1
        if not f.nullable:
            feat.presence.min_fraction = 1.0
        else:
            observed = _presence(stats, feat.name)
            if stats is None or (observed is not None and observed < RARE_PRESENCE):
                feat.presence.min_count = 0
            elif observed is not None and observed > PRESENCE_SLACK:
                feat.presence.min_fraction = math.floor((observed - PRESENCE_SLACK) * 10) / 10
        if feat.name in categorical_ints:
            feat.type = schema_pb2.INT
            if feat.WhichOneof("domain_info") not in (None, "int_domain"):
                feat.ClearField(feat.WhichOneof("domain_info"))
            feat.int_domain.is_categorical = True
            if f.kind is Kind.BOOLEAN:
                feat.int_domain.min, feat.int_domain.max = 0, 1
            elif f.kind is Kind.LABEL:  # 0/1, or the class index 0..K-1
                feat.int_domain.min, feat.int_domain.max = 0, spec.n_classes - 1
            elif f.range is not None:
                lo, hi = f.range
                if lo is not None:
                    feat.int_domain.min = int(lo)
                if hi is not None:
                    feat.int_domain.max = int(hi)
            elif f.domain is not None:
                feat.int_domain.min, feat.int_domain.max = min(f.domain), max(f.domain)
        elif f.kind is Kind.TIMESTAMP:
            feat.type = schema_pb2.INT
            if feat.WhichOneof("domain_info") is not None:
                feat.ClearField(feat.WhichOneof("domain_info"))
        elif f.kind in (Kind.NUMERIC, Kind.TARGET):
            feat.type = schema_pb2.FLOAT
            if feat.WhichOneof("domain_info") not in (None, "float_domain"):
                feat.ClearField(feat.WhichOneof("domain_info"))
            if f.range is not None:
                lo, hi = f.range
                if lo is not None:
                    feat.float_domain.min = lo
                if hi is not None:
                    feat.float_domain.max = hi
        else:  # categorical string
            feat.type = schema_pb2.BYTES
            feat.ClearField("distribution_constraints")
            if f.domain is not None:
                _string_domain(schema, feat, f.domain)
                if f.min_domain_mass is not None:
                    feat.distribution_constraints.min_domain_mass = f.min_domain_mass
            elif feat.WhichOneof("domain_info") is not None:
                feat.ClearField(feat.WhichOneof("domain_info"))
        # A feature's presence is checked above; the number of values per example is always one.
        feat.ClearField("shape")
        feat.value_count.min = 1
        feat.value_count.max = 1
        del feat.not_in_environment[:]
        if f.kind in (Kind.LABEL, Kind.TARGET):
            feat.not_in_environment.append(SERVING)
        feat.ClearField("drift_comparator")
        feat.ClearField("skew_comparator")
        if f.kind not in (Kind.LABEL, Kind.TARGET, Kind.TIMESTAMP) and f.drift_mode != DriftMode.OFF.value:
            if f.kind is Kind.NUMERIC:
                feat.drift_comparator.jensen_shannon_divergence.threshold = f.drift_threshold
            else:
                feat.drift_comparator.infinity_norm.threshold = f.drift_threshold

    # Inference also writes top-level string domains for categorical ints; their int_domain replaced the
    # reference to them above, so drop the domains no feature uses any more.
    used = {f.domain for f in schema.feature if f.WhichOneof("domain_info") == "domain"}
    keep_domains = [d for d in schema.string_domain if d.name in used]
    del schema.string_domain[:]
    schema.string_domain.extend(keep_domains)
    return schema


def infer_schema(stats, spec: DatasetSpec, *, presence_floors: bool = True):
    """Infers a schema from training statistics with TFDV and applies :func:`from_spec` to it.

    Args:
        stats: The training statistics.
        spec: The dataset spec.
        presence_floors: Whether a nullable column's observed presence becomes its floor (:func:`from_spec`);
            False for statistics of a whole file rather than of a training window (``kfloop init``): a
            floor read off all rows refuses a window that has none (a column recorded only from a date on).
    """
    import tensorflow_data_validation as tfdv

    schema = tfdv.infer_schema(stats, infer_feature_shape=False)
    return from_spec(schema, spec, stats if presence_floors else None)


def spec_schema(spec: DatasetSpec):
    """The schema the spec alone implies (no statistics: nullable columns need one value, no more)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    return from_spec(schema_pb2.Schema(), spec)
