"""``kfloop validate``: TFDV statistics, schema anomalies, drift and skew of one dataset.

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
    p.add_argument("--data", required=True, help="Dataset CSV (local path or gs://)")
    p.add_argument(
        "--schema", help="schema text proto (default: the committed kfloop/schema/taxi_schema.pbtxt)"
    )
    p.add_argument(
        "--environment", default="TRAINING", choices=("TRAINING", "SERVING"), help="schema environment"
    )
    p.add_argument("--reference-stats", help="statistics file (as written here) to measure drift against")
    p.add_argument(
        "--skew-data", help="second Dataset CSV (e.g. the eval split) for the train/eval skew check"
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
    from components.validate import tfdv_ops
    from kfloop import fs
    from kfloop.cli import check_input_file, check_output_dir

    check_input_file(args.data, "kfloop validate: --data", must_exist=False)
    check_input_file(args.schema, "kfloop validate: --schema", must_exist=False)
    check_input_file(args.reference_stats, "kfloop validate: --reference-stats", must_exist=False)
    check_input_file(args.skew_data, "kfloop validate: --skew-data", must_exist=False)
    check_output_dir(args.output_dir, "kfloop validate: --output-dir")
    check_beam_args(args.beam_arg, "kfloop validate")
    try:
        schema = tfdv_ops.load_schema(args.schema)
        reference = tfdv_ops.load_statistics(args.reference_stats) if args.reference_stats else None
        result = tfdv_ops.run_validation(
            args.data,
            schema=schema,
            environment=args.environment,
            reference_stats=reference,
            skew_data=args.skew_data,
            beam_pipeline_args=args.beam_arg,
        )
    except (tfdv_ops.ValidationError, tfdv_ops.StatisticsCountError) as e:
        raise SystemExit(f"kfloop validate: {e}") from None
    out = args.output_dir
    written = tfdv_ops.write_artifacts(
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
        print(tfdv_ops.blocking_message(result.findings), file=sys.stderr)
        return EXIT_BLOCKING
    return 0


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
    """The one-screen text summary of a :class:`~components.validate.tfdv_ops.ValidationResult`."""
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
