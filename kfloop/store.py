"""The model store: atomic, immutable model versions and audited, compare-and-swap aliases.

Rooted at a local directory (the embedded default) or ``gs://bucket/prefix``. Layout under the root::

    models/<name>/<version>/model/...        the SavedModel (with kfloop_metadata.json)
    models/<name>/<version>/metadata.json    data window, metrics, blessing, schema hash, run id, files
    models/<name>/<version>/_COMMITTED       written last: a version without it does not exist for readers
    models/<name>/aliases/<alias>.json       {"version", "updated_at", "previous", "reason", "actor"}
    models/<name>/history/<time>-<id>.json   one record per alias attempt / publish / rejection
    models/<name>/_next_version.json         version counter (compare-and-swap)

Versions are ``v0001``, ``v0002``, ... (sortable, unique: reserved by compare-and-swap on the counter).
Aliases (``champion``, ``canary``) change by compare-and-swap: on GCS an upload with ``if_generation_match``
(HTTP 412 when someone else wrote first); locally an atomic rename while holding ``fcntl.flock`` on
``models/<name>/.lock``. Every attempt, won or lost, appends a history record.

Only the standard library is imported at module level (this module also runs in the serving env).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from kfloop import fs

CHAMPION = "champion"
CANARY = "canary"
COMMIT_MARKER = "_COMMITTED"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_VERSION_RE = re.compile(r"^v\d{4,}$")
_CAS_RETRIES = 20


class StoreError(Exception):
    """Anything the store refuses or cannot find; the message names the model / version / alias."""


class ModelNotFound(StoreError, LookupError):
    """No such model, committed version, or alias."""


class AliasConflict(StoreError):
    """A compare-and-swap on an alias lost: the alias was not (any more) what the caller expected."""

    def __init__(self, name: str, alias: str, expected: str | None, actual: str | None, wanted: str | None):
        self.name, self.alias, self.expected, self.actual, self.wanted = name, alias, expected, actual, wanted
        super().__init__(
            f"alias {alias!r} of model {name!r} was changed concurrently: expected {expected!r}, "
            f"found {actual!r}; not moved to {wanted!r} (re-read the alias and try again)"
        )


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: ``expected=ANY`` (the default of :meth:`ModelStore.set_alias`): move the alias whatever it points to
#: now (still a compare-and-swap against the value just read, retried if someone writes in between).
ANY = _Any()


def now_iso() -> str:
    """The current UTC time as ``2026-11-23T12:00:00.123456Z``."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_actor() -> str:
    """Who is acting: ``$KFLOOP_ACTOR``, else the OS user, else ``"unknown"``."""
    actor = os.environ.get("KFLOOP_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise StoreError(f"invalid model name {name!r}: use lowercase letters, digits, '.', '_' or '-'")
    return name


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.match(alias) or _VERSION_RE.match(alias):
        raise StoreError(f"invalid alias {alias!r}: use lowercase letters, digits and '-' (e.g. 'champion')")
    return alias


def is_version(ref: str) -> bool:
    """Whether ``ref`` looks like a version id (``v0001``) rather than an alias."""
    return bool(_VERSION_RE.match(str(ref)))


class ModelStore:
    """A model store rooted at a local directory or ``gs://bucket/prefix``.

    Args:
        root_uri: Local directory (``file://`` accepted) or ``gs://bucket/prefix``.
    """

    def __init__(self, root_uri: str):
        root = str(root_uri or "").strip()
        if not root:
            raise StoreError("model store root is empty (give a local directory or gs://bucket/prefix)")
        if root.startswith("file://"):
            root = root[len("file://") :]
        if fs.is_gcs(root):
            fs.split_gcs(root)  # validates the bucket
            self.root = root.rstrip("/")
        else:
            self.root = os.path.abspath(root)
        self.is_gcs = fs.is_gcs(self.root)

    def __repr__(self) -> str:
        return f"ModelStore({self.root!r})"

    # ----------------------------------------------------------------------------------------- layout
    def _model_root(self, name: str) -> str:
        return fs.join(self.root, "models", _check_name(name))

    def _version_root(self, name: str, version: str) -> str:
        if not is_version(version):
            raise StoreError(f"invalid version {version!r} of model {name!r} (versions look like 'v0001')")
        return fs.join(self._model_root(name), version)

    def model_uri(self, name: str, version: str) -> str:
        """URI of the SavedModel directory of a version (what KServe's ``storageUri`` points to)."""
        return fs.join(self._version_root(name, version), "model")

    def _alias_uri(self, name: str, alias: str) -> str:
        return fs.join(self._model_root(name), "aliases", f"{_check_alias(alias)}.json")

    # ------------------------------------------------------------------------------ low-level swaps
    @contextmanager
    def _local_lock(self, name: str):
        import fcntl

        path = Path(self._model_root(name)) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _swap(self, name: str, uri: str, update) -> dict:
        """Compare-and-swap of the small JSON object at ``uri``.

        ``update(current: dict | None) -> dict`` computes the new content (or raises); it is called again
        with the fresh content whenever another writer got in between (GCS 412).
        """
        if not self.is_gcs:
            with self._local_lock(name):
                current = json.loads(Path(uri).read_text()) if Path(uri).is_file() else None
                new = update(current)
                fs.write_text(uri, json.dumps(new, indent=2, sort_keys=True))
                return new
        from google.api_core.exceptions import NotFound, PreconditionFailed

        bucket, key = fs.split_gcs(uri)
        b = fs.gcs_client().bucket(bucket)
        for _ in range(_CAS_RETRIES):
            blob = b.blob(key)
            try:
                data = blob.download_as_bytes()
                current, generation = json.loads(data), blob.generation
            except NotFound:
                current, generation = None, 0
            new = update(current)
            try:
                b.blob(key).upload_from_string(
                    json.dumps(new, indent=2, sort_keys=True).encode(),
                    content_type="application/json",
                    if_generation_match=generation,
                )
                return new
            except PreconditionFailed:
                continue  # someone else wrote in between: re-read, re-check, retry
        raise StoreError(f"{uri}: gave up after {_CAS_RETRIES} concurrent-update retries")

    def _reserve_version(self, name: str) -> str:
        def bump(cur):
            return {"next": int((cur or {}).get("next", 1)) + 1, "updated_at": now_iso()}

        new = self._swap(name, fs.join(self._model_root(name), "_next_version.json"), bump)
        return f"v{new['next'] - 1:04d}"

    def _stat_files(self, prefix: str) -> dict[str, int]:
        """``{relative path: size}`` of every file under ``prefix``."""
        if self.is_gcs:
            bucket, key = fs.split_gcs(prefix)
            key = key.rstrip("/") + "/"
            return {
                b.name[len(key) :]: int(b.size)
                for b in fs.gcs_client().list_blobs(bucket, prefix=key)
                if not b.name.endswith("/")
            }
        root = Path(prefix)
        if not root.is_dir():
            return {}
        return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()}

    # --------------------------------------------------------------------------------------- history
    def record(self, name: str, event: str, **fields) -> dict:
        """Appends one history record (``{"time", "event", "actor", ...fields}``) and returns it.

        Records are separate objects named by time, so appending never contends with other writers.
        """
        rec = {"time": now_iso(), "event": event, "actor": fields.pop("actor", None) or default_actor()}
        rec.update(fields)
        stamp = rec["time"].replace("-", "").replace(":", "").replace(".", "")
        uri = fs.join(self._model_root(name), "history", f"{stamp}-{uuid.uuid4().hex[:8]}.json")
        fs.write_text(uri, json.dumps(rec, sort_keys=True, default=str))
        return rec

    def history(self, name: str) -> list[dict]:
        """Every history record of a model, oldest first."""
        uris = [u for u in fs.list_files(fs.join(self._model_root(name), "history")) if u.endswith(".json")]
        return [json.loads(fs.read_text(u)) for u in sorted(uris, key=lambda u: u.rsplit("/", 1)[-1])]

    # --------------------------------------------------------------------------------------- publish
    def publish(self, name: str, model_dir: str, metadata: dict | None = None, *, actor: str = "") -> str:
        """Publishes a SavedModel directory as a new immutable version; returns the version (``v0001``).

        Uploads every file under ``models/<name>/<version>/model/``, verifies the uploaded listing
        (names and sizes) against the source, writes ``metadata.json`` and finally ``_COMMITTED``.
        An interrupted publish leaves no marker, so readers never see it.

        Args:
            name: Model name.
            model_dir: Local directory (or ``gs://`` prefix) holding the SavedModel.
            metadata: JSON-serialisable facts about the model (data window, metrics, blessing, ...).
            actor: Who publishes (default: :func:`default_actor`).

        Raises:
            StoreError: bad name, missing / empty model directory, non-JSON metadata, failed verification.
        """
        _check_name(name)
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as e:
            raise StoreError(f"metadata for model {name!r} is not JSON-serialisable: {e}") from None
        src = Path(fs.local_copy(str(model_dir)))
        if not src.is_dir():
            raise StoreError(f"model directory {str(model_dir)!r} does not exist or is not a directory")
        files = sorted(p for p in src.rglob("*") if p.is_file())
        if not files:
            raise StoreError(f"model directory {str(model_dir)!r} is empty")
        if not (src / "saved_model.pb").is_file():
            raise StoreError(f"model directory {str(model_dir)!r} has no saved_model.pb (not a SavedModel)")
        manifest = {
            p.relative_to(src).as_posix(): {"size": p.stat().st_size, "sha256": _sha256_file(p)}
            for p in files
        }

        version = self._reserve_version(name)
        model_uri = self.model_uri(name, version)
        for rel in manifest:
            self._upload(src / rel, fs.join(model_uri, rel))
        got = self._stat_files(model_uri)
        want = {rel: m["size"] for rel, m in manifest.items()}
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:5]
            raise StoreError(f"publish of {name} {version}: uploaded files do not match the source: {diff}")
        published_at = now_iso()
        meta = {
            **metadata,
            "name": name,
            "version": version,
            "published_at": published_at,
            "files": manifest,
        }
        vroot = self._version_root(name, version)
        fs.write_text(fs.join(vroot, "metadata.json"), json.dumps(meta, indent=2, sort_keys=True))
        marker = {"version": version, "committed_at": published_at, "files": len(manifest)}
        fs.write_text(fs.join(vroot, COMMIT_MARKER), json.dumps(marker, sort_keys=True))
        self.record(name, "publish", version=version, actor=actor, files=len(manifest))
        return version

    def _upload(self, path: Path, uri: str) -> None:
        if self.is_gcs:
            bucket, key = fs.split_gcs(uri)
            fs.gcs_client().bucket(bucket).blob(key).upload_from_filename(str(path))
        else:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, uri)

    # -------------------------------------------------------------------------------------- reading
    def is_committed(self, name: str, version: str) -> bool:
        """Whether ``version`` exists and carries its commit marker."""
        return is_version(version) and fs.exists(fs.join(self._version_root(name, version), COMMIT_MARKER))

    def versions(self, name: str) -> list[str]:
        """Committed versions of a model, oldest first (an uncommitted publish is not listed)."""
        base = self._model_root(name) + "/"
        out = set()
        for uri in fs.list_files(self._model_root(name)):
            parts = uri[len(base) :].split("/") if uri.startswith(base) else []
            if len(parts) == 2 and parts[1] == COMMIT_MARKER and is_version(parts[0]):
                out.add(parts[0])
        return sorted(out, key=lambda v: int(v[1:]))

    def models(self) -> list[str]:
        """Names of models with at least one committed version."""
        base = fs.join(self.root, "models") + "/"
        names = set()
        for uri in fs.list_files(fs.join(self.root, "models")):
            parts = uri[len(base) :].split("/")
            if len(parts) == 3 and parts[2] == COMMIT_MARKER:
                names.add(parts[0])
        return sorted(names)

    def metadata(self, name: str, version: str) -> dict:
        """The ``metadata.json`` of a committed version.

        Raises:
            ModelNotFound: the version is not committed.
        """
        self._require_committed(name, version)
        return json.loads(fs.read_text(fs.join(self._version_root(name, version), "metadata.json")))

    def _require_committed(self, name: str, version: str) -> None:
        if not self.is_committed(name, version):
            have = self.versions(name)
            raise ModelNotFound(
                f"model {name!r} has no committed version {version!r} in {self.root} "
                f"(committed: {', '.join(have) if have else 'none'})"
            )

    def alias_record(self, name: str, alias: str) -> dict | None:
        """The alias object (``{"version", "updated_at", ...}``), or None when never set."""
        try:
            return json.loads(fs.read_text(self._alias_uri(name, alias)))
        except FileNotFoundError:
            return None

    def get_alias(self, name: str, alias: str) -> str | None:
        """The version an alias points to, or None (never set, or cleared)."""
        rec = self.alias_record(name, alias)
        return rec.get("version") if rec else None

    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version}`` of every alias that currently points somewhere."""
        out = {}
        for uri in fs.list_files(fs.join(self._model_root(name), "aliases")):
            alias = uri.rsplit("/", 1)[-1].removesuffix(".json")
            if _ALIAS_RE.match(alias) and (v := self.get_alias(name, alias)):
                out[alias] = v
        return out

    def resolve(self, name: str, ref: str = CHAMPION) -> str:
        """Resolves an alias (``champion``), ``latest`` or a version id to a committed version.

        Raises:
            ModelNotFound: the alias is unset, or the version is not committed.
        """
        ref = str(ref)
        if is_version(ref):
            self._require_committed(name, ref)
            return ref
        if ref == "latest":
            have = self.versions(name)
            if not have:
                raise ModelNotFound(f"model {name!r} has no committed version in {self.root}")
            return have[-1]
        version = self.get_alias(name, ref)
        if version is None:
            raise ModelNotFound(f"alias {ref!r} of model {name!r} is not set in {self.root}")
        self._require_committed(name, version)
        return version

    def fetch(self, name: str, version: str, dest_dir: str) -> str:
        """Downloads (copies) a committed version's SavedModel into ``dest_dir``; returns its path.

        The copy is checked against the published sizes and sha256 digests, then moved into place with
        a rename, so ``dest_dir`` either holds the complete model or does not exist. An existing complete
        copy is reused.

        Raises:
            ModelNotFound: the version is not committed.
            StoreError: ``dest_dir`` exists with other content, or the download does not match.
        """
        manifest = self.metadata(name, version)["files"]
        dest = Path(dest_dir)
        if dest.exists():
            have = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if p.is_file()}
            if set(have) == set(manifest) and all(
                have[rel].stat().st_size == m["size"] and _sha256_file(have[rel]) == m["sha256"]
                for rel, m in manifest.items()
            ):
                return str(dest)
            raise StoreError(f"fetch {name} {version}: {dest} exists and does not hold this model")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
        try:
            src = self.model_uri(name, version)
            for rel, m in manifest.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if self.is_gcs:
                    bucket, key = fs.split_gcs(fs.join(src, rel))
                    fs.gcs_client().bucket(bucket).blob(key).download_to_filename(str(target))
                else:
                    shutil.copyfile(fs.join(src, rel), target)
                if target.stat().st_size != m["size"] or _sha256_file(target) != m["sha256"]:
                    raise StoreError(f"fetch {name} {version}: {rel} does not match its published sha256")
            tmp.chmod(0o755)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(dest)

    # -------------------------------------------------------------------------------------- aliases
    def set_alias(
        self,
        name: str,
        alias: str,
        version: str | None,
        *,
        expected=ANY,
        reason: str = "",
        actor: str = "",
        action: str = "set",
    ) -> dict:
        """Moves an alias to ``version`` (None clears it) by compare-and-swap; returns the history record.

        Args:
            name: Model name.
            alias: Alias name (``champion``, ``canary``, ...).
            version: Committed version to point to, or None to clear the alias.
            expected: What the caller believes the alias points to now (a version, or None for "unset");
                :data:`ANY` (default) accepts whatever it points to.
            reason: Why (kept in the history).
            actor: Who (default: :func:`default_actor`).
            action: Kind of change for the history (``set``, ``promote``, ``rollback``, ``deploy``...).

        Raises:
            AliasConflict: the alias did not point to ``expected`` (someone else moved it first). The
                attempt is still recorded in the history with ``outcome: "conflict"``.
            ModelNotFound: ``version`` is not committed.
        """
        _check_alias(alias)
        if version is not None:
            self._require_committed(name, version)
        actor = actor or default_actor()
        seen: dict = {}

        def update(cur):
            current = (cur or {}).get("version")
            seen["from"] = current
            if expected is not ANY and current != expected:
                raise AliasConflict(name, alias, expected, current, version)
            return {
                "version": version,
                "previous": current,
                "updated_at": now_iso(),
                "reason": reason,
                "actor": actor,
                "action": action,
            }

        base = {"alias": alias, "to": version, "reason": reason, "actor": actor, "action": action}
        if expected is not ANY:
            base["expected"] = expected
        try:
            self._swap(name, self._alias_uri(name, alias), update)
        except AliasConflict as e:
            self.record(name, "alias", **base, **{"from": e.actual, "outcome": "conflict"})
            raise
        return self.record(name, "alias", **base, **{"from": seen.get("from"), "outcome": "success"})

    def champion_lineage(self, name: str) -> list[str]:
        """The stack of champions as rollbacks see it: oldest first, the current champion last.

        A successful ``set``/``promote`` of the champion pushes its version; a ``rollback`` pops the
        rolled-back version, so rolling back twice goes two champions back.
        """
        stack: list[str] = []
        for rec in self.history(name):
            if rec.get("event") != "alias" or rec.get("alias") != CHAMPION or rec.get("outcome") != "success":
                continue
            if rec.get("action") == "rollback":
                if stack and stack[-1] == rec.get("from"):
                    stack.pop()
                if rec.get("to") and (not stack or stack[-1] != rec["to"]):
                    stack.append(rec["to"])
            elif rec.get("to"):
                stack.append(rec["to"])
        return stack

    def previous_champion(self, name: str) -> str | None:
        """The champion before the current one (what :meth:`rollback` restores), or None."""
        current = self.get_alias(name, CHAMPION)
        stack = self.champion_lineage(name)
        while stack and stack[-1] == current:
            stack.pop()
        return stack[-1] if stack else None

    def rollback(self, name: str, *, reason: str = "", actor: str = "") -> dict:
        """Points ``champion`` back to the previous champion from the history (compare-and-swap).

        Raises:
            ModelNotFound: there is no current or no earlier champion.
            AliasConflict: the champion moved while rolling back.
        """
        current = self.get_alias(name, CHAMPION)
        if current is None:
            raise ModelNotFound(f"model {name!r} has no champion to roll back in {self.root}")
        previous = self.previous_champion(name)
        if previous is None:
            raise ModelNotFound(f"model {name!r}: no earlier champion than {current} in the history")
        return self.set_alias(
            name,
            CHAMPION,
            previous,
            expected=current,
            reason=reason or f"rollback from {current}",
            actor=actor,
            action="rollback",
        )
