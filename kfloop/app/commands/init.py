"""``kfloop init``: propose a dataset spec and its TFDV schema for a CSV, for a person to review.

It samples the file (every row up to :data:`~kfloop.app.init_guess.SAMPLE_ROWS`, a uniform seeded sample
beyond), guesses what each column is (:mod:`kfloop.app.init_guess` says how) and writes ``spec.yaml``
(with comments saying what to review) and ``schema.pbtxt`` into the output folder; it prints one line per
guessed or excluded column. ``kfloop run --spec DIR/spec.yaml --data CSV`` then works on it without an edit
for ordinary data.

Excluded from the model inputs: id-like columns, label leaks, columns with one value and no missing one,
columns with no value in the sample, date/time columns other than the event time (kfloop has no time
feature kind), and columns whose names are not identifiers (they are dropped; rename them to use them).

The task is proposed from the label (two values: binary; numbers with many values: regression; a few
classes: multiclass, the classes sorted; :func:`kfloop.app.init_guess.task_label` says how); ``--task``
chooses it, and a label that does not fit the chosen task is refused naming it.

Exit codes: 0 written; 1 an output exists (pass ``--overwrite``) or the data cannot be read; 2 bad usage,
a label that does not fit the task, an ambiguous positive class, a time column that does not parse.
"""

from __future__ import annotations

import argparse
import json
import re

from kfloop.app import init_guess as G
from kfloop.app.init_guess import SAMPLE_ROWS, InitRefused

__all__ = ["SAMPLE_ROWS", "InitRefused", "propose", "register"]

#: Categorical features with at most this many values (and two at least) may be proposed as a slice.
MAX_SLICE_VALUES = 10
#: Plain YAML words that are not plain strings (YAML 1.1 booleans and nulls): quoted when written.
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="propose a dataset spec and TFDV schema for a CSV (review them, then kfloop run --spec)",
        description="Samples a CSV and writes a proposed dataset spec (spec.yaml, with review comments) and "
        "TFDV schema (schema.pbtxt) into --output: column kinds guessed, missing-value tokens found, id-like "
        "and label-leaking columns excluded, the time column and its format found, the task proposed from "
        "the label. Prints one line per guessed or excluded column.",
        epilog="exit codes: 0 written; 1 an output exists or unreadable data; 2 bad usage, a label that does "
        "not fit the task, an ambiguous positive class, a time column that does not parse",
    )
    p.add_argument("--data", required=True, help="the CSV (local path or gs://)")
    p.add_argument("--label", required=True, help="the label column")
    p.add_argument(
        "--task",
        choices=G.TASKS,
        help="the task (default: from the label: two values binary, many numbers regression, a few classes "
        "multiclass)",
    )
    p.add_argument(
        "--positive", help="binary: the label value meaning class 1 (default: yes/true/1 when obvious)"
    )
    p.add_argument("--time", help="the event-time column (default: the first column of ISO 8601 times)")
    p.add_argument("--output", default=".", help="folder for spec.yaml and schema.pbtxt (default: .)")
    p.add_argument("--name", help="model name (default: from the file name)")
    p.add_argument("--overwrite", action="store_true", help="replace spec.yaml / schema.pbtxt if they exist")
    p.set_defaults(func=_init)


def _check_column(frame, option: str, col: str | None) -> None:
    from kfloop.spec.sections import column_name

    if col is None:
        return
    if col not in frame.columns:
        raise InitRefused(f"{option} {col!r} is not a column of the data ({', '.join(frame.columns)})")
    try:
        column_name(col)
    except ValueError as e:
        raise InitRefused(f"{option} {col!r}: {e}") from None


def _excluded(col: str, values, rows: int, labels, present_label, task) -> tuple[str | None, str, str]:
    """``(why excluded or None, kind, what the sample holds)`` of one candidate feature."""
    if not (values != "").any():
        return "no value in the sample", "categorical_string", ""
    kind, held = G.kind(values)
    if values.nunique() == 1:
        return f"one value in the sample ({values.iloc[0]!r})", kind, held
    if kind == "categorical_string" and G.is_iso(values[values != ""]):
        return "a date/time other than the event time (kfloop has no time feature kind)", kind, held
    why = G.id_like(col, values, rows)
    if why:
        return f"id-like: {why}", kind, held
    leak = G.leaks(values[present_label], labels, kind, task)
    return (f"label leak: {leak}" if leak else None), kind, held


def propose(
    frame,
    label: str,
    positive: str | None = None,
    time: str | None = None,
    name: str = "dataset",
    task: str | None = None,
):
    """The proposed spec YAML (with review comments) and the review lines, from a sample.

    Args:
        frame: The sample as stripped strings (``dtype=str``, no NaN).
        label: The label column.
        positive: The positive class (binary), as the data writes it (None: guess when obvious).
        time: The time column (None: propose the first ISO 8601 column, if any).
        name: The model name.
        task: ``binary`` / ``regression`` / ``multiclass`` (None: proposed from the label).

    Returns:
        ``(yaml_text, review_lines)``.

    Raises:
        InitRefused: the label or time column is missing, the label does not fit the task (or the
            positive class is ambiguous), the time does not parse; or no column is left as a model input.
    """
    from kfloop.spec.sections import column_name

    _check_column(frame, "--label", label)
    _check_column(frame, "--time", time)
    if time == label:
        raise InitRefused(f"--time {time!r} is the label column")
    rows = len(frame)
    tokens = G.tokens(frame)
    missing = frame.isin(tokens)
    present_label = ~missing[label]
    guess = G.task_label(label, frame[label][present_label], task, positive)
    labels = guess.labels
    review: list[str] = []
    if not present_label.all():
        share = _missing(float((~present_label).mean())).lstrip("; ")
        review.append(
            f"  label     {label}: {share} in the sample (the schema requires a label: drop those rows "
            "before training)"
        )
    time_fmt, time_note = None, ""
    if time is None:
        for col in frame.columns:
            if col != label and G.is_iso(frame[col][~missing[col]]):
                time = col
                time_note = " (proposed: every value is an ISO 8601 time; pass --time to choose another)"
                break
    if time is not None:
        time_fmt = G.time_format(time, frame[time][~missing[time]])
        review.append(f"  time      {time}: {time_fmt}{time_note}")
    columns, excluded = [], []
    for col in frame.columns:
        if col in (label, time):
            continue
        try:
            column_name(col)
        except ValueError:
            review.append(f"  dropped   {col!r}: not an identifier (rename the column to use it)")
            continue
        values = frame[col].where(~missing[col], "")
        why, kind, held = _excluded(col, values, rows, labels, present_label, guess.task)
        if why:
            excluded.append((col, why))
            review.append(f"  excluded  {col}: {why}")
            continue
        share = float((values == "").mean())
        columns.append((col, kind, share > 0, held, share))
        review.append(f"  guessed   {col}: {kind}{', nullable' if share else ''} ({held}{_missing(share)})")
    if not columns:
        raise InitRefused("no column is left as a model input (every other column was excluded)")
    slices = [c for c, k, *_ in columns if k in ("categorical_string", "categorical_int", "boolean")]
    slices = [c for c in slices if 2 <= frame[c][~missing[c]].nunique() <= MAX_SLICE_VALUES][:1]
    review.insert(0, f"  task      {guess.task} ({_task_note(guess, task)})")
    text = _yaml(name, tokens, label, guess, time, time_fmt, excluded, columns, slices, rows)
    return text, review


def _task_note(guess, chosen: str | None) -> str:
    how = "--task" if chosen else "proposed from the label; pass --task to choose another"
    if guess.task == "multiclass":
        return f"{len(guess.classes)} classes; {how}"
    return how


def _missing(share: float) -> str:
    if not share:
        return ""
    return f"; {share:.1%} missing" if share < 0.1 else f"; {share:.0%} missing"


def _q(value) -> str:
    """A YAML scalar: integers and plain identifiers as they are, anything else JSON-quoted (valid YAML)."""
    if isinstance(value, int):
        return str(value)
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value.lower() not in _YAML_WORDS
    return value if plain else json.dumps(value)


def _label_line(label: str, guess) -> str:
    if guess.task == "regression":
        lo, hi = float(guess.labels.min()), float(guess.labels.max())
        return (
            f"label: {{column: {_q(label)}}}   # review: a number to predict ({lo:g}..{hi:g} in the sample)"
        )
    if guess.task == "multiclass":
        classes = ", ".join(_q(c) for c in guess.classes)
        return (
            f"label: {{column: {_q(label)}, classes: [{classes}]}}   # review: the classes, in the model's "
            "order (sorted: put them in their natural order)"
        )
    positive = guess.positive
    positive_text = str(positive) if isinstance(positive, int) else json.dumps(positive)
    return f"label: {{column: {_q(label)}, positive: {positive_text}}}   # review: the value meaning 1"


def _yaml(name, tokens, label, guess, time, time_fmt, excluded, columns, slices, rows) -> str:
    out = [
        f"# Proposed by `kfloop init` from {rows:,} rows: REVIEW every guess below, then commit this file",
        "# with schema.pbtxt. Kinds, nullability, the missing-value tokens, the label's positive class and",
        "# the excluded columns are guesses; ranges and domains are not guessed (add `range: [min, max]` or",
        "# `domain: [...]` where you know them; the comments show what the sample holds).",
        f"name: {name}",
        f"task: {guess.task}",
        f"missing_values: [{', '.join(json.dumps(t) for t in tokens)}]   # review: tokens that mean 'missing'",
    ]
    if time is not None:
        out.append(f"time: {{column: {_q(time)}, format: {time_fmt}}}   # review: the event time")
    out.append(_label_line(label, guess))
    if excluded:
        out.append("exclude:   # never model inputs; review each reason")
        out.extend(f"  - {_q(c)}   # {why}" for c, why in excluded)
    out.append("columns:")
    for col, kind, nullable, held, share in columns:
        facts = f"{{name: {_q(col)}, kind: {kind}" + (", nullable: true}" if nullable else "}")
        out.append(f"  - {facts}   # review: {held}{_missing(share)}")
    out.append(f"slices: [{', '.join(_q(s) for s in slices)}]   # review: features the evaluation slices by")
    out += [
        "drift:   # review: per column, add `drift: {threshold: X, mode: trigger|record|off}`",
        "  default: {threshold: 0.1, mode: trigger}",
        "trainer: keras",
    ]
    return "\n".join(out) + "\n"


def _init(args: argparse.Namespace) -> int:
    import os
    import warnings

    # The review lines are the output: the Google client libraries' deprecation notices (imported with
    # TFDV) are not.
    warnings.simplefilter("ignore", FutureWarning)
    from kfloop import fs
    from kfloop import spec as S
    from kfloop.app.checks import check_input_file, check_output_dir, check_output_file
    from kfloop.clean import clean
    from kfloop.tfdv import ops
    from kfloop.tfdv import schema as kschema

    check_input_file(args.data, "kfloop init: --data")
    check_output_dir(args.output, "kfloop init: --output")
    spec_uri, schema_uri = fs.join(args.output, S.SPEC_FILE), fs.join(args.output, kschema.SCHEMA_FILE)
    for uri in (spec_uri, schema_uri):
        check_output_file(
            uri, "kfloop init: --output", overwrite=args.overwrite, inputs={"--data": args.data}
        )
    frame, total = G.sample(args.data)
    text, review = propose(
        frame, args.label, args.positive, args.time, G.model_name(args.data, args.name), task=args.task
    )
    try:
        spec = S.loads(text, origin=spec_uri)
    except S.SpecError as e:  # a guess the spec refuses (e.g. a bad --name): one line, nothing written
        raise InitRefused(str(e)) from None
    problems = spec.check_data(frame)
    if problems:
        raise InitRefused(f"the proposed spec does not fit the sample: {problems[0]}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        cleaned = clean(frame, spec, form="raw")
        stats = ops.compute_statistics(cleaned, spec=spec)
    except Exception as e:  # one line naming the cause; nothing written
        raise SystemExit(f"kfloop init: the sample cannot be cleaned with the proposed spec: {e}") from None
    schema = kschema.to_text(kschema.infer_schema(stats, spec, presence_floors=False), spec)
    fs.write_text(spec_uri, text)
    fs.write_text(schema_uri, schema)
    drawn = f"{len(frame):,} rows drawn from the {total:,}" if total > len(frame) else f"all {total:,} rows"
    print(f"wrote {spec_uri} and {schema_uri} from {drawn} of {args.data}; review:")
    print("\n".join(review))
    print(f"then: kfloop run --spec {spec_uri} --schema {schema_uri} --data {args.data}")
    return 0
