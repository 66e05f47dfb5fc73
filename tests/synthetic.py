"""A small synthetic dataset that is nothing like the taxi data, and its spec (for the data-floor tests).

It has an ISO-8601 time column with a zone, a ``yes``/``no`` label, ``NA`` as its missing-value token (and
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

HEADER = ["visit_id", "when", "age", "plan", "visits", "member", "city", "churned"]
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
    return out


def csv_text(n: int, seed: int = 7) -> str:
    """The raw CSV of :func:`rows`."""
    return "\n".join(",".join(r) for r in [HEADER, *rows(n, seed)]) + "\n"


def write(folder: Path, rows: int = 400, seed: int = 7) -> tuple[Path, Path]:
    """Writes ``spec.yaml`` and ``visits.csv`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, data = folder / "spec.yaml", folder / "visits.csv"
    spec_path.write_text(SPEC_YAML)
    data.write_text(csv_text(rows, seed))
    return spec_path, data
