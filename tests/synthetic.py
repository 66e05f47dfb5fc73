"""A small synthetic dataset that is nothing like the taxi data, and its spec (for the data-floor tests).

Besides the binary ``churned`` it carries a regression label (``minutes``) and a multiclass one (``goal``),
with a spec per task (:data:`SPECS`). It has an ISO-8601 time column with a zone, a ``yes``/``no`` label, ``NA`` as its missing-value token (and
empty cells), an excluded id column, a boolean (``true``/``false``), a string categorical with a domain, a
categorical int and a nullable string column. Deterministic: the same ``rows`` and ``seed`` give the same
file.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

SPEC_YAML = """\
# A synthetic dataset for kfloop's tests: gym visits, did the member churn?
name: synthetic-visits
description: Synthetic gym visits (tests only)
missing_values: ["NA"]
time: {column: when, format: iso8601}
label: {column: churned, positive: "yes"}
exclude: [visit_id]
columns:
  - {name: age, kind: numeric, nullable: true, range: [0, 120]}
  - name: plan
    kind: categorical_string
    domain: [basic, plus, pro]
    min_domain_mass: 0.95
    drift: {threshold: 0.2}
  - {name: visits, kind: categorical_int, range: [0, 9], drift: {mode: off}}
  - {name: member, kind: boolean, nullable: true}
  - {name: city, kind: categorical_string, nullable: true}
slices: [plan]
drift:
  default: {threshold: 0.1, mode: trigger}
"""

#: The same data with a regression label (``minutes``: the next visit's length) and a multiclass label
#: (``goal``: what the member trains for); each spec excludes the other tasks' labels.
REGRESSION_SPEC_YAML = (
    SPEC_YAML.replace("name: synthetic-visits", "name: synthetic-minutes\ntask: regression")
    .replace('label: {column: churned, positive: "yes"}', "label: {column: minutes}")
    .replace("exclude: [visit_id]", "exclude: [visit_id, churned, goal]")
)
GOALS = ["strength", "cardio", "mobility", "weight"]
MULTICLASS_SPEC_YAML = (
    SPEC_YAML.replace("name: synthetic-visits", "name: synthetic-goals\ntask: multiclass")
    .replace(
        'label: {column: churned, positive: "yes"}', f"label: {{column: goal, classes: [{', '.join(GOALS)}]}}"
    )
    .replace("exclude: [visit_id]", "exclude: [visit_id, churned, minutes]")
)
SPECS = {"binary": SPEC_YAML, "regression": REGRESSION_SPEC_YAML, "multiclass": MULTICLASS_SPEC_YAML}

HEADER = ["visit_id", "when", "age", "plan", "visits", "member", "city", "churned", "minutes", "goal"]
CITIES = ["Lyon", "Oslo", "Quito", "Perth", "Dakar"]
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def rows(n: int, seed: int = 7) -> list[list[str]]:
    """``n`` raw rows (strings, in ``HEADER`` order), one hour apart from 2024-01-01T00:00:00Z."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        plan = rng.choice(["basic", "basic", "plus", "pro"])
        age = rng.randint(18, 90)
        risk = 0.55 if plan == "basic" else 0.25
        risk += 0.15 if age < 30 else 0.0
        when = (START + dt.timedelta(hours=i)).isoformat().replace("+00:00", "Z")
        out.append(
            [
                str(100_000 + i),
                when,
                "NA" if rng.random() < 0.1 else str(age),
                plan,
                str(rng.randint(0, 9)),
                "NA" if rng.random() < 0.05 else rng.choice(["true", "false"]),
                "" if rng.random() < 0.1 else rng.choice(CITIES),
                "yes" if rng.random() < risk else "no",
            ]
        )
        minutes = 30 + (0 if age > 60 else 0.4 * (60 - age)) + {"basic": 0, "plus": 10, "pro": 25}[plan]
        scores = [
            (1.5 if plan == "pro" else 0) + (1.0 if age < 35 else 0),  # strength
            (1.2 if plan == "plus" else 0) + 0.5,  # cardio
            (2.0 if age > 60 else 0),  # mobility
            (1.0 if plan == "basic" else 0) + 0.3,  # weight
        ]
        weights = [2.718**x for x in scores]
        out[-1].extend(
            [
                "NA" if rng.random() < 0.02 else f"{minutes + rng.gauss(0, 8):.1f}",
                rng.choices(GOALS, weights)[0],
            ]
        )
    return out


def csv_text(n: int, seed: int = 7) -> str:
    """The raw CSV of :func:`rows`."""
    return "\n".join(",".join(r) for r in [HEADER, *rows(n, seed)]) + "\n"


def write(folder: Path, rows: int = 400, seed: int = 7, task: str = "binary") -> tuple[Path, Path]:
    """Writes ``spec.yaml`` (of ``task``: binary, regression or multiclass) and ``visits.csv`` into
    ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, data = folder / "spec.yaml", folder / "visits.csv"
    spec_path.write_text(SPECS[task])
    data.write_text(csv_text(rows, seed))
    return spec_path, data
