"""``kfloop predict``: the batch prediction pipeline under kfp.local (read → validate → score → log → output).

Exit codes: 0 = scored; 3 = the rows were blocked by validation (anomalies against the serving schema,
listed, or a raw-extract value that cannot be cleaned: as ``kfloop validate``); 1 = bad input (missing
file, unknown model ref, an output that exists or lies in the store, a failed step: one line with the
reason); 2 = bad command line; 143 = stopped by SIGTERM (the running task is stopped too, nothing logged).

The job's prediction-log rows are committed only after every step and the output have succeeded (see
:func:`components.batch_predict.batch_predict.run_job`): a failed, killed or stopped job logs no rows, and a
rerun with the same ``--request-id`` replaces the rows of the earlier run.
"""

from __future__ import annotations

import argparse
import sys

#: Exit code when the data gate blocks the rows (as ``kfloop validate``).
EXIT_BLOCKING = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="batch-score a CSV with a model from the store (validated, logged for monitoring)",
        description="Runs the batch prediction pipeline locally under kfp.local: validates the rows against "
        "the schema's SERVING environment (blocks on anomalies), scores them with the model of an alias or "
        "version (Apache Beam RunInference; --beam-arg passes Beam options through), writes every row to the "
        "prediction log in the online server's format (source=batch) and the predictions to --output.",
        epilog="exit codes: 0 scored; 3 blocked by validation; 1 bad input or a failed step; 2 bad usage; "
        "143 stopped by SIGTERM",
    )
    p.add_argument("--input", required=True, help="CSV to score (Dataset, raw extract or features only)")
    p.add_argument("--output", required=True, help="predictions file: .csv, else Parquet (local or gs://)")
    p.add_argument("--store-uri", required=True, help="model store root (local dir or gs://); log root too")
    p.add_argument(
        "--model-name",
        default="",
        help="model name in the store (its dataset spec's name; default: the store's only model). The "
        "features, label and schema come from the spec stored with the version that scores",
    )
    p.add_argument(
        "--model-ref", default="champion", help="alias, 'latest' or version vNNNN (default champion)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.add_argument(
        "--request-id",
        default="",
        help="request id of the job (default batch-<time>-<random>); a rerun with the same id replaces "
        "the earlier run's logged rows",
    )
    p.add_argument("--no-log", action="store_true", help="do not write the prediction log")
    p.add_argument("--chunk-rows", type=int, default=16384, help="rows per model call (default 16384)")
    p.add_argument(
        "--beam-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="Beam pipeline option, repeatable (e.g. --beam-arg=--runner=DataflowRunner)",
    )
    p.add_argument(
        "--workdir", default="build/predict", help="kfp.local pipeline root and logs (default build/predict)"
    )
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    import os
    import warnings
    from pathlib import Path

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from components.batch_predict import batch_predict as B
    from kfloop import fs, layout
    from kfloop.app.checks import check_input_file, check_not_in_store, check_output_dir, check_output_file
    from kfloop.app.commands.validate import check_beam_args

    if args.chunk_rows < 1:
        raise SystemExit(f"kfloop predict: --chunk-rows must be >= 1, got {args.chunk_rows}")
    check_input_file(args.input, "kfloop predict: --input", must_exist=False)
    check_output_dir(args.workdir, "kfloop predict: --workdir")
    check_not_in_store(args.workdir, "kfloop predict: --workdir", args.store_uri)
    check_beam_args(args.beam_arg, "kfloop predict")
    if not fs.exists(args.input):
        raise SystemExit(f"kfloop predict: input {args.input!r} does not exist")
    check_output_file(
        args.output,
        "kfloop predict: --output",
        overwrite=args.overwrite,
        inputs={"--input": args.input},
        store_uri=args.store_uri,
    )
    _check_name(args)
    try:  # the ref is checked before any step runs
        version = B.resolve(args.store_uri, args.model_name, args.model_ref)
    except B.BatchPredictError as e:
        raise SystemExit(f"kfloop predict: {e}") from None
    workdir = Path(args.workdir)
    log_path = workdir / "logs" / f"predict-{os.getpid()}.log"
    request_id = args.request_id or B.new_request_id()
    print(
        f"batch prediction: {args.input} with {args.model_name} {args.model_ref} ({version}), "
        f"request id {request_id}; log {log_path}"
    )
    from pipelines.batch_prediction import create_pipeline

    arguments = {
        "input_uri": args.input,
        "store_uri": args.store_uri,
        "output_uri": args.output,
        "model_name": args.model_name,
        "model_ref": version,  # pinned: the version shown is the one that scores
        "log_predictions": not args.no_log,
        "request_id": request_id,
        "chunk_rows": args.chunk_rows,
        "beam_pipeline_args": list(args.beam_arg),
    }
    os.environ[B.PARENT_PID_ENV] = str(os.getpid())  # the tasks stop when this process is gone
    try:
        with _stopped_by_sigterm():
            run = _run_with_progress(create_pipeline(), workdir / "pipeline_root", log_path, arguments)
    except _Terminated:
        print(
            f"kfloop predict: stopped by SIGTERM; the job was stopped, nothing was logged (log {log_path})",
            file=sys.stderr,
        )
        return 128 + 15
    except _Failed as e:
        blocked = _blocking_report(workdir / "pipeline_root", e.started)
        if blocked:
            print(blocked, file=sys.stderr)
            print(f"kfloop predict: BLOCKED: the rows failed validation (nothing scored); log {log_path}")
            return EXIT_BLOCKING
        task, exc, message = _failure(log_path, e.reason)
        if exc == "BlockedInput":  # a raw value that cannot be cleaned: blocked, as `kfloop validate` says
            from kfloop.app.checks import Blocked

            raise Blocked(f"kfloop predict: BLOCKED: {message} (nothing scored; log {log_path})") from None
        where = f"step {task} failed: " if task else ""
        if exc and message:
            cause = message if exc in _OWN_ERRORS else f"{exc}: {message}"
        else:
            cause = exc or message
        raise SystemExit(f"kfloop predict: {where}{cause} (log {log_path})") from None
    summary = _summary(run.root)
    print(
        f"scored {summary.get('rows', '?')} rows with {version} at {summary.get('rows_per_second', '?')} rows/s "
        f"-> {args.output}"
        + ("" if args.no_log else f"; logged under {layout.predictions(args.store_uri, args.model_name)}")
    )
    return 0


def _check_name(args: argparse.Namespace) -> None:
    """Checks ``--model-name``; without one, takes the store's only model."""
    from kfloop import store

    try:
        args.model_name = args.model_name or store.only_model(args.store_uri)
    except store.StoreError as e:
        raise SystemExit(f"kfloop predict: {e}") from None
    try:
        store.check_model_name(args.model_name)
    except store.StoreError as e:
        raise SystemExit(f"kfloop predict: --model-name: {e}") from None


#: Exceptions whose message says it all (kfloop's own): their class name is not printed.
_OWN_ERRORS = (
    "BatchPredictError",
    "BlockedInput",
    "ValidationError",
    "IngestError",
    "StoreError",
    "LogError",
)


def _failure(log_path, reason: str) -> tuple[str, str, str]:
    """``(failed task, exception name, message)`` of a failed run, from kfloop.app.local's error and the
    task's streamed traceback in ``log_path`` (kfp.local's own error names only the task)."""
    from kfloop.app.local import failure_cause

    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    return failure_cause(reason, lines)


class _Terminated(Exception):
    """SIGTERM arrived while the pipeline ran (its tasks have been stopped)."""


def _stopped_by_sigterm():
    """A context in which SIGTERM stops this process's tasks (kfp.local's subprocesses) and raises
    :class:`_Terminated` here, instead of ending this process alone while a task carries on."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def ctx():
        def handler(signum, frame):
            from kfloop.app.local import stop_children

            stop_children()
            raise _Terminated()

        try:
            old = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: no handler (the tasks still stop with this process)
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, old)

    return ctx()


class _Failed(Exception):
    def __init__(self, reason: str, started: float):
        super().__init__(reason)
        self.reason, self.started = reason, started


def _run_with_progress(func, pipeline_root, log_path, arguments):
    """Runs the pipeline with kfp.local's output in ``log_path``, echoing task and progress lines."""
    import os
    import re
    import threading
    import time

    from kfloop.app.local import run_pipeline

    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    done = threading.Event()
    console = os.fdopen(os.dup(saved[0]), "w", buffering=1)

    ansi = re.compile(r"\x1b\[[0-9;]*m")

    def follow():
        with open(log_path, errors="replace") as f:
            while True:
                line = f.readline()
                if not line:
                    if done.is_set():
                        return
                    time.sleep(0.2)
                    continue
                text = ansi.sub("", line.strip())
                if "batch predict:" in text:
                    console.write("  " + text[text.find("batch predict:") :] + "\n")
                elif "Executing task" in text or "finished with status" in text:
                    console.write("  " + text.split(" - INFO - ", 1)[-1] + "\n")

    started = time.time()
    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            return run_pipeline(func, pipeline_root, **arguments)
        except _Terminated:
            raise
        except Exception as e:
            raise _Failed(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", started) from e
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            done.set()
            thread.join(5)
            console.close()


def _latest(root, pattern: str, since: float):
    from pathlib import Path

    hits = [p for p in Path(root).glob(pattern) if p.stat().st_mtime >= since - 1]
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def _blocking_report(pipeline_root, since: float) -> str | None:
    """The blocking anomalies of this run's validate step, as ``kfloop validate`` prints them, if any."""
    import json

    from kfloop.tfdv import ops

    summary = _latest(pipeline_root, "*/batch-input-op/anomalies/summary.json", since)
    if summary is None:
        return None
    data = json.loads(summary.read_text())
    if not data.get("blocking"):
        return None
    report = summary.parent.parent / "report"
    return ops.blocking_message(data["anomalies"]) + f"\n  report: {report}"


def _summary(run_root) -> dict:
    """The score step's counts (kfp.local keeps Metrics in the task's ``executor_output.json``)."""
    import json

    path = run_root / "batch-score-op" / "executor_output.json"
    try:
        out = json.loads(path.read_text())
        return out["artifacts"]["counts"]["artifacts"][0]["metadata"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return {}
