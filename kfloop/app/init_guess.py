"""The guesses of ``kfloop init`` (:mod:`kfloop.app.commands.init`): what each column of a CSV sample is.

Every function works on a sample read as strings (``dtype=str``, stripped, no NaN) and returns a guess or
the reason for one; a guess the data refuses raises :class:`InitRefused` (one line, exit 2). The rules:

* Missing-value tokens: the empty cell always; ``NA``, ``N/A``, ``n/a``, ``#N/A``, ``null``, ``NULL``,
  ``None``, ``NaN``, ``nan`` wherever they fill some (not all) cells of a column; ``?`` and ``-`` only in
  columns whose other values are numbers.
* The task, from the label's present values (``--task`` overrides it; a label that does not fit the chosen
  task is refused naming it): two values are binary; numbers with more values are a regression, unless they
  are integers with at most :data:`MAX_INT_CATEGORIES` values (multiclass); text with 3 to
  :data:`MAX_CLASSES` values is multiclass (more is refused without ``--task multiclass``). Multiclass
  classes are sorted (integers numerically). A binary positive class is the one given, or the obvious one
  of a pair (true/false, yes/no, t/f, y/n, 1/0, positive/negative, pos/neg); otherwise it is refused
  naming the values.
* Time: numbers are epoch seconds, or epoch milliseconds when larger than 10^11; other values must be ISO
  8601 (with or without a zone). Without ``--time``, the first column whose every value is an ISO 8601
  date or time is proposed.
* Id-like: a name such as ``id``, ``*_id``, ``fooId``, ``uuid``, ``rownames``, ``index``; or integer / text
  values unique per row; or integers that only increase (at least :data:`MIN_ROWS` rows).
* Label leak: a column that gives the label almost perfectly (per-value purity of at least 0.99 that
  removes 90% of the errors of always guessing the majority class, for a column with fewer distinct values
  than half the rows; a numeric column with a ROC AUC above 0.99), or one value of which (being missing
  counts as a value) marks the positive rows: it is held by at least :data:`LEAK_COVERAGE` of them and is
  at least :data:`LEAK_RATIO` times as frequent among them as among the other rows (a record made because
  the outcome happened, like a second search decided with the first).
  Per task: the checks above are binary; multiclass has the per-value purity check only (the majority
  class of each value); regression has a numeric column whose Pearson correlation with the label exceeds
  :data:`LEAK_CORRELATION` in absolute value. A leak that is no such rule (a later-known duration, a
  timestamp of the outcome) is for the person reviewing the spec to exclude.
* Kinds: values that are all true/false, yes/no, t/f or 1/0 tokens are ``boolean``; integers with at most
  :data:`MAX_INT_CATEGORIES` distinct values ``categorical_int``; other numbers ``numeric``; other text
  ``categorical_string``. Ranges, domains and the presence share of nullable columns are not guessed (one
  read off a sample refuses ordinary later data: e.g. a column recorded only from some date on).
"""

from __future__ import annotations

import re
import sys
from typing import NamedTuple

#: Rows sampled (uniformly, seeded) from the file: every guess is made on them; memory stays bounded.
SAMPLE_ROWS = 100_000
#: Rows parsed at a time while sampling.
CHUNK_ROWS = 50_000
#: An integer column with at most this many distinct values is categorical.
MAX_INT_CATEGORIES = 20
#: Fewer present values than this: no id or leak guess is made on a column.
MIN_ROWS = 20
#: Text labels with more values than this are not guessed to be multiclass (``--task multiclass`` takes them).
MAX_CLASSES = 20
#: The tasks ``--task`` takes.
TASKS = ("binary", "regression", "multiclass")
#: A numeric column more correlated than this (in absolute value) with a regression label is a leak.
LEAK_CORRELATION = 0.99
#: A value held by at least this share of the positive rows ...
LEAK_COVERAGE = 0.2
#: ... and at least this many times as frequent among them as among the others marks a leak.
LEAK_RATIO = 20.0
#: Tokens that mean "missing" wherever they fill a cell, and those that do only among numbers.
MISSING_TOKENS = ("NA", "N/A", "n/a", "#N/A", "null", "NULL", "None", "NaN", "nan")
NUMERIC_MISSING_TOKENS = ("?", "-")
#: Label pairs whose positive class is obvious: (positive, negative), compared in lower case.
_POSITIVE_PAIRS = (
    ("true", "false"),
    ("yes", "no"),
    ("t", "f"),
    ("y", "n"),
    ("1", "0"),
    ("positive", "negative"),
    ("pos", "neg"),
)
_ID_NAME = re.compile(r"^(id|uuid|guid|index|rownames|row_?id|row_?num(ber)?)$|_id$", re.IGNORECASE)
_ID_CAMEL = re.compile(r"[a-z0-9](Id|ID)$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$")
_INT = r"[+-]?\d+"
EXIT_USAGE = 2


class InitRefused(SystemExit):
    """``kfloop init`` refuses the data or the options: one line on stderr, exit 2."""

    def __init__(self, message: str):
        self.message = " ".join(str(message).split())
        print(f"kfloop init: {self.message}", file=sys.stderr)
        super().__init__(EXIT_USAGE)


def sample(uri: str, rows: int = SAMPLE_ROWS):
    """``(sample, rows in the file)``: every row when there are at most ``rows``, else ``rows`` of them drawn
    uniformly (seeded, in file order), as stripped strings; parsed :data:`CHUNK_ROWS` at a time.

    Raises:
        SystemExit: the file does not exist, is not a readable CSV, repeats a header name or has no rows.
    """
    import numpy as np
    import pandas as pd

    from kfloop import fs
    from kfloop import row_checks as checks

    what = f"kfloop init: --data {uri}:"
    rng = np.random.default_rng(0)
    kept, keys, total = None, None, 0
    try:
        path = fs.local_copy(uri)
        header = pd.read_csv(path, dtype=str, keep_default_na=False, header=None, nrows=1)
        names = [f"Unnamed: {i}" if v == "" else v for i, v in enumerate(header.iloc[0])]
        repeated = checks.duplicate_columns(names)
        if repeated:
            raise SystemExit(f"{what} {repeated[0].message}")
        chunks = pd.read_csv(
            path, dtype=str, keep_default_na=False, header=None, skiprows=1, names=names, chunksize=CHUNK_ROWS
        )
        for chunk in chunks:
            chunk.index = pd.RangeIndex(total, total + len(chunk))
            total += len(chunk)
            draw = pd.Series(rng.random(len(chunk)), index=chunk.index)
            kept = chunk if kept is None else pd.concat([kept, chunk])
            keys = draw if keys is None else pd.concat([keys, draw])
            if len(kept) > rows:
                keep = keys.nsmallest(rows).index.sort_values()
                kept, keys = kept.loc[keep], keys.loc[keep]
    except FileNotFoundError:
        raise SystemExit(f"{what} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SystemExit(f"{what} not a readable CSV: {' '.join(str(e).split())}") from None
    if kept is None or kept.empty:
        raise SystemExit(f"{what} has a header but no rows")
    return kept.reset_index(drop=True).apply(lambda c: c.str.strip()), total  # stripped, as clean reads text


def numbers(values):
    import pandas as pd

    return pd.to_numeric(values, errors="coerce")


def tokens(frame) -> list[str]:
    """The missing-value tokens the sample uses (always ``""`` first), the label's included."""
    found = [""]
    for token in (*MISSING_TOKENS, *NUMERIC_MISSING_TOKENS):
        for name in frame.columns:
            col = frame[name]
            hit = col == token
            if not hit.any() or hit.all():
                continue
            if token in NUMERIC_MISSING_TOKENS:
                rest = col[~hit & (col != "")]
                if rest.empty or numbers(rest).isna().any():
                    continue
            found.append(token)
            break
    return found


def is_iso(values) -> bool:
    """Whether every value (there is one at least) is an ISO 8601 date or time."""
    from kfloop.spec import values as V

    return (
        bool(len(values))
        and bool(values.str.match(_ISO).all())
        and V._iso_seconds(values.iloc[0]) is not None
    )


def time_format(name: str, values) -> str:
    """``epoch_seconds`` / ``epoch_millis`` / ``iso8601`` for a time column's present values.

    Raises:
        InitRefused: none fits (names the column and the first value that does not parse).
    """
    from kfloop.spec import SpecDataError
    from kfloop.spec import values as V

    if values.empty:
        raise InitRefused(f"--time {name!r}: the column has no values in the sample")
    as_numbers = numbers(values)
    if as_numbers.notna().all():
        return "epoch_millis" if as_numbers.abs().max() > 1e11 else "epoch_seconds"
    try:
        V.event_seconds(values.reset_index(drop=True), "iso8601", name, ("",))
    except SpecDataError as e:
        raise InitRefused(
            f"--time {name!r} does not parse as epoch seconds, epoch milliseconds or ISO 8601 ({e})"
        ) from None
    return "iso8601"


def _shown(distinct) -> str:
    return ", ".join(repr(v) for v in distinct[:10]) + (", ..." if len(distinct) > 10 else "")


class LabelGuess(NamedTuple):
    """What ``init`` makes of the label: the task and its facts, and the labels of the present values."""

    task: str
    #: Binary: the positive class for the spec (None otherwise).
    positive: str | int | None
    #: Multiclass: the classes in model order (``()`` otherwise).
    classes: tuple
    #: Binary 0/1, multiclass class index, regression the number, per present value (for the leak checks).
    labels: object


def task_label(name: str, values, task: str | None = None, positive: str | None = None) -> LabelGuess:
    """The task (``task``, or the one the label's present values look like) and the label's facts for it.

    Raises:
        InitRefused: a single value; a text label with too many values to guess multiclass; ``--positive``
            with another task than binary; a label that does not fit the chosen ``--task`` (names it).
    """
    distinct = sorted(set(values))
    shown = _shown(distinct)
    as_numbers = numbers(values)
    numeric = bool(as_numbers.notna().all())
    ints = numeric and bool(values.str.fullmatch(_INT).all())
    if len(distinct) < 2:
        raise InitRefused(f"--label {name!r} has a single value ({shown}): there is nothing to learn")
    what = f"{len(distinct)} {'numeric ' if numeric else ''}values ({shown})"
    if len(distinct) == 2:
        guessed = "binary"
    elif numeric and not (ints and len(distinct) <= MAX_INT_CATEGORIES):
        guessed = "regression"
    elif numeric or len(distinct) <= MAX_CLASSES:
        guessed = "multiclass"
    else:
        guessed = None
    if task is None:
        if guessed is None:
            raise InitRefused(
                f"--label {name!r} has {what}: more than {MAX_CLASSES} classes is not guessed to be a "
                "multiclass task; pass --task multiclass to take every value as a class"
            )
        task = guessed
    if positive is not None and task != "binary":
        raise InitRefused(f"--positive is only for --task binary (label {name!r} is taken as {task})")
    if task == "binary":
        if len(distinct) != 2:
            raise InitRefused(
                f"--task binary: label {name!r} has {what}, not two"
                + (f" (it looks like a {guessed} task)" if guessed else "")
            )
        positive_value, labels = label(name, values, positive)
        return LabelGuess(task, positive_value, (), labels)
    if task == "regression":
        import numpy as np

        bad = values[as_numbers.isna() | ~np.isfinite(as_numbers.astype(float))]
        if len(bad):
            raise InitRefused(
                f"--task regression: label {name!r} holds values that are not finite numbers "
                f"(e.g. {bad.iloc[0]!r})"
            )
        return LabelGuess(task, None, (), as_numbers.astype(float))
    if task == "multiclass":
        classes = tuple(sorted({int(v) for v in values})) if ints else tuple(distinct)
        if len(classes) < 3:
            raise InitRefused(
                f"--task multiclass: label {name!r} has {what}; a multiclass task needs three classes at "
                "least (two: --task binary)"
            )
        index = {c: i for i, c in enumerate(classes)}
        labels = (values.map(int) if ints else values).map(index).astype(int)
        return LabelGuess(task, None, classes, labels)
    raise InitRefused(f"--task {task!r} is not a task ({', '.join(TASKS)})")


def label(name: str, values, positive: str | None):
    """``(positive class for the spec, the 0/1 labels of the present values)`` of a binary label.

    Raises:
        InitRefused: not two values, or the positive class is ambiguous / absent.
    """
    distinct = sorted(set(values))
    shown = _shown(distinct)
    numeric = bool(numbers(values).notna().all())
    if len(distinct) != 2:
        raise InitRefused(f"--label {name!r} has {len(distinct)} values ({shown}), not two")
    if positive is None:
        lowered = [v.lower() for v in distinct]
        pair = next((p for p in _POSITIVE_PAIRS if set(p) == set(lowered)), None)
        if pair is None:
            raise InitRefused(
                f"--label {name!r} has values {shown}: which one is the positive class (1) is not obvious; "
                "pass --positive VALUE"
            )
        positive = distinct[lowered.index(pair[0])]
    elif positive not in distinct:
        raise InitRefused(f"--positive {positive!r} is not a value of label {name!r} (values: {shown})")
    labels = (values == positive).astype(int)
    if numeric and re.fullmatch(_INT, positive):
        return int(positive), labels
    return positive, labels


def _auc(scores, labels) -> float:
    """ROC AUC of ``scores`` for 0/1 ``labels`` (ties count half), from ranks."""
    ranks = scores.rank(method="average")
    pos = int(labels.sum())
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return 0.5
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _marks_positive(values, labels) -> str | None:
    """Why one value of a column (``""``: missing) marks the positive rows (see :data:`LEAK_RATIO`)."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos < 10 or n_neg < 10:
        return None
    in_pos, in_neg = values[pos].value_counts(), values[~pos].value_counts()
    for value, count in in_pos.items():
        if count < 10 or count < LEAK_COVERAGE * n_pos:
            continue
        ratio = ((count + 1) / (n_pos + 2)) / ((int(in_neg.get(value, 0)) + 1) / (n_neg + 2))
        if ratio >= LEAK_RATIO:
            shown = "a value" if value == "<present>" else "missing" if value == "" else f"{value!r}"
            return (
                f"{shown} marks {count / n_pos:.0%} of the positive rows and is {ratio:.0f}x as frequent "
                "there as in the others"
            )
    return None


def leaks(values, labels, kind: str, task: str = "binary") -> str | None:
    """Why a column predicts the label (too) well; None when it does not.

    Args:
        values: The column (``""`` where missing), on the rows whose label is present.
        labels: Their labels (binary 0/1, multiclass class indices, regression numbers).
        kind: The column's guessed kind.
        task: The task (the checks per task are in the module's docstring).
    """
    if task != "binary":
        return _leaks_other(values, labels, kind, task)
    present = values != ""
    v, y = values[present], labels[present]
    if len(v) >= MIN_ROWS and v.nunique() >= 2:
        if kind == "numeric":
            auc = _auc(numbers(v), y)
            auc = max(auc, 1 - auc)
            if auc > 0.99:
                return f"ROC AUC {auc:.3f} against the label"
        elif v.nunique() * 2 <= len(v):
            majority = y.groupby(v).agg(lambda s: max(s.mean(), 1 - s.mean()))
            counts = v.value_counts()
            purity = float((majority * counts.reindex(majority.index)).sum() / counts.sum())
            base = max(y.mean(), 1 - y.mean())
            if purity >= 0.99 and (1 - purity) <= 0.1 * (1 - base):
                return f"its values give the label with {purity:.1%} purity"
    if kind != "numeric" and (why := _marks_positive(values, labels)):
        return why
    return None if present.all() else _marks_positive(values.where(~present, "<present>"), labels)


def _leaks_other(values, labels, kind: str, task: str) -> str | None:
    """:func:`leaks` of a regression (correlation) or multiclass (per-value purity) label."""
    present = values != ""
    v, y = values[present], labels[present]
    if len(v) < MIN_ROWS or v.nunique() < 2:
        return None
    if task == "regression":
        if kind != "numeric":
            return None
        corr = float(numbers(v).astype(float).corr(y.astype(float)))
        return f"correlation {corr:.3f} with the label" if abs(corr) > LEAK_CORRELATION else None
    if v.nunique() * 2 > len(v):
        return None
    majority = y.groupby(v).agg(lambda s: s.value_counts(normalize=True).max())
    counts = v.value_counts()
    purity = float((majority * counts.reindex(majority.index)).sum() / counts.sum())
    base = float(y.value_counts(normalize=True).max())
    if purity >= 0.99 and (1 - purity) <= 0.1 * (1 - base):
        return f"its values give the label with {purity:.1%} purity"
    return None


def id_like(name: str, values, rows: int) -> str | None:
    """Why a column looks like an id (None when it does not)."""
    if _ID_NAME.search(name) or _ID_CAMEL.search(name):
        return "its name looks like an id"
    present = values[values != ""]
    if len(present) < MIN_ROWS:
        return None
    ints = bool(present.str.fullmatch(_INT).all())
    as_numbers = numbers(present)
    if (ints or as_numbers.isna().any()) and present.nunique() == len(present) == rows:
        return "unique per row"
    if ints and len(present) == rows and bool((as_numbers.diff().dropna() > 0).all()):
        return "its integers only increase"
    return None


def kind(values) -> tuple[str, str]:
    """``(kind, what the sample holds)`` of a feature's values (``""`` where missing; one at least)."""
    from kfloop.spec import values as V

    present = values[values != ""]
    distinct = present.unique()
    lowered = {v.lower() for v in distinct}
    if lowered <= V.TRUE_TOKENS | V.FALSE_TOKENS and any(
        lowered <= {t, f} for t, f in zip(("true", "yes", "t", "1"), ("false", "no", "f", "0"), strict=True)
    ):
        return "boolean", "values " + ", ".join(sorted(distinct))
    as_numbers = numbers(present)
    if as_numbers.notna().all():
        span = f"{as_numbers.min():g}..{as_numbers.max():g}"
        if present.str.fullmatch(_INT).all() and len(distinct) <= MAX_INT_CATEGORIES:
            if (as_numbers == -1).any():
                # -1 is categorical_int's missing-value sentinel (serving, the prediction log): a real -1
                # would read as missing there (live data "missing" the value, a false anomaly every window)
                return "categorical_string", (
                    f"{len(distinct)} integers, {span}, as text: it holds -1, which categorical_int "
                    "reserves for a missing value"
                )
            return "categorical_int", f"{len(distinct)} integers, {span}"
        return "numeric", span
    top = present.value_counts().index[:5].tolist()
    more = ", ..." if len(distinct) > 5 else ""
    return "categorical_string", f"{len(distinct)} values, e.g. {', '.join(map(repr, top))}{more}"


def model_name(uri: str, explicit: str | None) -> str:
    """``explicit``, or a model name made from the file name (``my_data.csv`` → ``my-data``)."""
    if explicit:
        return explicit
    stem = re.sub(r"\.(csv|txt)(\.gz)?$", "", uri.rstrip("/").rsplit("/", 1)[-1], flags=re.IGNORECASE)
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:63].strip("-")
    return name or "dataset"
