"""``python -m serving``: the kfloop KServe model server.

Reuses kserve's model-server arguments (``--http_port``, ``--workers``, ...) and adds kfloop's::

    python -m serving --store-uri gs://bucket/kfloop --model-name my-model --model-ref champion
    python -m serving --model-dir /path/to/saved_model --http_port 8080

gRPC (V2 ``GRPCInferenceService``, :mod:`serving.grpc_v2`) is served with ``--grpc_port N`` (the pod's
ServingRuntime gives 8081) or ``--enable_grpc true`` (port 8081). Bad options end the process with one line on
stderr and a non-zero exit. Shutdown on SIGTERM: readiness
answers 503 at once, the listener stays open ``--shutdown-delay`` seconds, then closes; in-flight requests get
``--shutdown-timeout`` seconds to finish and the prediction log ``--log-close-timeout`` seconds to flush.
SIGINT (Ctrl-C) skips the delay.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import re
import sys
import time

from kfloop import config

PROG = "python -m serving"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (kserve's option list would make the usage block a page long)."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message}\n")


def _kserve_model_server():
    """kserve.model_server, imported without letting its import-time ``parse_known_args`` read our argv."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        from kserve import model_server
    finally:
        sys.argv = saved
    return model_server


def build_parser() -> argparse.ArgumentParser:
    """kserve's model-server parser plus the kfloop options."""
    model_server = _kserve_model_server()
    d = config.ServingConfig()
    p = _Parser(
        prog=PROG,
        parents=[model_server.parser],
        description="kfloop KServe predictor (V1 + Open Inference Protocol v2).",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store-uri", help="model store root (local dir or gs://bucket/prefix)")
    src.add_argument("--model-dir", help="serve this SavedModel directory directly (no store, no hot reload)")
    # kserve's parser already has --model_name; --model-name is the same option. Default: the name in
    # --model-dir's dataset spec, or the store's only model (resolved at start, see default_model_name).
    p.add_argument("--model-name", dest="model_name", help="model name in the store and the URL")
    p.add_argument("--model-ref", default="champion", help="alias (e.g. champion) or pinned version (v0003)")
    p.add_argument("--log-uri", help="prediction log root (default: --store-uri; none: not logged)")
    p.add_argument("--no-prediction-log", action="store_true", help="do not log predictions")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="413 above this")
    p.add_argument("--max-rows", type=int, default=d.max_rows, help="400 above this many rows")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms, help="micro-batch wait bound")
    p.add_argument("--max-batch-rows", type=int, default=d.max_batch_rows, help="rows per model call")
    p.add_argument("--log-queue-size", type=int, default=d.log_queue_size, help="prediction log queue (rows)")
    p.add_argument(
        "--log-when-full",
        choices=("shed", "drop"),
        default=d.log_when_full,
        help="log queue full: shed: 503 + Retry-After (every answer is logged); drop: answer, drop the log rows",
    )
    p.add_argument("--log-flush-rows", type=int, default=d.log_flush_rows)
    p.add_argument("--log-flush-seconds", type=float, default=d.log_flush_seconds)
    p.add_argument(
        "--log-stall-seconds",
        type=float,
        default=d.log_stall_seconds,
        help="liveness fails once the prediction log's writer holds rows and reports nothing this long",
    )
    p.add_argument("--reload-interval", type=float, default=d.reload_interval_s, help="alias poll s (0: off)")
    p.add_argument(
        "--max-queue-rows",
        type=int,
        default=d.max_queue_rows,
        help="admission: rows held at once (503 past it)",
    )
    p.add_argument(
        "--max-queue-requests",
        type=int,
        default=d.max_queue_requests,
        help="admission: requests held at once (503 past it)",
    )
    p.add_argument(
        "--max-inflight-bytes",
        type=int,
        default=d.max_inflight_bytes,
        help="admission: request-body bytes held at once (503 past it)",
    )
    p.add_argument(
        "--shutdown-delay",
        type=float,
        default=d.shutdown_delay_s,
        help="after SIGTERM: seconds to keep accepting (readiness 503) before closing the listener",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=d.shutdown_requests_timeout_s,
        help="after the listener closes: seconds in-flight requests get to finish",
    )
    p.add_argument(
        "--log-close-timeout",
        type=float,
        default=d.shutdown_log_timeout_s,
        help="at exit: seconds the prediction log gets to flush",
    )
    fb = config.FeedbackConfig()
    p.add_argument(
        "--feedback-tokens",
        help="labelers' tokens for POST :feedback (a mounted Secret directory: one file per labeler, or a "
        "file of name:token lines); without it feedback needs no credential",
    )
    p.add_argument(
        "--feedback-flush-seconds",
        type=float,
        default=fb.flush_seconds,
        help="feedback labels are written in batches: at most this long after the first one arrived",
    )
    p.add_argument(
        "--feedback-max-pending",
        type=int,
        default=fb.max_pending_labels,
        help="feedback admission: labels waiting to be written, at most (503 + Retry-After past it)",
    )
    p.add_argument(
        "--shadow",
        action="store_true",
        help="a shadow canary (answers copies of the primary's requests): :feedback refused (403); implied "
        "by --log-uri <store-uri>/" + config.CanaryConfig().shadow_log,
    )
    p.add_argument("--workdir", help="local directory for downloaded model versions (default: under $TMPDIR)")
    p.add_argument(
        "--access-log",
        action="store_true",
        help="uvicorn's access line per request (off: the prediction log records every prediction)",
    )
    # gRPC (V2 GRPCInferenceService, serving.grpc_v2): on when --grpc_port is given (the pod's ServingRuntime
    # gives 8081, KServe's h2c port) or --enable_grpc true (then on kserve's default 8081); off otherwise, so
    # local servers side by side (the loop's champion and shadow) do not fight over one port.
    p.set_defaults(model_name=None, enable_grpc=False, grpc_port=None)
    return p


DEFAULT_GRPC_PORT = 8081


def grpc_port(args) -> int | None:
    """The gRPC port the server listens on, or None (gRPC off)."""
    if args.grpc_port is not None:
        return args.grpc_port
    return DEFAULT_GRPC_PORT if args.enable_grpc else None


def _configure_logging() -> None:
    """kfloop's own log lines (reloads, dropped records, shutdown) on stderr, like kserve's."""
    logger = logging.getLogger("kfloop")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _fail(msg: str) -> SystemExit:
    return SystemExit(f"{PROG}: {msg}")


# Numeric options: (lowest allowed, lowest is allowed itself, highest). Any other numeric option (kserve's,
# present or future) must be finite and >= 0.
_DAY = 86_400.0
_PORT = (1, True, 65_535)
_RULES: dict[str, tuple[float, bool, float]] = {
    "http_port": _PORT,
    "grpc_port": _PORT,
    "batch_wait_ms": (0, True, _DAY * 1000),
    "reload_interval": (0, True, _DAY),
    "log_flush_seconds": (0, False, _DAY),
    "log_stall_seconds": (2, True, _DAY),
    "shutdown_delay": (0, True, _DAY),
    "shutdown_timeout": (0, False, _DAY),
    "log_close_timeout": (0, False, _DAY),
    "feedback_flush_seconds": (0, False, _DAY),
    "predictor_request_retries": (0, True, math.inf),
    "timeout_keep_alive": (0, False, _DAY),
    "predictor_request_timeout_seconds": (0, False, _DAY),
}
_POSITIVE = (0, False, math.inf)


def _check_numbers(parser: argparse.ArgumentParser, args) -> None:
    """Refuses non-finite, negative and out-of-range values of every numeric option (one line, exit 1)."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        flag = max(action.option_strings, key=len) if action.option_strings else action.dest
        if not math.isfinite(value):
            raise _fail(f"{flag} must be a finite number, got {value}")
        lo, lo_ok, hi = _RULES.get(
            action.dest, _POSITIVE if action.type in (int, float) else (0, True, math.inf)
        )
        if value < lo or (value == lo and not lo_ok) or value > hi:
            low = f">= {lo}" if lo_ok else f"> {lo}"
            high = "" if hi == math.inf else f" and <= {hi:g}"
            raise _fail(f"{flag} must be {low}{high}, got {value}")


def _check_model_name(name: str) -> None:
    """The store's name rule as a full match: the name is a path segment of the store and the log."""
    from kfloop import store

    check = getattr(store, "check_model_name", None)
    if check is not None:
        try:
            check(name)
        except Exception as e:
            raise _fail(f"--model-name: {e}") from None
        return
    pattern = store._NAME_RE.pattern.removeprefix("^").removesuffix("$")
    if not isinstance(name, str) or not re.fullmatch(pattern, name):
        raise _fail(f"--model-name {name!r}: not a model name (lowercase letters, digits, '.', '_', '-')")


def parse_args(argv: list[str] | None = None):
    """Parses and checks the command line; raises SystemExit with one line on a bad option."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.store_uri and not args.model_dir:
        raise _fail("give --store-uri (model store) or --model-dir (a SavedModel directory)")
    _check_numbers(parser, args)
    if args.workers != 1:
        raise _fail("--workers must be 1 (scale with replicas; micro-batching works per process)")
    if args.max_queue_rows < args.max_rows:
        raise _fail(f"--max-queue-rows ({args.max_queue_rows}) must be >= --max-rows ({args.max_rows})")
    if args.log_when_full == "shed" and args.log_queue_size < args.max_rows:
        raise _fail(
            f"--log-queue-size ({args.log_queue_size}) must be >= --max-rows ({args.max_rows}) with "
            "--log-when-full shed (a request of --max-rows rows could never be admitted)"
        )
    if args.max_inflight_bytes < args.max_body_bytes:
        raise _fail(
            f"--max-inflight-bytes ({args.max_inflight_bytes}) must be >= --max-body-bytes ({args.max_body_bytes})"
        )
    if args.model_name is not None:  # None: resolved when the server starts (default_model_name)
        _check_model_name(args.model_name)
    return args


def default_model_name(args) -> str:
    """The model name without ``--model-name``: the dataset spec's name of ``--model-dir``, or the only
    model in ``--store-uri``; one line naming ``--model-name`` when there is no single one."""
    from kfloop import contract, spec, store

    if args.model_dir:
        try:
            name = contract.read_spec(str(args.model_dir).removeprefix("file://")).name
        except (FileNotFoundError, spec.SpecError) as e:
            raise _fail(f"--model-name is required: {e}") from None
    else:
        try:
            name = store.only_model(args.store_uri)
        except store.StoreError as e:
            raise _fail(str(e)) from None
    _check_model_name(name)
    return name


def _serving_config(args) -> config.ServingConfig:
    import dataclasses

    return dataclasses.replace(
        config.ServingConfig(),
        max_body_bytes=args.max_body_bytes,
        max_rows=args.max_rows,
        batch_wait_ms=args.batch_wait_ms,
        max_batch_rows=args.max_batch_rows,
        log_queue_size=args.log_queue_size,
        log_when_full=args.log_when_full,
        log_flush_rows=args.log_flush_rows,
        log_flush_seconds=args.log_flush_seconds,
        log_stall_seconds=args.log_stall_seconds,
        reload_interval_s=args.reload_interval,
        max_queue_rows=args.max_queue_rows,
        max_queue_requests=args.max_queue_requests,
        max_inflight_bytes=args.max_inflight_bytes,
        shutdown_delay_s=args.shutdown_delay,
        shutdown_requests_timeout_s=args.shutdown_timeout,
        shutdown_log_timeout_s=args.log_close_timeout,
    )


def _is_shadow(args) -> bool:
    """``--shadow``, or the local loop's shadow canary: its log under ``<store>/<CanaryConfig.shadow_log>``."""
    if args.shadow:
        return True
    if not (args.store_uri and args.log_uri):
        return False
    from kfloop import layout

    shadow = layout.shadow_root(args.store_uri, config.CanaryConfig().shadow_log)
    return args.log_uri.rstrip("/") == shadow.rstrip("/")


def _feedback(args, log_uri: str):
    """The ``:feedback`` endpoint from the options (tokens, batching, shadow); exits on bad tokens."""
    import dataclasses

    from serving import feedback_auth
    from serving.feedback import Feedback

    cfg = dataclasses.replace(
        config.FeedbackConfig(),
        flush_seconds=args.feedback_flush_seconds,
        max_pending_labels=args.feedback_max_pending,
    )
    try:
        auth = feedback_auth.from_path(args.feedback_tokens)
    except feedback_auth.TokenError as e:
        raise _fail(f"--feedback-tokens: {e}") from None
    refuse = None
    if _is_shadow(args):
        refuse = (
            "path: this server is a shadow canary (it answers copies of the primary predictor's requests); "
            "send labels to the primary predictor's :feedback"
        )
    log = logging.getLogger("kfloop.serving")
    if refuse:
        log.info("feedback: refused here (shadow canary)")
    elif auth is None:
        log.info("feedback: no credential required (no --feedback-tokens)")
    else:
        log.info("feedback: bearer tokens of %d labeler(s): %s", len(auth.labelers), ", ".join(auth.labelers))
    return Feedback(log_uri, args.model_name, cfg, auth=auth, refuse=refuse)


def _model_server_class():
    from serving.model_server import model_server_class

    return model_server_class()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model_name is None:
        args.model_name = default_model_name(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _configure_logging()
    model_server = _kserve_model_server()
    # kserve reads some settings (logging config) from its import-time parse: give it ours.
    for k in vars(model_server.args):
        if hasattr(args, k):
            setattr(model_server.args, k, getattr(args, k))

    from serving import http
    from serving.log_queue import PredictionLog
    from serving.model import ModelContractError, ModelSource, Predictor

    cfg = _serving_config(args)
    try:
        source = ModelSource(args.model_name, args.store_uri, args.model_ref, args.model_dir, args.workdir)
        log_uri = None if args.no_prediction_log else (args.log_uri or args.store_uri)
        plog = (
            PredictionLog(
                log_uri,
                args.model_name,
                cfg.log_queue_size,
                cfg.log_flush_rows,
                cfg.log_flush_seconds,
                stall_seconds=cfg.log_stall_seconds,
            )
            if log_uri
            else None
        )
        model = Predictor(args.model_name, source, cfg, plog, args.reload_interval)
        if log_uri:  # POST /v1/models/<name>:feedback writes next to the prediction log
            model.feedback = _feedback(args, log_uri)
            model.feedback.spec_of = model.current_spec  # labels are read by the served version's spec
        model.load()
    except (ModelContractError, FileNotFoundError, ValueError, LookupError) as e:
        raise _fail(str(e)) from None
    except Exception as e:
        if type(e).__module__.startswith("kfloop"):
            raise _fail(str(e)) from None
        raise
    log = logging.getLogger("kfloop.serving")
    if plog is None:
        log.info("prediction log: off (no --store-uri / --log-uri)")
    http.install(model_server.app, model, cfg.max_body_bytes)
    # Everything loaded so far (TensorFlow, kserve, the model: ~10^6 objects) lives as long as the process.
    # Frozen, the cyclic GC stops re-scanning it on every full collection: those took 200-240 ms here under
    # 1,000-row V1 load (measured with gc.callbacks), a stall of the whole server and its p99.
    gc.collect()
    gc.freeze()
    port = grpc_port(args)
    server = _model_server_class()(
        http_port=args.http_port,
        grpc_port=port or DEFAULT_GRPC_PORT,
        workers=1,
        enable_grpc=False,  # kserve's own gRPC server: replaced by serving.grpc_v2 (admission, log, drain)
        enable_latency_logging=args.enable_latency_logging,
        grace_period=cfg.shutdown_requests_timeout_s,
        model=model,
        cfg=cfg,
    )
    if port is not None:
        from serving.grpc_v2 import GRPCFront

        server.grpc_front = GRPCFront(model, port, cfg.max_body_bytes, cfg.shutdown_requests_timeout_s)
    if not args.access_log:
        # uvicorn writes one access line per request when its logger has a handler (kserve installs one).
        # Off by default: the prediction log already records every prediction with its id and time, and
        # the line (client address, quoted path, format, write) cost ~5% of the event loop's time under load.
        access = logging.getLogger("uvicorn.access")
        access.handlers = []
        access.propagate = False
    try:
        server.start([model])
    finally:
        t0 = time.monotonic()
        if model.feedback is not None:
            model.feedback.close()  # labels still waiting for their batch
        model.close(log_timeout=cfg.shutdown_log_timeout_s)
        began = server.shutdown_started
        log.info(
            "stopped; prediction log written=%s dropped=%s writer_cpu_s=%.3f process_cpu_s=%.3f; "
            "log flush %.2f s; %s",
            plog.written if plog else 0,
            plog.dropped if plog else 0,
            plog.cpu_seconds if plog else 0.0,
            time.process_time(),
            time.monotonic() - t0,
            f"shutdown took {time.monotonic() - began:.2f} s after the signal" if began else "no signal",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
