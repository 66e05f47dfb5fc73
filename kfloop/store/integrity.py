"""Integrity: a version's files against its manifest (:meth:`verify`), a whole model's files (:meth:`check`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kfloop import fs, layout
from kfloop.store.names import (
    COMMIT_MARKER,
    CorruptStore,
    StoreError,
    check_model_name,
)


class _Integrity:
    """Reading every byte of a version or a model and naming what does not match."""

    def verify(self, name: str, version: str) -> dict:
        """Checks a committed version's files (model and artifacts) against their manifests: present, sizes
        and sha256 digests.

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
        self.verify_artifacts(name, version)
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
