"""``kfloop validate``: TFDV statistics, schema anomalies, drift and skew of one dataset.

The data is a Dataset CSV (what ``kfloop ingest`` writes) or a CSV in raw form as it comes (recognised by
:func:`kfloop.clean.is_raw`: e.g. the columns a label derives from without the label, a yes/no label, ISO
times, missing-value tokens): raw data is first cleaned and labelled per the dataset spec by the same code
as ``kfloop ingest`` (written to ``<output-dir>/ingested.csv``), and a value that cannot be cleaned is
refused with its column and CSV line. Blocking schema anomalies of raw data name the first offending CSV
line of the raw file. The schema is the one kept next to the spec (``schema.pbtxt``), unless ``--schema``
names another; without either, the schema the spec alone implies.

Exit codes: 0 = no anomalies or only non-blocking ones; 3 = blocking anomalies (:data:`EXIT_BLOCKING`);
1 = bad input (missing / unreadable file, bad schema); 2 = bad command line, or a spec that is not valid or
does not fit the data.
"""

from __future__ import annotations

import argparse
import sys

#: Exit code when blocking anomalies are found (distinct from usage errors, 2, and bad input, 1).
EXIT_BLOCKING = 3

_EPILOG = "exit codes: 0 clean or only non-blocking anomalies; 3 blocking anomalies; 1 bad input; 2 bad usage"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="validate a CSV against its dataset spec's TFDV schema (exit 3 on blocking anomalies)",
        description="Computes TFDV statistics of a Dataset CSV (raw data is cleaned first, per the spec), "
        "validates them against the schema, "
        "optionally measures drift against reference statistics and skew against a second dataset, "
        "prints a summary and writes statistics, anomalies and an HTML report.",
        epilog=_EPILOG,
    )
    p.add_argument("--spec", required=True, help="dataset spec (YAML file or gs:// URI)")
    p.add_argument(
        "--data",
        required=True,
        help="Dataset CSV, or raw data as it comes (cleaned and labelled first); local or gs://",
    )
    p.add_argument(
        "--schema", help="schema text proto (default: schema.pbtxt next to the spec, if there is one)"
    )
    p.add_argument(
        "--environment", default="TRAINING", choices=("TRAINING", "SERVING"), help="schema environment"
    )
    p.add_argument("--reference-stats", help="statistics file (as written here) to measure drift against")
    p.add_argument(
        "--skew-data",
        help="second Dataset CSV or raw data (e.g. the eval split) for the train/eval skew check",
    )
    p.add_argument(
        "--output-dir",
        default="build/validation",
        help="where to write the outputs (default build/validation)",
    )
    p.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="Beam pipeline option, repeatable (e.g. --beam-arg=--direct_num_workers=2)",
    )
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-* libraries on import
    from kfloop import fs
    from kfloop.app.checks import check_input_file, check_not_in_store, check_output_dir, load_spec
    from kfloop.tfdv import ops

    spec = load_spec(args.spec, "kfloop validate: --spec")
    check_input_file(args.data, "kfloop validate: --data", must_exist=False)
    check_input_file(args.schema, "kfloop validate: --schema", must_exist=False)
    check_input_file(args.reference_stats, "kfloop validate: --reference-stats", must_exist=False)
    check_input_file(args.skew_data, "kfloop validate: --skew-data", must_exist=False)
    check_output_dir(args.output_dir, "kfloop validate: --output-dir")
    check_not_in_store(args.output_dir, "kfloop validate: --output-dir")
    check_beam_args(args.beam_arg, "kfloop validate")
    out = args.output_dir
    try:
        schema = _schema(args.schema, args.spec, spec)
        reference = ops.load_statistics(args.reference_stats) if args.reference_stats else None
        data, cleaned = args.data, None
        if _is_raw(args.data, spec):
            data, cleaned = _ingest_raw(args.data, spec, args.environment, fs.join(out, "ingested.csv"))
            if cleaned is None:
                return EXIT_BLOCKING
        skew = args.skew_data
        if skew and _is_raw(skew, spec):
            skew, skew_clean = _ingest_raw(skew, spec, args.environment, fs.join(out, "ingested_skew.csv"))
            if skew_clean is None:
                return EXIT_BLOCKING
        result = ops.run_validation(
            data,
            spec=spec,
            schema=schema,
            environment=args.environment,
            reference_stats=reference,
            skew_data=skew,
            beam_pipeline_args=args.beam_arg,
        )
    except (ops.ValidationError, ops.StatisticsCountError) as e:
        raise SystemExit(f"kfloop validate: {e}") from None
    if cleaned is not None:
        _point_at_rows(result.findings, cleaned, schema, args.data)
    written = ops.write_artifacts(
        result,
        statistics_uri=fs.join(out, "statistics.pb"),
        anomalies_dir=fs.join(out, "anomalies"),
        report_uri=fs.join(out, "report.html"),
        title=f"Data validation: {args.data} ({args.environment})",
    )
    print(format_summary(result, args.data))
    for key in ("report", "summary", "anomalies", "statistics"):
        print(f"  {key:<10} {written[key]}")
    if result.blocking:
        print(ops.blocking_message(result.findings), file=sys.stderr)
        _hint_missing_label_source(result.findings, args.environment, spec)
        return EXIT_BLOCKING
    return 0


def _schema(path: str | None, spec_source: str, spec):
    """The schema to validate against: ``--schema``, else ``schema.pbtxt`` next to a local spec file, else the
    schema the spec alone implies (:func:`kfloop.tfdv.schema.spec_schema`)."""
    import os

    from kfloop.tfdv import schema as kschema

    if path:
        return kschema.load_schema(path)
    if os.path.isfile(spec_source):
        beside = kschema.default_path(spec_source)
        if beside.is_file():
            return kschema.load_schema(str(beside))
    return kschema.spec_schema(spec)


def _is_raw(uri: str, spec) -> bool:
    """Whether the file is in raw form (:func:`kfloop.clean.is_raw` on its first 10,000 rows)."""
    import io

    import pandas as pd

    from kfloop import clean as ingest
    from kfloop import fs
    from kfloop.tfdv import ops

    try:
        payload = fs.read_bytes(uri)
    except FileNotFoundError:
        raise ops.ValidationError(f"data file {uri!r} does not exist") from None
    try:
        head = pd.read_csv(io.BytesIO(payload), dtype=str, keep_default_na=False, nrows=10_000)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return False  # the validation's reader names the problem
    return ingest.is_raw(head, spec)


def _how_labelled(spec) -> str:
    lab = spec.label_spec
    if lab.derive is not None:
        return f"deriving {lab.column} ({lab.derive})"
    if spec.task.value == "regression":
        return f"reading {lab.column} (a number)"
    if spec.task.value == "multiclass":
        return f"labelling {lab.column} (the index of its class in {list(spec.classes)})"
    return f"labelling {lab.column} (1 when {lab.positive!r})"


def _ingest_raw(uri: str, spec, environment: str, ingested_uri: str):
    """Cleans and labels raw data as ``kfloop ingest`` does; writes the Dataset CSV.

    Returns:
        ``(ingested_uri, cleaned frame)``, or ``(ingested_uri, None)`` when a value cannot be cleaned (the
        reason, with column and CSV line, is printed).

    Raises:
        ValidationError: the file cannot be read.
        SystemExit: the spec does not fit the data (exit 2, one line naming the key).
    """
    from kfloop import clean as ingest
    from kfloop import datasets
    from kfloop.app.checks import spec_misfit
    from kfloop.tfdv import ops

    print(
        f"raw extract: {uri} is in raw form; cleaning it and {_how_labelled(spec)} as `kfloop ingest` does, "
        f"then validating the ingested form {ingested_uri}"
    )
    try:
        raw = ingest.read_raw(uri)
    except ingest.IngestError as e:
        raise ops.ValidationError(str(e)) from None
    training = environment == "TRAINING"
    spec_misfit(ingest.spec_problems(raw, spec, with_label=training), "kfloop validate: --spec")
    try:
        frame = ingest.clean(raw, spec, form="raw", with_label=training)
    except ingest.IngestError as e:
        print(f"BLOCKED: raw extract {uri}: {e}", file=sys.stderr)
        return ingested_uri, None
    written = frame.drop(columns=[spec.label.name]) if not training else frame
    datasets.write_dataset(written, ingested_uri)
    return ingested_uri, frame


def _point_at_rows(findings: list[dict], frame, schema, uri: str) -> None:
    """Adds the first offending CSV line of the raw file to each domain anomaly's description."""
    from kfloop.tfdv import locate

    for f in findings:
        hit = locate.first_offending_row(frame, schema, f["feature"])
        if hit is None:
            continue
        pos, value = hit
        f["first_row"] = {"data_row": pos + 1, "csv_line": pos + 2, "value": str(value)}
        f["description"] += f" (first at {uri} CSV line {pos + 2}: {f['feature']}={value!r})"


def _hint_missing_label_source(findings: list[dict], environment: str, spec) -> None:
    label = spec.label.name
    raw_only = [c for c in spec.derive_inputs if c not in spec.dataset_columns]
    if (
        raw_only
        and environment == "TRAINING"
        and any(f["feature"] == label and f["type"] == "SCHEMA_MISSING_COLUMN" for f in findings)
    ):
        names = ", ".join(repr(c) for c in raw_only)
        print(
            f"  (raw data needs its {names} column{'s' if len(raw_only) > 1 else ''}, from which {label} is "
            "derived)",
            file=sys.stderr,
        )


_COUNT_OPTIONS = ("direct_num_workers",)


def check_beam_args(beam_args: list[str], cmd: str) -> None:
    """Refuses Beam options that Beam itself would crash on later (``--direct_num_workers=-1``).

    Raises:
        SystemExit: one line naming the option.
    """
    for arg in beam_args:
        if not arg.startswith("--"):
            raise SystemExit(f"{cmd}: --beam-arg {arg!r}: Beam options look like --name=value")
        name, _, value = arg[2:].partition("=")
        if name in _COUNT_OPTIONS and not (value.isdigit() and int(value) >= 0):
            raise SystemExit(f"{cmd}: --beam-arg {arg}: --{name} must be an integer >= 0 (0 = all cores)")


def format_summary(result, data: str) -> str:
    """The one-screen text summary of a :class:`~kfloop.tfdv.ops.ValidationResult`."""
    blocking = result.blocking
    verdict = "BLOCKED" if blocking else ("PASSED (non-blocking findings)" if result.findings else "PASSED")
    lines = [
        f"{verdict}: {data} [{result.environment}], {result.rows} rows, {len(result.findings)} anomalies "
        f"({len(blocking)} blocking)"
    ]
    for f in result.findings:
        mark = "BLOCK" if f["blocking"] else "note "
        lines.append(f"  {mark} {f['feature']:<24} {f['type']:<40} {f['short_description']}")
    for kind, scores in (("skew", result.skew), ("drift", result.drift)):
        if scores:
            crossed = [s["feature"] for s in scores if s["crossed"]]
            worst = max(
                (s for s in scores if s["score"] is not None), key=lambda s: s["score"] / s["threshold"]
            )
            lines.append(
                f"  {kind}: {len(crossed)}/{len(scores)} features above threshold"
                + (f" ({', '.join(crossed)})" if crossed else "")
                + f"; highest {worst['feature']} {worst['metric']} {worst['score']:.3g} (threshold {worst['threshold']:g})"
            )
    return "\n".join(lines)
