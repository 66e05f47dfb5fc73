"""The model store: atomic, immutable model versions and audited, compare-and-swap aliases.

Rooted at a local directory (the embedded default) or ``gs://bucket/prefix``. Layout under the root::

    models/<name>/<version>/_CLAIM           written first, write-once: the version is taken
    models/<name>/<version>/model/...        the SavedModel (with kfloop_metadata.json), write-once files
    models/<name>/<version>/metadata.json    data window, metrics, blessing, schema hash, run id, files
    models/<name>/<version>/_COMMITTED       written last: a version without it does not exist for readers
    models/<name>/aliases/<alias>.json       {"version", "updated_at", "previous", "reason", "actor", "move"}
    models/<name>/history/<time>-<id>.json   one record per alias attempt / publish / rejection
    models/<name>/runs/<run-hash>.json       {"run_id", "version"}: a retried publish of a run reuses it
    models/<name>/_next_version.json         version counter (compare-and-swap; a hint, see below)

Integrity rules:

- Versions are ``v0001``, ``v0002``, ... A publish takes the counter's number but never one below an existing
  version directory, and then *claims* the directory with a write-once ``_CLAIM`` (GCS
  ``if_generation_match=0``, locally an exclusive hard link); every file of a version is write-once too. So
  a deleted, stale or rewound counter can never make a publish write into an existing version.
- Aliases change by compare-and-swap: on GCS an upload with ``if_generation_match`` (HTTP 412 when someone
  else wrote first); locally an atomic rename while holding ``fcntl.flock`` on ``models/<name>/.lock``. Each
  alias object carries the id of the move that wrote it (``move``), so a write whose response was lost is
  recognised as our own on the re-read.
- Every publish and alias move is recorded. The record of a move is named after the move
  (``history/<updated_at>-<move>.json``) and written right after the swap; a crash in between leaves the
  move in the alias object, and the next swap of that alias writes the missing record before it overwrites
  the object (reconciliation), while :meth:`ModelStore.history` shows it at once (``"recovered": true``).
  A publish is recorded the same way from its ``_COMMITTED`` marker.
- Every JSON file the store reads is checked (valid UTF-8 JSON object with the expected fields and types);
  a bad one raises :class:`CorruptStore` naming the file and the problem. Manifest paths that are absolute
  or leave the version directory are refused. Model, alias and version names are checked with full matches.

Only the standard library is imported at module level (this module also runs in the serving env).
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path, PurePosixPath

from kfloop import fs, layout

CHAMPION = "champion"
CANARY = "canary"
COMMIT_MARKER = layout.COMMIT_MARKER
CLAIM_MARKER = layout.CLAIM_MARKER

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_ALIAS_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_VERSION_RE = re.compile(r"v\d{4,9}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CAS_RETRIES = 20
_CLAIM_RETRIES = 20


class StoreError(Exception):
    """Anything the store refuses or cannot find; the message names the model / version / alias / file."""


class ModelNotFound(StoreError, LookupError):
    """No such model, committed version, or alias."""


class InvalidName(StoreError, ValueError):
    """A model name, alias or version that does not match its pattern."""


class CorruptStore(StoreError):
    """A store file that is unreadable, not the JSON it should be, or does not match its manifest."""


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


def _stamp(iso: str) -> str:
    return iso.replace("-", "").replace(":", "").replace(".", "")


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


def check_model_name(name: str) -> str:
    """Returns ``name`` if it is a valid model name (it becomes a path component everywhere).

    Valid: 1-63 characters, lowercase letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit
    (so never ``..``, a slash or a newline).

    Raises:
        InvalidName: (a :class:`StoreError` and a ``ValueError``) anything else.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"invalid model name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


_check_name = check_model_name


def _check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.fullmatch(alias) or _VERSION_RE.fullmatch(alias):
        shown = alias if not isinstance(alias, str) or len(alias) <= 40 else alias[:40] + "..."
        raise InvalidName(f"invalid alias {shown!r}: use lowercase letters, digits and '-' (e.g. 'champion')")
    return alias


def is_version(ref: str) -> bool:
    """Whether ``ref`` is a version id (``v0001``; 4 to 9 digits) rather than an alias."""
    return isinstance(ref, str) and bool(_VERSION_RE.fullmatch(ref))


def _check_ref(ref) -> str:
    ref = str(ref)
    if ref[:1] == "v" and ref[1:].isdigit() and not is_version(ref):
        shown = ref if len(ref) <= 20 else f"{ref[:12]}... ({len(ref)} characters)"
        raise InvalidName(f"invalid version {shown!r}: versions are 'v' and 4 to 9 digits (e.g. 'v0001')")
    return ref


def _check_version(name: str, version: str) -> str:
    """Returns ``version`` if ``name`` is a valid model name and ``version`` a version id.

    Raises:
        InvalidName: either is not.
    """
    check_model_name(name)
    if not is_version(version):
        raise InvalidName(
            f"invalid version {_check_ref(version)!r} of model {name!r} (versions look like 'v0001')"
        )
    return version


def is_store_root(path: str | os.PathLike) -> bool:
    """Whether a local directory is a model store's root: ``models/<name>/`` under it holds a version
    counter, an ``aliases/`` folder or a committed version."""
    models = Path(layout.models_root(str(path)))
    try:
        for m in models.iterdir():
            if (m / layout.COUNTER_FILE).is_file() or (m / layout.ALIASES_DIR).is_dir():
                return True
            if any((v / COMMIT_MARKER).is_file() for v in m.glob("v*")):
                return True
    except OSError:  # no models/ folder (or not readable): not a store
        return False
    return False


def containing_store(path: str | os.PathLike, store_uri: str | None = None) -> str | None:
    """The root of the model store that a path lies in (the root itself included), or None.

    ``store_uri`` (local or ``gs://``) is such a root whatever it holds; a local path is also checked
    against every directory above it (:func:`is_store_root`). Commands use this to refuse writing into a
    store other than through :class:`ModelStore` and :mod:`kfloop.predlog`.
    """
    path = str(path)
    if store_uri:
        root = str(store_uri).removeprefix("file://")
        if fs.is_gcs(root) or fs.is_gcs(path):
            if fs.is_gcs(root) and fs.is_gcs(path):
                r = root.rstrip("/")
                if path.rstrip("/") == r or path.startswith(r + "/"):
                    return r
        else:
            r = os.path.realpath(root)
            p = os.path.realpath(path)
            if p == r or p.startswith(r.rstrip("/") + "/"):
                return r
    if fs.is_gcs(path):
        return None
    p = Path(os.path.realpath(path))
    for a in (p, *p.parents):
        if is_store_root(a):
            return str(a)
    return None


def _check_manifest_path(uri: str, rel) -> str:
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise CorruptStore(f"{uri}: manifest entry {rel!r} is not a relative file path")
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise CorruptStore(
            f"{uri}: manifest entry {rel!r} is absolute or leaves the version directory; refusing it"
        )
    return rel


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
            try:
                fs.split_gcs(root)  # validates the bucket
            except ValueError as e:
                raise StoreError(str(e)) from None
            self.root = root.rstrip("/")
        else:
            self.root = os.path.abspath(root)
        self.is_gcs = fs.is_gcs(self.root)

    def __repr__(self) -> str:
        return f"ModelStore({self.root!r})"

    # ----------------------------------------------------------------------------------------- layout
    def _model_root(self, name: str) -> str:
        return layout.model_root(self.root, check_model_name(name))

    def _version_root(self, name: str, version: str) -> str:
        return layout.version_root(self.root, name, _check_version(name, version))

    def model_uri(self, name: str, version: str) -> str:
        """URI of the SavedModel directory of a version (what KServe's ``storageUri`` points to)."""
        return layout.version_model(self.root, name, _check_version(name, version))

    def _alias_uri(self, name: str, alias: str) -> str:
        return layout.alias(self.root, check_model_name(name), _check_alias(alias))

    def _counter_uri(self, name: str) -> str:
        return layout.version_counter(self.root, check_model_name(name))

    def _run_uri(self, name: str, run_id: str) -> str:
        digest = hashlib.sha256(str(run_id).encode()).hexdigest()[:32]
        return layout.run_index(self.root, check_model_name(name), digest)

    # ------------------------------------------------------------------------------- reading JSON
    def _load_json(self, uri: str, what: str, *, missing_ok: bool = False) -> dict | None:
        """A JSON object file of the store, checked; None when missing and ``missing_ok``.

        Raises:
            CorruptStore: a directory, unreadable, not UTF-8, not JSON, or not a JSON object.
            ModelNotFound: missing (without ``missing_ok``).
        """
        try:
            data = fs.read_bytes(uri)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise ModelNotFound(f"{uri}: {what} is missing") from None
        except IsADirectoryError:
            raise CorruptStore(f"{uri}: {what} is a directory, expected a JSON file") from None
        except OSError as e:
            raise CorruptStore(f"{uri}: cannot read {what}: {e.strerror or e}") from None
        if not data.strip():
            raise CorruptStore(f"{uri}: {what} is empty (truncated?)")
        try:
            obj = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise CorruptStore(f"{uri}: {what} is not UTF-8 text (garbled?)") from None
        except json.JSONDecodeError as e:
            raise CorruptStore(
                f"{uri}: {what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}; truncated or garbled?)"
            ) from None
        except RecursionError:
            raise CorruptStore(f"{uri}: {what} is nested too deeply") from None
        if not isinstance(obj, dict):
            raise CorruptStore(f"{uri}: {what} must be a JSON object, found {type(obj).__name__}")
        return obj

    @staticmethod
    def _field(uri: str, what: str, obj: dict, key: str, types, *, optional: bool = False):
        if key not in obj:
            if optional:
                return None
            raise CorruptStore(f"{uri}: {what} has no {key!r}")
        value = obj[key]
        if value is None and optional:
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            raise CorruptStore(f"{uri}: {what} field {key!r} has the wrong type ({type(value).__name__})")
        return value

    def _read_alias_obj(self, name: str, alias: str) -> dict | None:
        uri = self._alias_uri(name, alias)
        obj = self._load_json(uri, f"alias {alias!r}", missing_ok=True)
        if obj is not None:
            self._check_alias_obj(uri, obj)
        return obj

    def _check_alias_obj(self, uri: str, obj: dict) -> None:
        version = self._field(uri, "alias file", obj, "version", str, optional=True)
        if version is not None and not is_version(version):
            raise CorruptStore(f"{uri}: alias file points to {version!r}, which is not a version id")
        for key in ("previous", "move", "updated_at", "action", "actor", "reason"):
            self._field(uri, "alias file", obj, key, str, optional=True)

    # ------------------------------------------------------------------------------ low-level swaps
    @contextmanager
    def _local_lock(self, name: str):
        import fcntl

        path = Path(layout.model_lock(self.root, check_model_name(name)))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _swap(self, name: str, uri: str, what: str, update, *, before=None, after=None, check=None) -> dict:
        """Compare-and-swap of the small JSON object at ``uri``.

        ``update(current: dict | None) -> dict`` computes the new content (or raises); it is called again
        with the fresh content whenever another writer got in between (GCS 412). The new content gets a
        fresh ``move`` id, by which a write whose response was lost is recognised as ours on the re-read.
        ``before(current)`` runs on the content about to be replaced (reconciliation), ``after(new)`` once
        the swap is done (locally still under the lock), ``check(uri, obj)`` validates what is read.
        """

        def read_local():
            obj = self._load_json(uri, what, missing_ok=True)
            if obj is not None and check:
                check(uri, obj)
            return obj

        def prepare(cur):
            if before is not None and cur is not None:
                before(cur)
            new = dict(update(cur))
            new["move"] = uuid.uuid4().hex
            return new

        if not self.is_gcs:
            with self._local_lock(name):
                new = prepare(read_local())
                fs.write_text(uri, json.dumps(new, indent=2, sort_keys=True))
                if after is not None:
                    after(new)
                return new
        from google.api_core.exceptions import NotFound

        bucket, key = fs.split_gcs(uri)
        b = fs.gcs_client().bucket(bucket)

        def read_gcs():
            blob = b.blob(key)
            try:
                data = blob.download_as_bytes()
            except NotFound:
                return None, 0
            try:
                obj = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                obj = None
            if not isinstance(obj, dict):
                self._load_json(uri, what)  # raises the precise CorruptStore
            if check:
                check(uri, obj)
            return obj, blob.generation

        for _ in range(_CAS_RETRIES):
            current, generation = read_gcs()
            new = prepare(current)
            body = json.dumps(new, indent=2, sort_keys=True).encode()
            try:
                fs.write_bytes(uri, body, if_generation_match=generation)
            except (fs.GenerationMismatch, FileExistsError):
                # Someone else wrote first - or our own write landed and only its response was lost.
                now, _ = read_gcs()
                if now is not None and now.get("move") == new["move"]:
                    break
                continue
            except Exception as e:
                if not fs.is_transient(e):
                    raise
                now, _ = read_gcs()  # retries exhausted: did it land anyway?
                if now is not None and now.get("move") == new["move"]:
                    break
                raise StoreError(f"{uri}: write failed after retries ({type(e).__name__}: {e})") from None
            break
        else:
            raise StoreError(f"{uri}: gave up after {_CAS_RETRIES} concurrent-update retries")
        if after is not None:
            after(new)
        return new

    def _highest_version_dir(self, name: str) -> int:
        """The highest version number with anything stored under its directory (committed or not)."""
        root = self._model_root(name)
        numbers = [0]
        if self.is_gcs:
            bucket, key = fs.split_gcs(root)
            it = fs.gcs_client().list_blobs(bucket, prefix=key + "/", delimiter="/")
            list(it)  # the prefixes are filled in while paging
            for prefix in it.prefixes:
                part = prefix.rstrip("/").rsplit("/", 1)[-1]
                if is_version(part):
                    numbers.append(int(part[1:]))
        elif os.path.isdir(root):
            numbers += [int(e.name[1:]) for e in os.scandir(root) if is_version(e.name)]
        return max(numbers)

    def _reserve_version(self, name: str) -> str:
        uri = self._counter_uri(name)

        def check(u, obj):
            nxt = self._field(u, "version counter", obj, "next", int)
            if nxt < 1:
                raise CorruptStore(f"{u}: version counter 'next' must be >= 1, found {nxt}")

        def bump(cur):
            # The counter is only a hint: never hand out a number at or below an existing directory.
            n = max(int((cur or {}).get("next", 1)), self._highest_version_dir(name) + 1)
            return {"next": n + 1, "updated_at": now_iso()}

        new = self._swap(name, uri, "version counter", bump, check=check)
        return f"v{new['next'] - 1:04d}"

    def _claim_version(self, name: str, run_id: str | None) -> str:
        """Reserves a version number and takes its directory with a write-once claim."""
        for _ in range(_CLAIM_RETRIES):
            version = self._reserve_version(name)
            claim = {"version": version, "claimed_at": now_iso(), "run_id": run_id, "pid": os.getpid()}
            try:
                fs.write_text(
                    layout.version_claim(self.root, name, _check_version(name, version)),
                    json.dumps(claim, sort_keys=True),
                    if_generation_match=0,
                )
                return version
            except FileExistsError:
                continue  # the counter lagged behind a directory someone is filling: take the next one
        raise StoreError(f"model {name!r}: could not claim a free version after {_CLAIM_RETRIES} tries")

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
    def _history_uri(self, name: str, time: str, rid: str) -> str:
        return layout.history_record(self.root, check_model_name(name), _stamp(time), rid)

    def _write_record(self, name: str, rec: dict, rid: str) -> None:
        # FileExistsError: written already (by us before a lost response, or by a reconciling writer)
        with contextlib.suppress(FileExistsError):
            fs.write_text(
                self._history_uri(name, rec["time"], rid),
                json.dumps(rec, sort_keys=True, default=str),
                if_generation_match=0,
            )

    def record(self, name: str, event: str, **fields) -> dict:
        """Appends one history record (``{"time", "event", "actor", ...fields}``) and returns it.

        Records are separate write-once objects named by time, so appending never contends with others.
        """
        rec = {"time": now_iso(), "event": event, "actor": fields.pop("actor", None) or default_actor()}
        rec.update(fields)
        self._write_record(name, rec, uuid.uuid4().hex[:8])
        return rec

    @staticmethod
    def _move_record(alias: str, obj: dict) -> dict:
        rec = {
            "time": obj.get("updated_at") or now_iso(),
            "event": "alias",
            "alias": alias,
            "from": obj.get("previous"),
            "to": obj.get("version"),
            "reason": obj.get("reason", ""),
            "actor": obj.get("actor") or "unknown",
            "action": obj.get("action", "set"),
            "outcome": "success",
            "move": obj["move"],
        }
        if "expected" in obj:
            rec["expected"] = obj["expected"]
        return rec

    @staticmethod
    def _publish_record(marker: dict) -> dict:
        return {
            "time": marker.get("committed_at") or now_iso(),
            "event": "publish",
            "version": marker["version"],
            "actor": marker.get("actor") or "unknown",
            "files": marker.get("files"),
            "run_id": marker.get("run_id"),
        }

    def _record_move(self, name: str, alias: str, obj: dict) -> dict:
        rec = self._move_record(alias, obj)
        self._write_record(name, rec, obj["move"])
        return rec

    def _record_after_move(self, name: str, alias: str, obj: dict) -> dict:
        """Records a move that has happened; a failure here does not undo or hide it (see reconcile)."""
        try:
            return self._record_move(name, alias, obj)
        except Exception as e:  # the move stands; history() shows it, the next swap writes the record
            return {**self._move_record(alias, obj), "recorded": False, "record_error": str(e)[:200]}

    def _marker(self, name: str, version: str) -> dict:
        uri = layout.version_commit(self.root, name, _check_version(name, version))
        obj = self._load_json(uri, "commit marker")
        if obj.get("version") != version:
            raise CorruptStore(f"{uri}: commit marker names version {obj.get('version')!r}, not {version!r}")
        return obj

    def _unrecorded(self, name: str, moves: set, published: set, *, by_name: bool = False) -> list[dict]:
        """Records of publishes and alias moves the store's state shows but the history lacks.

        ``moves`` / ``published``: the move ids and versions the history has. ``by_name``: they come from
        the record file names only (cheap), where a version published before records were named by
        version (its marker has no ``actor``) counts as recorded.
        """
        out = []
        for version in self.versions(name):
            if version not in published:
                marker = self._marker(name, version)
                if by_name and "actor" not in marker:
                    continue  # recorded under a random name by an older kfloop
                out.append(self._publish_record(marker))
        for alias in self._alias_names(name):
            obj = self._read_alias_obj(name, alias)
            if obj and obj.get("move") and obj["move"] not in moves:
                out.append(self._move_record(alias, obj))
        return out

    def reconcile(self, name: str) -> list[dict]:
        """Writes the history records of publishes and alias moves that a crash left unrecorded.

        Returns the records written. Safe to run any time, concurrently with anything (the records are
        write-once objects named by the move / version). Costs one listing of the history, not a read of
        every record.
        """
        moves, published = set(), set()
        for uri in fs.list_files(layout.history_dir(self.root, check_model_name(name))):
            rid = uri.rsplit("/", 1)[-1].removesuffix(".json").partition("-")[2]
            if rid.startswith("publish-"):
                published.add(rid.removeprefix("publish-"))
            else:
                moves.add(rid)
        found = self._unrecorded(name, moves, published, by_name=True)
        for rec in found:
            rid = rec["move"] if rec["event"] == "alias" else f"publish-{rec['version']}"
            self._write_record(name, rec, rid)
        return found

    def _read_history(self, name: str) -> list[dict]:
        uris = [
            u
            for u in fs.list_files(layout.history_dir(self.root, check_model_name(name)))
            if u.endswith(".json")
        ]
        out = []
        for u in sorted(uris, key=lambda u: u.rsplit("/", 1)[-1]):
            rec = self._load_json(u, "history record")
            self._field(u, "history record", rec, "event", str)
            self._field(u, "history record", rec, "time", str)
            out.append(rec)
        return out

    def history(self, name: str) -> list[dict]:
        """Every history record of a model, oldest first.

        Includes (marked ``"recovered": true``) the publishes and alias moves that a crash left without a
        record, rebuilt from the store's state; :meth:`reconcile` (run by every publish) writes them.

        Raises:
            CorruptStore: a history record (or an alias / commit marker) that is not valid.
        """
        records = self._read_history(name)
        moves = {r.get("move") for r in records if r.get("event") == "alias"}
        published = {r.get("version") for r in records if r.get("event") == "publish"}
        missing = [{**r, "recovered": True} for r in self._unrecorded(name, moves, published)]
        if not missing:
            return records
        return sorted(records + missing, key=lambda r: _stamp(str(r.get("time", ""))))

    # --------------------------------------------------------------------------------------- publish
    def publish(
        self,
        name: str,
        model_dir: str,
        metadata: dict | None = None,
        *,
        actor: str = "",
        run_id: str | None = None,
    ) -> str:
        """Publishes a SavedModel directory as a new immutable version; returns the version (``v0001``).

        Claims a free version directory (write-once), uploads every file under
        ``models/<name>/<version>/model/`` (write-once), verifies the uploaded listing (names and sizes)
        against the source, writes ``metadata.json`` and finally ``_COMMITTED``, then the history record.
        An interrupted publish leaves no marker, so readers never see it, and the next publish takes a new
        number. A publish with the ``run_id`` of an earlier committed publish (a retried pipeline task)
        returns that version instead of publishing a second one.

        Args:
            name: Model name.
            model_dir: Local directory (or ``gs://`` prefix) holding the SavedModel.
            metadata: JSON-serialisable facts about the model (data window, metrics, blessing, ...).
            actor: Who publishes (default: :func:`default_actor`).
            run_id: The pipeline run publishing (default: ``metadata["run_id"]``); makes a retry idempotent.

        Raises:
            StoreError: bad name, missing / empty model directory, non-JSON metadata, failed verification.
        """
        check_model_name(name)
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"metadata for model {name!r} is not JSON-serialisable: {e}") from None
        run_id = run_id or metadata.get("run_id") or None
        run_id = str(run_id) if run_id else None
        if run_id:
            done = self._published_by_run(name, run_id)
            if done:
                return done
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
        actor = actor or default_actor()
        self.reconcile(name)  # records a crashed publisher / mover left behind

        version = self._claim_version(name, run_id)
        if run_id:
            fs.write_text(self._run_uri(name, run_id), json.dumps({"run_id": run_id, "version": version}))
        model_uri = self.model_uri(name, version)
        for rel in manifest:
            try:
                fs.upload_file(src / rel, fs.join(model_uri, rel), if_generation_match=0)
            except FileExistsError:
                raise StoreError(
                    f"publish of {name} {version}: {rel} already exists in the claimed version directory"
                ) from None
        got = self._stat_files(model_uri)
        want = {rel: m["size"] for rel, m in manifest.items()}
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:5]
            raise StoreError(f"publish of {name} {version}: uploaded files do not match the source: {diff}")
        published_at = now_iso()
        meta = {**metadata, "name": name, "version": version, "published_at": published_at, "files": manifest}
        fs.write_text(
            layout.version_metadata(self.root, name, version),
            json.dumps(meta, indent=2, sort_keys=True),
            if_generation_match=0,
        )
        marker = {
            "version": version,
            "committed_at": published_at,
            "files": len(manifest),
            "actor": actor,
            "run_id": run_id,
        }
        fs.write_text(
            layout.version_commit(self.root, name, version),
            json.dumps(marker, sort_keys=True),
            if_generation_match=0,
        )
        self._write_record(name, self._publish_record(marker), f"publish-{version}")
        return version

    def _published_by_run(self, name: str, run_id: str) -> str | None:
        uri = self._run_uri(name, run_id)
        obj = self._load_json(uri, "run index", missing_ok=True)
        if not obj or obj.get("run_id") != run_id:
            return None
        version = obj.get("version")
        return version if isinstance(version, str) and self.is_committed(name, version) else None

    # -------------------------------------------------------------------------------------- reading
    def is_committed(self, name: str, version: str) -> bool:
        """Whether ``version`` exists and carries its commit marker.

        Raises:
            CorruptStore: the commit marker is a directory.
        """
        if not is_version(version):
            return False
        uri = layout.version_commit(self.root, name, _check_version(name, version))
        if not self.is_gcs and os.path.isdir(uri):
            raise CorruptStore(f"{uri}: commit marker is a directory, expected a JSON file")
        return fs.exists(uri)

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
        base = layout.models_root(self.root) + "/"
        names = set()
        for uri in fs.list_files(layout.models_root(self.root)):
            parts = uri[len(base) :].split("/")
            if len(parts) == 3 and parts[2] == COMMIT_MARKER and _NAME_RE.fullmatch(parts[0]):
                names.add(parts[0])
        return sorted(names)

    def metadata(self, name: str, version: str) -> dict:
        """The ``metadata.json`` of a committed version, checked (name, version, a valid file manifest).

        Raises:
            ModelNotFound: the version is not committed.
            CorruptStore: metadata or commit marker unreadable or inconsistent, or a manifest path that
                is absolute or leaves the version directory.
        """
        self._require_committed(name, version)
        uri = layout.version_metadata(self.root, name, _check_version(name, version))
        meta = self._load_json(uri, "version metadata")
        if meta.get("version") != version or meta.get("name") != name:
            raise CorruptStore(
                f"{uri}: metadata names {meta.get('name')!r} {meta.get('version')!r}, not {name!r} {version!r}"
            )
        files = self._field(uri, "version metadata", meta, "files", dict)
        if not files:
            raise CorruptStore(f"{uri}: version metadata lists no files")
        for rel, m in files.items():
            _check_manifest_path(uri, rel)
            if not isinstance(m, dict):
                raise CorruptStore(f"{uri}: manifest entry {rel!r} is not an object")
            size, digest = m.get("size"), m.get("sha256")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise CorruptStore(f"{uri}: manifest entry {rel!r} has no valid size")
            if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
                raise CorruptStore(f"{uri}: manifest entry {rel!r} has no valid sha256")
        marker = self._marker(name, version)
        if isinstance(marker.get("files"), int) and marker["files"] != len(files):
            raise CorruptStore(
                f"{uri}: lists {len(files)} files, the commit marker {marker['files']} (metadata replaced?)"
            )
        return meta

    def verify(self, name: str, version: str) -> dict:
        """Checks a committed version's files against its manifest: present, sizes and sha256 digests.

        Reads every byte (downloads on GCS). Returns the metadata.

        Raises:
            ModelNotFound: the version is not committed.
            CorruptStore: a file missing, extra, of the wrong size or with the wrong sha256 (named).
        """
        meta = self.metadata(name, version)
        manifest = meta["files"]
        model_uri = self.model_uri(name, version)
        got = self._stat_files(model_uri)
        for rel, m in sorted(manifest.items()):
            where = fs.join(model_uri, rel)
            if rel not in got:
                raise CorruptStore(f"{where}: missing (listed in the manifest of {name} {version})")
            if got[rel] != m["size"]:
                raise CorruptStore(
                    f"{where}: {got[rel]} bytes, the manifest of {name} {version} says {m['size']} (truncated?)"
                )
            try:
                digest = hashlib.sha256(fs.read_bytes(where)).hexdigest()
            except OSError as e:
                raise CorruptStore(f"{where}: cannot read: {e}") from None
            if digest != m["sha256"]:
                raise CorruptStore(
                    f"{where}: sha256 does not match the manifest of {name} {version} (garbled?)"
                )
        extra = sorted(set(got) - set(manifest))
        if extra:
            raise CorruptStore(f"{fs.join(model_uri, extra[0])}: not in the manifest of {name} {version}")
        return meta

    def check(self, name: str, *, deep: bool = True) -> list[str]:
        """Reads and checks every file of a model; returns the problems found, one line each.

        Checks the version counter, every alias, every history record, the run index, and each committed
        version's claim, commit marker, metadata and (``deep``) model files against the manifest. An empty list means the
        model is intact.
        """
        problems: list[str] = []

        def run(fn, *a):
            try:
                return fn(*a)
            except StoreError as e:
                problems.append(str(e))
                return None

        counter = self._counter_uri(name)
        obj = run(lambda: self._load_json(counter, "version counter", missing_ok=True))
        if obj is not None and not (isinstance(obj.get("next"), int) and not isinstance(obj["next"], bool)):
            problems.append(f"{counter}: version counter has no integer 'next'")
        for alias in run(self._alias_names, name) or []:
            run(self._read_alias_obj, name, alias)
        run(self._read_history, name)
        for version in run(self.versions, name) or []:
            run(self.verify if deep else self.metadata, name, version)
            claim = layout.version_claim(self.root, name, version)
            run(lambda claim=claim: self._load_json(claim, "version claim", missing_ok=True))
        for uri in fs.list_files(layout.runs_dir(self.root, check_model_name(name))):
            run(lambda uri=uri: self._load_json(uri, "run index"))
        marker_dirs = Path(self._model_root(name)).glob(f"v*/{COMMIT_MARKER}") if not self.is_gcs else []
        for p in marker_dirs:
            if p.is_dir():
                problems.append(f"{p}: commit marker is a directory, expected a JSON file")
        return problems

    def _require_committed(self, name: str, version: str) -> None:
        if not self.is_committed(name, version):
            have = self.versions(name)
            raise ModelNotFound(
                f"model {name!r} has no committed version {version!r} in {self.root} "
                f"(committed: {', '.join(have) if have else 'none'})"
            )

    def alias_record(self, name: str, alias: str) -> dict | None:
        """The alias object (``{"version", "updated_at", ...}``), or None when never set.

        Raises:
            CorruptStore: the alias file is not a valid alias object.
        """
        return self._read_alias_obj(name, alias)

    def get_alias(self, name: str, alias: str) -> str | None:
        """The version an alias points to, or None (never set, or cleared)."""
        rec = self.alias_record(name, alias)
        return rec.get("version") if rec else None

    def _alias_names(self, name: str) -> list[str]:
        out = []
        for uri in fs.list_files(layout.aliases_dir(self.root, check_model_name(name))):
            base = uri.rsplit("/", 1)[-1]
            alias = base.removesuffix(".json")
            if base.endswith(".json") and _ALIAS_RE.fullmatch(alias) and not _VERSION_RE.fullmatch(alias):
                out.append(alias)
        if not self.is_gcs:  # a directory where an alias file should be
            adir = Path(layout.aliases_dir(self.root, name))
            if adir.is_dir():
                for p in adir.iterdir():
                    if p.is_dir() and p.name.endswith(".json"):
                        raise CorruptStore(f"{p}: alias {p.stem!r} is a directory, expected a JSON file")
        return out

    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version}`` of every alias that currently points somewhere."""
        out = {}
        for alias in self._alias_names(name):
            if v := self.get_alias(name, alias):
                out[alias] = v
        return out

    def resolve(self, name: str, ref: str = CHAMPION) -> str:
        """Resolves an alias (``champion``), ``latest`` or a version id to a committed version.

        Raises:
            ModelNotFound: the alias is unset, or the version is not committed.
            InvalidName: ``ref`` is neither a version id nor a valid alias.
        """
        ref = _check_ref(ref)
        check_model_name(name)
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

        The manifest is checked first (no absolute path, none leaving the version directory); the copy is
        checked against the published sizes and sha256 digests, then moved into place with a rename, so
        ``dest_dir`` either holds the complete model or does not exist. An existing complete copy is reused.

        Raises:
            ModelNotFound: the version is not committed.
            CorruptStore: a bad manifest, or a stored file that does not match it.
            StoreError: ``dest_dir`` exists with other content.
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
                if not target.resolve().is_relative_to(tmp.resolve()):  # belt and braces (symlinks)
                    raise CorruptStore(f"fetch {name} {version}: {rel!r} leaves the download directory")
                target.parent.mkdir(parents=True, exist_ok=True)
                where = fs.join(src, rel)
                try:
                    if self.is_gcs:
                        bucket, key = fs.split_gcs(where)
                        fs.gcs_client().bucket(bucket).blob(key).download_to_filename(str(target))
                    else:
                        shutil.copyfile(where, target)
                except FileNotFoundError:
                    raise CorruptStore(
                        f"{where}: missing (listed in the manifest of {name} {version})"
                    ) from None
                except Exception as e:
                    if type(e).__name__ != "NotFound":
                        raise
                    raise CorruptStore(
                        f"{where}: missing (listed in the manifest of {name} {version})"
                    ) from None
                if target.stat().st_size != m["size"] or _sha256_file(target) != m["sha256"]:
                    raise CorruptStore(
                        f"{where}: does not match its published size / sha256 ({name} {version} is corrupt)"
                    )
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

        The move is recorded in the history (record named by the move id); if the process dies before
        that record is written, :meth:`history` still shows the move and the next move of the alias (or
        :meth:`reconcile`) writes the record.

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
        check_model_name(name)
        _check_alias(alias)
        if version is not None:
            self._require_committed(name, version)
        actor = actor or default_actor()

        def update(cur):
            current = (cur or {}).get("version")
            if expected is not ANY and current != expected:
                raise AliasConflict(name, alias, expected, current, version)
            new = {
                "version": version,
                "previous": current,
                "updated_at": now_iso(),
                "reason": reason,
                "actor": actor,
                "action": action,
            }
            if expected is not ANY:
                new["expected"] = expected
            return new

        def before(cur):  # the move being overwritten must be on record first
            if cur.get("move"):
                self._record_move(name, alias, cur)

        out: dict = {}
        try:
            self._swap(
                name,
                self._alias_uri(name, alias),
                f"alias {alias!r}",
                update,
                before=before,
                after=lambda new: out.update(self._record_after_move(name, alias, new)),
                check=self._check_alias_obj,
            )
        except AliasConflict as e:
            base = {"alias": alias, "to": version, "reason": reason, "actor": actor, "action": action}
            if expected is not ANY:
                base["expected"] = expected
            self.record(name, "alias", **base, **{"from": e.actual, "outcome": "conflict"})
            raise
        return out

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


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)
