"""Batch jobs in the prediction log: rows staged per job and attempt, published by one commit object.

Layout under ``<root>/predictions/<model>/``: ``_staging/<job-key>/<attempt>/date=YYYY-MM-DD/*.parquet``
(no reader lists it) and ``_commits/<job-key>.json`` (names the committed attempt and its files, relative
paths, written last and atomically). A rerun of a job id commits over the previous attempt (replaces).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import time
import uuid
from pathlib import Path

import pyarrow as pa

from kfloop import fs, layout
from kfloop.predlog.schema import PREDICTIONS, LogError
from kfloop.predlog.write import check_model_name, write_table

STAGING = layout.STAGING
COMMITS = layout.COMMITS
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def job_key(job_id: str) -> str:
    """A file-name-safe key of a job id: its safe characters (up to 48) and a hash of the whole id, so two
    ids never share a key and the same id always gets the same one."""
    job_id = str(job_id)
    if not job_id.strip():
        raise LogError("batch job id is empty")
    digest = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    safe = _KEY_UNSAFE.sub("_", job_id)[:48].lstrip("._") or "job"
    return f"{safe}-{digest}"


def commit_uri(log_root_uri: str, model_name: str, job_id: str) -> str:
    """``<root>/predictions/<model>/_commits/<job-key>.json``."""
    return layout.batch_commit(log_root_uri, model_name, job_key(job_id))


class BatchJob:
    """One attempt of a batch job's prediction-log rows: staged, then published by :meth:`commit`.

    Args:
        log_root_uri: Log root (the store root; local dir or ``gs://``).
        model_name: Model name.
        job_id: The job's request id (the rows' ``request_id``); a rerun with the same id replaces.
        attempt: This attempt's id (default: UTC time and a random part, unique per process).
    """

    def __init__(self, log_root_uri: str, model_name: str, job_id: str, attempt: str | None = None):
        check_model_name(model_name)
        self.log_root, self.model_name, self.job_id = log_root_uri, model_name, str(job_id)
        self.key = job_key(job_id)
        self.attempt = attempt or f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        if _KEY_UNSAFE.search(self.attempt) or self.attempt.startswith("."):
            raise LogError(f"attempt id {self.attempt!r} is not file-name safe")
        self.model_root = layout.predictions(log_root_uri, model_name)
        self.staging_uri = layout.batch_staging(log_root_uri, model_name, self.key, self.attempt)

    def __repr__(self) -> str:
        return f"BatchJob({self.job_id!r}, attempt={self.attempt!r})"

    def write(self, table: pa.Table, *, writer_id: str | None = None) -> list[str]:
        """Stages ``table`` (prediction rows) as one file per UTC date under :attr:`staging_uri`; nothing
        is visible to readers until :meth:`commit`. Returns the staged URIs."""
        return write_table(
            self.log_root, self.model_name, PREDICTIONS, table, writer_id=writer_id, _base=self.staging_uri
        )

    def commit(self, files: list[str], rows: int) -> dict:
        """Publishes the staged ``files`` (URIs :meth:`write` returned) as the job's rows, atomically.

        The commit object is written last, in one write (local: temp file + rename; GCS: one upload), so
        readers see the previous commit of this job id (or none) until it lands, then exactly these files.

        Raises:
            LogError: a file is not one of this attempt's staged files.
        """
        prefix = self.model_root.rstrip("/") + "/"
        entries = []
        for uri in files:
            if not str(uri).startswith(self.staging_uri.rstrip("/") + "/"):
                raise LogError(f"{uri} is not a staged file of {self!r}")
            rel = str(uri)[len(prefix) :]
            m = re.search(r"/date=(\d{4}-\d{2}-\d{2})/[^/]+$", rel)
            if not m:
                raise LogError(f"{uri} is not in a date partition")
            entries.append({"path": rel, "date": m.group(1)})
        obj = {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "model_name": self.model_name,
            "rows": int(rows),
            "files": sorted(entries, key=lambda e: e["path"]),
            "committed_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        fs.write_text(commit_uri(self.log_root, self.model_name, self.job_id), json.dumps(obj, indent=1))
        return obj

    def abort(self) -> int:
        """Removes this attempt's staged files (best effort; never the committed ones of another attempt).
        Returns how many were removed."""
        removed = 0
        for uri in fs.list_files(self.staging_uri):
            try:
                _remove(uri)
                removed += 1
            except OSError:
                pass
        return removed


def _remove(uri: str) -> None:
    if fs.is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, key = fs.split_gcs(uri)
        with contextlib.suppress(NotFound):
            fs.gcs_client().bucket(bucket).blob(key).delete()
        return
    Path(uri).unlink(missing_ok=True)


def read_commit(uri: str) -> dict:
    """A job's commit object, checked. Raises ``LogError`` naming the problem."""
    try:
        obj = json.loads(fs.read_bytes(uri).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise LogError(f"commit {uri}: not a JSON object ({e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("files"), list):
        raise LogError(f"commit {uri}: expected an object with a 'files' list")
    for entry in obj["files"]:
        path = entry.get("path") if isinstance(entry, dict) else None
        date = entry.get("date") if isinstance(entry, dict) else None
        if (
            not isinstance(path, str)
            or not path.startswith(STAGING + "/")
            or ".." in path.split("/")
            or not isinstance(date, str)
            or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)
        ):
            raise LogError(f"commit {uri}: bad file entry {entry!r}")
    return obj


def committed_job_files(
    log_root_uri: str, model_name: str, days, *, on_corrupt=None
) -> list[tuple[dt.date, str]]:
    """``(date, uri)`` of the files of every committed batch job that fall on one of ``days``."""
    wanted = {d.isoformat() for d in days}
    model_root = layout.predictions(log_root_uri, model_name)
    out = []
    for uri in fs.list_files(layout.batch_commits(log_root_uri, model_name)):
        name = uri.rsplit("/", 1)[-1]
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            obj = read_commit(uri)
        except (OSError, LogError) as e:
            if on_corrupt is not None:
                on_corrupt(uri, str(e)[:300])
            continue
        for entry in obj["files"]:
            if entry["date"] in wanted:
                out.append((dt.date.fromisoformat(entry["date"]), fs.join(model_root, entry["path"])))
    return out
