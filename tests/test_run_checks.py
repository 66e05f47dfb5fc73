"""``kfloop run --spec --data`` refuses a spec that does not fit the data before anything runs: one line
naming the spec key, a non-zero exit, no work directory."""

from __future__ import annotations

import pytest

from tests.test_cli_errors import run_cli

SPEC = """\
name: signups
task: binary
missing_values: ["", "NA"]
time: {column: seen_at, format: iso8601}
label: {column: signed_up, positive: "yes"}
exclude: [user_id]
columns:
  - {name: plan, kind: categorical_string}
  - {name: visits, kind: numeric, nullable: true}
  - {name: mobile, kind: boolean}
slices: [plan]
"""

ROWS = [
    "user_id,seen_at,plan,visits,mobile,signed_up",
    "u1,2026-01-01T10:00:00Z,free,3,true,no",
    "u2,2026-01-02T11:30:00Z,team,NA,false,yes",
    "u3,2026-01-03T09:15:00Z,pro,12.5,true,no",
]


@pytest.mark.parametrize(
    "change, needle",
    [
        (("column: signed_up", "column: signedup"), "label.column: 'signedup' is not a column of the data"),
        (('positive: "yes"', 'positive: "YES"'), "label.positive: 'YES' never occurs in label column"),
        (("format: iso8601", "format: epoch_seconds"), "time.format: epoch_seconds: seen_at: line 2:"),
        (("kind: boolean", "kind: bool"), "spec.yaml:10: columns[2].kind: unknown kind 'bool'"),
        (("slices: [plan]", "slices: [user_id]"), "slices[0]: 'user_id' is not a feature"),
        (("kind: numeric", "kind: categorical_int"), "columns[1].kind: categorical_int column visits"),
    ],
)
def test_a_spec_that_does_not_fit_is_refused_before_the_loop_starts(tmp_path, capsys, change, needle):
    spec, data, work = tmp_path / "spec.yaml", tmp_path / "signups.csv", tmp_path / "work"
    spec.write_text(SPEC.replace(*change))
    data.write_text("\n".join(ROWS) + "\n")
    argv = ["run", "--spec", str(spec), "--data", str(data), "--workdir", str(work)]
    rc, out, err = run_cli(argv, capsys)
    assert rc != 0 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kfloop run: ") and needle in lines[0], err
    assert not work.exists()  # nothing ran
