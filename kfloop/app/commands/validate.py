"""``kfloop validate``: TFDV statistics, schema anomalies, drift and skew of one dataset.

The data is a Dataset CSV (what ``kfloop ingest`` writes) or a raw taxi extract as it comes (recognised by
its ``tips`` column and the absence of ``big_tipper``): a raw extract is first cleaned and labelled by the
same code as ``kfloop ingest`` (written to ``<output-dir>/ingested.csv``), and a value that cannot be
cleaned is refused with its column and CSV line. Blocking schema anomalies of a raw extract name the first
offending CSV line of the raw file.

Exit codes: 0 = no anomalies or only non-blocking ones; 3 = blocking anomalies (:data:`EXIT_BLOCKING`);
1 = bad input (missing / unreadable file, bad schema); 2 = bad command line.
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
        help="validate a dataset CSV against the TFDV schema (exit 3 on blocking anomalies)",
        description="Computes TFDV statistics of a Dataset CSV, validates them against the schema, "
        "optionally measures drift against reference statistics and skew against a second dataset, "
        "prints a summary and writes statistics, anomalies and an HTML report.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--data",
        required=True,
        help="Dataset CSV, or a raw taxi extract with 'tips' (cleaned and labelled first); local or gs://",
    )
    p.add_argument("--schema", help="schema text proto (default: the committed examples/taxi/schema.pbtxt)")
    p.add_argument(
        "--environment", default="TRAINING", choices=("TRAINING", "SERVING"), help="schema environment"
    )
    p.add_argument("--reference-stats", help="statistics file (as written here) to measure drift against")
    p.add_argument(
        "--skew-data",
        help="second Dataset CSV or raw extract (e.g. the eval split) for the train/eval skew check",
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
    from kfloop.app.cli import check_input_file, check_not_in_store, check_output_dir
    from kfloop.tfdv import ops

    check_input_file(args.data, "kfloop validate: --data", must_exist=False)
    check_input_file(args.schema, "kfloop validate: --schema", must_exist=False)
    check_input_file(args.reference_stats, "kfloop validate: --reference-stats", must_exist=False)
    check_input_file(args.skew_data, "kfloop validate: --skew-data", must_exist=False)
    check_output_dir(args.output_dir, "kfloop validate: --output-dir")
    check_not_in_store(args.output_dir, "kfloop validate: --output-dir")
    check_beam_args(args.beam_arg, "kfloop validate")
    out = args.output_dir
    try:
        schema = ops.load_schema(args.schema)
        reference = ops.load_statistics(args.reference_stats) if args.reference_stats else None
        data, cleaned = args.data, None
        if _is_raw_extract(args.data):
            data, cleaned = _ingest_raw(args.data, args.environment, fs.join(out, "ingested.csv"))
            if cleaned is None:
                return EXIT_BLOCKING
        skew = args.skew_data
        if skew and _is_raw_extract(skew):
            skew, skew_clean = _ingest_raw(skew, args.environment, fs.join(out, "ingested_skew.csv"))
            if skew_clean is None:
                return EXIT_BLOCKING
        result = ops.run_validation(
            data,
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
        _hint_missing_tips(result.findings, args.environment)
        return EXIT_BLOCKING
    return 0


def _is_raw_extract(uri: str) -> bool:
    """Whether the file's header is the raw extract form (see :func:`kfloop.clean.is_raw`)."""
    import csv

    from kfloop import clean as ingest
    from kfloop import fs
    from kfloop.tfdv import ops

    try:
        payload = fs.read_bytes(uri)
    except FileNotFoundError:
        raise ops.ValidationError(f"data file {uri!r} does not exist") from None
    first = payload[: payload.find(b"\n") if b"\n" in payload else len(payload)]
    header = next(csv.reader([first.decode("utf-8", "replace").strip()]), [])
    return ingest.is_raw(h.strip() for h in header)


def _ingest_raw(uri: str, environment: str, ingested_uri: str):
    """Cleans and labels a raw extract as ``kfloop ingest`` does; writes the Dataset CSV.

    Returns:
        ``(ingested_uri, cleaned frame)``, or ``(ingested_uri, None)`` when a value cannot be cleaned (the
        reason, with column and CSV line, is printed).

    Raises:
        ValidationError: the file cannot be read.
    """
    from kfloop import clean as ingest
    from kfloop import datasets
    from kfloop import features as F
    from kfloop.tfdv import ops

    print(
        f"raw extract: {uri} has {F.TIPS!r} and no {F.LABEL.name!r}; cleaning it and deriving "
        f"{F.LABEL.name} (tips > {F.BIG_TIP_SHARE:.0%} of fare) as `kfloop ingest` does, then validating "
        f"the ingested form {ingested_uri}"
    )
    try:
        raw = ingest.read_raw(uri)
    except ingest.IngestError as e:
        raise ops.ValidationError(str(e)) from None
    try:
        frame = ingest.clean(raw)
    except ingest.IngestError as e:
        print(f"BLOCKED: raw extract {uri}: {e}", file=sys.stderr)
        return ingested_uri, None
    written = frame.drop(columns=[F.LABEL.name]) if environment == "SERVING" else frame
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


def _hint_missing_tips(findings: list[dict], environment: str) -> None:
    from kfloop import features as F

    if environment == "TRAINING" and any(
        f["feature"] == F.LABEL.name and f["type"] == "SCHEMA_MISSING_COLUMN" for f in findings
    ):
        print(
            f"  (a raw extract needs its {F.TIPS!r} column, from which {F.LABEL.name} is derived)",
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
