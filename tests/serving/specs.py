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
