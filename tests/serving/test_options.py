"""``python -m serving`` options: every bad value is one line and a non-zero exit, before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.serving.conftest import ROOT

pytestmark = pytest.mark.serving

BASE = ["--store-uri", "/nonexistent-store"]

BAD = [
    (["--reload-interval", "nan"], "--reload-interval"),
    (["--reload-interval", "inf"], "--reload-interval"),
    (["--reload-interval", "-1"], "--reload-interval"),
    (["--reload-interval", "1e300"], "--reload-interval"),
    (["--log-flush-seconds", "nan"], "--log-flush-seconds"),
    (["--log-flush-seconds", "0"], "--log-flush-seconds"),
    (["--log-flush-seconds", "-inf"], "--log-flush-seconds"),
    (["--batch-wait-ms", "nan"], "--batch-wait-ms"),
    (["--batch-wait-ms", "-0.5"], "--batch-wait-ms"),
    (["--shutdown-delay", "nan"], "--shutdown-delay"),
    (["--shutdown-timeout", "0"], "--shutdown-timeout"),
    (["--log-close-timeout", "inf"], "--log-close-timeout"),
    (["--max-rows", "0"], "--max-rows"),
    (["--max-body-bytes", "-5"], "--max-body-bytes"),
    (["--max-batch-rows", "0"], "--max-batch-rows"),
    (["--log-queue-size", "-1"], "--log-queue-size"),
    (["--log-flush-rows", "0"], "--log-flush-rows"),
    (["--max-queue-rows", "0"], "--max-queue-rows"),
    (["--max-queue-requests", "-3"], "--max-queue-requests"),
    (["--max-inflight-bytes", "0"], "--max-inflight-bytes"),
    (["--max-queue-rows", "10", "--max-rows", "100"], "--max-queue-rows"),
    (["--max-inflight-bytes", "1000", "--max-body-bytes", "2000"], "--max-inflight-bytes"),
    (["--log-queue-size", "100", "--max-rows", "1000"], "--log-queue-size"),
    (["--log-when-full", "block"], "--log-when-full"),
    (["--http_port", "70000"], "--http_port"),
    (["--http_port", "0"], "--http_port"),
    (["--grpc_port", "-1"], "--grpc_port"),
    (["--timeout-keep-alive", "-1"], "--timeout-keep-alive"),
    (["--max_threads", "0"], "--max_threads"),
    (["--predictor_request_retries", "-2"], "--predictor_request_retries"),
    (["--workers", "2"], "--workers"),
    (["--model-name", "../../x"], "--model-name"),
    (["--model-name", "taxi-tips\n"], "--model-name"),
    (["--model-name", "Taxi/Tips"], "--model-name"),
    (["--model-name", ""], "--model-name"),
    (["--max-rows", "abc"], "--max-rows"),
    (["--reload-interval", "soon"], "--reload-interval"),
]


@pytest.mark.parametrize(("extra", "flag"), BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_option_is_refused_naming_it(extra, flag, capsys):
    from serving.__main__ import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args([*BASE, *extra])
    err = capsys.readouterr().err
    message = str(exc.value.code) if not isinstance(exc.value.code, int) else err
    assert exc.value.code != 0
    assert flag in message, message
    assert message.strip().count("\n") == 0, message


def test_good_options_parse_to_the_serving_config():
    from serving.__main__ import _serving_config, parse_args

    args = parse_args(
        [*BASE, "--reload-interval", "0", "--max-queue-rows", "9000", "--shutdown-delay", "2.5"]
    )
    cfg = _serving_config(args)
    assert (cfg.reload_interval_s, cfg.max_queue_rows, cfg.shutdown_delay_s) == (0.0, 9000, 2.5)
    assert cfg.log_when_full == "shed"
    # drop never refuses a request for the log, so a queue smaller than a request is allowed there
    args = parse_args([*BASE, "--log-when-full", "drop", "--log-queue-size", "100", "--max-rows", "1000"])
    assert (_serving_config(args).log_when_full, _serving_config(args).log_queue_size) == ("drop", 100)


@pytest.mark.parametrize(
    "extra",
    [
        ["--reload-interval", "nan"],
        ["--log-flush-seconds", "nan"],
        ["--model-name", "../../x"],
        ["--max-rows", "x"],
    ],
)
def test_bad_option_from_the_command_line_is_one_line_and_exit_nonzero(extra, tmp_path):
    """The real entry point: one stderr line, no traceback, non-zero exit, nothing written."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    log_root = tmp_path / "log"
    r = subprocess.run(
        [sys.executable, "-m", "serving", *BASE, "--log-uri", str(log_root), *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m serving"), r.stderr
    assert "Traceback" not in r.stderr
    assert not log_root.exists() and not any(tmp_path.parent.glob("x"))


def test_serving_config_refuses_an_unknown_log_policy():
    import dataclasses

    from kfloop import config

    with pytest.raises(ValueError, match="log_when_full must be 'shed' or 'drop', got 'block'"):
        dataclasses.replace(config.ServingConfig(), log_when_full="block")
