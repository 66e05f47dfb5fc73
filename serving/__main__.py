"""``python -m serving``: the kfloop KServe model server.

Reuses kserve's model-server arguments (``--http_port``, ``--workers``, ...) and adds kfloop's::

    python -m serving --store-uri gs://bucket/kfloop --model-name taxi-tips --model-ref champion
    python -m serving --model-dir /path/to/saved_model --http_port 8080
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from kfloop import config


def build_parser() -> argparse.ArgumentParser:
    """kserve's model-server parser plus the kfloop options."""
    from kserve import model_server

    defaults = config.ServingConfig()
    p = argparse.ArgumentParser(
        prog="python -m serving",
        parents=[model_server.parser],
        description="kfloop KServe predictor (V1 + Open Inference Protocol v2).",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store-uri", help="model store root (local dir or gs://bucket/prefix)")
    src.add_argument("--model-dir", help="serve this SavedModel directory directly (no store, no hot reload)")
    # kserve's parser already has --model_name; --model-name is the same option, default taxi-tips.
    p.add_argument("--model-name", dest="model_name", help="model name in the store and the URL")
    p.add_argument("--model-ref", default="champion", help="alias (e.g. champion) or pinned version (v0003)")
    p.add_argument("--log-uri", help="prediction log root (default: --store-uri; none: not logged)")
    p.add_argument("--no-prediction-log", action="store_true", help="do not log predictions")
    p.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes, help="413 above this")
    p.add_argument("--max-rows", type=int, default=defaults.max_rows, help="400 above this many rows")
    p.add_argument(
        "--batch-wait-ms", type=float, default=defaults.batch_wait_ms, help="micro-batch wait bound"
    )
    p.add_argument("--max-batch-rows", type=int, default=defaults.max_batch_rows, help="rows per model call")
    p.add_argument(
        "--log-queue-size", type=int, default=defaults.log_queue_size, help="prediction log queue (rows)"
    )
    p.add_argument("--log-flush-rows", type=int, default=defaults.log_flush_rows)
    p.add_argument("--log-flush-seconds", type=float, default=defaults.log_flush_seconds)
    p.add_argument(
        "--reload-interval",
        type=float,
        default=defaults.reload_interval_s,
        help="alias poll seconds (0: off)",
    )
    p.add_argument("--workdir", help="local directory for downloaded model versions (default: under $TMPDIR)")
    p.set_defaults(model_name=config.MODEL_NAME, enable_grpc=False)
    return p


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
    return SystemExit(f"python -m serving: {msg}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.store_uri and not args.model_dir:
        raise _fail("give --store-uri (model store) or --model-dir (a SavedModel directory)")
    for name in ("max_body_bytes", "max_rows", "max_batch_rows", "log_queue_size", "log_flush_rows"):
        if getattr(args, name) <= 0:
            raise _fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.workers != 1:
        raise _fail("--workers must be 1 (scale with replicas; micro-batching works per process)")
    if args.batch_wait_ms < 0 or args.reload_interval < 0 or args.log_flush_seconds <= 0:
        raise _fail("--batch-wait-ms and --reload-interval must be >= 0, --log-flush-seconds > 0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _configure_logging()

    import kserve
    from kserve import model_server

    from serving import http
    from serving.model import ModelContractError, ModelSource, TaxiModel
    from serving.predlog import PredictionLog

    cfg = config.ServingConfig(
        max_body_bytes=args.max_body_bytes,
        max_rows=args.max_rows,
        batch_wait_ms=args.batch_wait_ms,
        max_batch_rows=args.max_batch_rows,
        log_queue_size=args.log_queue_size,
        log_flush_rows=args.log_flush_rows,
        log_flush_seconds=args.log_flush_seconds,
        reload_interval_s=args.reload_interval,
    )
    try:
        source = ModelSource(args.model_name, args.store_uri, args.model_ref, args.model_dir, args.workdir)
        log_uri = None if args.no_prediction_log else (args.log_uri or args.store_uri)
        plog = (
            PredictionLog(
                log_uri, args.model_name, cfg.log_queue_size, cfg.log_flush_rows, cfg.log_flush_seconds
            )
            if log_uri
            else None
        )
        model = TaxiModel(args.model_name, source, cfg, plog, args.reload_interval)
        if log_uri:  # POST /v1/models/<name>:feedback writes next to the prediction log
            from serving.feedback import Feedback

            model.feedback = Feedback(log_uri, args.model_name, config.FeedbackConfig())
        model.load()
    except (ModelContractError, FileNotFoundError, ValueError, LookupError) as e:
        raise _fail(str(e)) from None
    except Exception as e:
        if type(e).__module__.startswith("kfloop"):
            raise _fail(str(e)) from None
        raise
    if plog is None:
        logging.getLogger("kfloop.serving").info("prediction log: off (no --store-uri / --log-uri)")
    http.install(model_server.app, model, cfg.max_body_bytes)
    try:
        kserve.ModelServer(
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            workers=1,
            enable_grpc=args.enable_grpc,
            enable_latency_logging=args.enable_latency_logging,
        ).start([model])
    finally:
        model.close()
        logging.getLogger("kfloop.serving").info(
            "stopped; prediction log written=%s dropped=%s writer_cpu_s=%.3f process_cpu_s=%.3f",
            plog.written if plog else 0,
            plog.dropped if plog else 0,
            plog.cpu_seconds if plog else 0.0,
            time.process_time(),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
