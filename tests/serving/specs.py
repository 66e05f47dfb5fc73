"""Dataset specs for the serving, prediction-log and batch tests that are not the taxi example's.

``SIGNUPS_YAML`` is a small synthetic spec (ISO time, a ``"yes"`` / ``"no"`` label, ``"NA"`` missing token,
a boolean, a string categorical, an excluded id): code that still knows taxi columns fails on it.
:func:`specs` is a hypothesis strategy of generated specs (both envs import this module: no TensorFlow).
"""

from __future__ import annotations

SIGNUPS_YAML = """\
name: signups
task: binary
description: Did a trial user sign up?
missing_values: ["", "NA"]
time: {column: seen_at, format: iso8601}
label: {column: signed_up, positive: "yes"}
exclude: [user_id]
columns:
  - {name: plan, kind: categorical_string, domain: [free, team, pro]}
  - {name: visits, kind: numeric, nullable: true, range: [0, null]}
  - {name: mobile, kind: boolean, nullable: true}
  - {name: region, kind: categorical_int, range: [1, 9]}
  - {name: referrer, kind: categorical_string, nullable: true}
slices: [plan]
"""


def signups_spec():
    """The synthetic ``signups`` spec."""
    from kfloop import spec

    return spec.loads(SIGNUPS_YAML, origin="signups.yaml")


def signups_rows(n: int = 6) -> list[dict]:
    """``n`` valid V1 instances of the signups spec (JSON values), missing values included."""
    plans = ["free", "team", "pro"]
    out = []
    for i in range(n):
        out.append(
            {
                "plan": plans[i % 3],
                "visits": None if i % 4 == 3 else float(i) * 1.5,
                "mobile": None if i % 5 == 4 else bool(i % 2),
                "region": i % 9 + 1,
                "referrer": None if i % 3 == 2 else f"site{i % 4}",
            }
        )
    return out


def valid_value_strategy(f):
    """Hypothesis strategy of valid JSON values of one feature (None where nullable)."""
    from hypothesis import strategies as st

    from kfloop.spec import Kind

    if f.kind == Kind.NUMERIC:
        base = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    elif f.kind == Kind.CATEGORICAL_INT:
        base = st.integers(0, 10**6)
    elif f.kind == Kind.BOOLEAN:
        base = st.booleans() | st.sampled_from([0, 1])
    else:
        base = st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s)
    return (base | st.none()) if f.nullable else base


def specs():
    """Hypothesis strategy of valid :class:`kfloop.spec.DatasetSpec` s: 1-6 features of every kind,
    nullable or not, with or without an ISO / epoch time column, a string or integer positive class."""
    from hypothesis import strategies as st

    from kfloop import spec

    kinds = st.sampled_from(["numeric", "categorical_int", "categorical_string", "boolean"])
    names = st.lists(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=6, unique=True
    ).filter(lambda ns: not {"label_col", "event_time"} & set(ns) and not set(ns) & _FIXED)

    @st.composite
    def build(draw):
        cols = [{"name": n, "kind": draw(kinds), "nullable": draw(st.booleans())} for n in draw(names)]
        data = {
            "name": "gen-" + draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)),
            "missing_values": draw(st.sampled_from([[""], ["", "NA"], ["?"]])),
            "label": {"column": "label_col", "positive": draw(st.sampled_from(["yes", "Y", 1, 7]))},
            "columns": cols,
        }
        if draw(st.booleans()):
            data["time"] = {
                "column": "event_time",
                "format": draw(st.sampled_from(["iso8601", "epoch_seconds"])),
            }
        return spec.DatasetSpec.model_validate(data)

    return build()


#: Column names of the prediction log itself (a feature may not be called so).
_FIXED = {"request_id", "row", "timestamp", "model_version", "source", "probability"}


def v1_rows(spec, min_size: int = 1, max_size: int = 8):
    """Hypothesis strategy of V1 instances for ``spec``: lists of ``{feature: JSON value}`` dicts (every model
    feature present; ``None`` only where the feature is nullable)."""
    from hypothesis import strategies as st

    row = st.fixed_dictionaries({f.name: valid_value_strategy(f) for f in spec.model_features})
    return st.lists(row, min_size=min_size, max_size=max_size)


def encoded_columns(spec, rows: list[dict]) -> dict:
    """What the request decoders must give for valid V1 ``rows``: ``{feature: np.ndarray}`` in the spec's
    dtypes, the spec's sentinels (NaN / -1 / ``""``) where a value is ``None``. Written from the spec's
    contract (``Feature.dtype`` / ``Feature.missing``), not from the decoder's code."""
    import numpy as np

    dtypes = {"float32": np.float32, "int64": np.int64, "string": object}
    out = {}
    for f in spec.model_features:
        vals = [f.missing if r[f.name] is None else r[f.name] for r in rows]
        if f.dtype == "int64":
            vals = [int(v) for v in vals]
        out[f.name] = np.array(vals, dtype=dtypes[f.dtype])
    return out


#: Raw spellings of a boolean (clean reads them case-insensitively).
_RAW_TRUE = ("true", "True", "TRUE", "yes", "Yes", "1", "t", "T")
_RAW_FALSE = ("false", "False", "FALSE", "no", "No", "0", "f", "F")
#: Raw label values that are not the positive class, by the positive class's type.
_OTHER_STR_LABELS = ("no", "N", "y", "YES", "0", "1", "yes ", "Yes")
_OTHER_INT_LABELS = ("0", "1", "2", "-3", "10", "no")
#: Event times generated: 1970-01-01 .. 2025-01-01 (UTC epoch seconds).
_LAST_TIME = 1_735_689_600
#: A raw column no spec knows (generated feature names are lowercase): clean drops it.
EXTRA_COLUMN = "Extra_ID"


def raw_datasets(spec, min_size: int = 1, max_size: int = 8, carriage_returns: bool = False):
    """Hypothesis strategy of raw CSV files for ``spec`` with what cleaning them must give.

    Each draw is a dict: ``text`` (the CSV, columns in a drawn order, plus :data:`EXTRA_COLUMN`, minimal or
    full quoting), ``rows`` (the generated feature values, ``None`` = missing, as :func:`v1_rows`),
    ``times`` (epoch seconds, or None without a time column) and ``labels`` (1 where the raw label is the
    positive class, else 0). Missing values are written as one of the spec's missing-value tokens or the
    empty cell; booleans in every spelling; numbers possibly padded with blanks; the time column as ISO 8601
    (naive, ``Z`` or an offset) or epoch seconds per the spec; the label as the positive class or another
    value (strings that differ only in case or blanks included). Strings are not padded and are not a
    missing token (those are not values a CSV can carry).

    Strings hold carriage returns only with ``carriage_returns`` (the Dataset-file round trip asks for them:
    ``kfloop.datasets.write_dataset`` once wrote such a value unquoted and the row came back split).
    """
    import csv
    import datetime as dt
    import io

    from hypothesis import strategies as st

    from kfloop.spec import Kind

    tokens = tuple(dict.fromkeys((*spec.missing_values, "")))

    def value(f):
        if f.kind == Kind.CATEGORICAL_STR:
            base = (
                st.text(min_size=1, max_size=12)
                .map(str.strip)
                .filter(lambda s: s != "" and "\x00" not in s and s not in tokens)
            )
            if not carriage_returns:  # write_dataset splits such a value (docstring)
                base = base.filter(lambda s: "\r" not in s)
            return (base | st.none()) if f.nullable else base
        if f.kind == Kind.CATEGORICAL_INT:
            base = st.integers(0, 10**6) | st.integers(-(10**6), -2)
            return (base | st.none()) if f.nullable else base
        return valid_value_strategy(f)

    row = st.fixed_dictionaries({f.name: value(f) for f in spec.model_features})
    pos = spec.label_spec.positive

    @st.composite
    def build(draw):
        rows = draw(st.lists(row, min_size=min_size, max_size=max_size))
        n = len(rows)
        times = None
        if spec.time is not None:
            times = draw(st.lists(st.integers(0, _LAST_TIME), min_size=n, max_size=n))
        labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
        header = [*spec.raw_columns, EXTRA_COLUMN]
        header = draw(st.permutations(header))
        pad = st.sampled_from(["", " "])

        def raw(f, v):
            if v is None:
                return draw(st.sampled_from(tokens))
            if f.kind == Kind.CATEGORICAL_STR:
                return v
            if f.kind == Kind.BOOLEAN:
                text = draw(st.sampled_from(_RAW_TRUE if v else _RAW_FALSE))
            elif f.kind == Kind.NUMERIC:
                text = repr(float(v))
            else:
                text = draw(st.sampled_from([str(v), f"{v}.0"]))
            return draw(pad) + text + draw(pad)

        def raw_time(seconds):
            if spec.time.format.value == "epoch_seconds":
                return str(seconds)
            offset = draw(st.sampled_from([None, 0, 2, -5]))
            utc = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
            if offset is None:
                return utc.replace(tzinfo=None).isoformat()
            text = utc.astimezone(dt.timezone(dt.timedelta(hours=offset))).isoformat()
            return text.replace("+00:00", "Z") if offset == 0 else text

        def raw_label(is_pos):
            if isinstance(pos, int):
                others = [v for v in _OTHER_INT_LABELS if v != str(pos)]
                return draw(st.sampled_from([str(pos), f"{pos}.0"] if is_pos else others))
            others = [v for v in _OTHER_STR_LABELS if v.strip() != pos]  # clean strips blanks
            return pos if is_pos else draw(st.sampled_from(others))

        lines = []
        for i, r in enumerate(rows):
            cells = {f.name: raw(f, r[f.name]) for f in spec.model_features}
            if times is not None:
                cells[spec.time.column] = raw_time(times[i])
            cells[spec.label_spec.column] = raw_label(labels[i])
            cells[EXTRA_COLUMN] = f"id-{i}"
            lines.append([cells[c] for c in header])
        buf = io.StringIO()
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
        writer = csv.writer(buf, quoting=quoting)  # CRLF: a "\r" in a value is quoted too
        writer.writerow(header)
        writer.writerows(lines)
        return {"text": buf.getvalue(), "rows": rows, "times": times, "labels": labels}

    return build()
