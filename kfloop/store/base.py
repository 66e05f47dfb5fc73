"""The store's foundation: its root, checked JSON reads and the compare-and-swap of small JSON objects."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from kfloop import fs, layout
from kfloop.store.names import (
    _CAS_RETRIES,
    CorruptStore,
    ModelNotFound,
    StoreError,
    _as_tuple,
    _check_alias,
    _check_version,
    check_model_name,
)


class _Base:
    """The root, the layout of one model's files, checked JSON reads and the compare-and-swap."""

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
