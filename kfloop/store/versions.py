"""Versions: claim, publish (write-once files, verified listing, metadata, commit marker last), read, fetch."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from kfloop import fs, layout
from kfloop.store.artifacts import _manifest_of, check_artifact_name
from kfloop.store.names import (
    _CLAIM_RETRIES,
    _NAME_RE,
    _SHA256_RE,
    COMMIT_MARKER,
    CorruptStore,
    ModelNotFound,
    StoreError,
    _check_manifest_path,
    _check_version,
    _sha256_file,
    check_model_name,
    default_actor,
    is_version,
    now_iso,
)


class _Versions:
    """Publishing immutable versions and reading them (listing, metadata, fetch)."""

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

    def _check_uploaded(self, prefix: str, manifest: dict, what: str) -> None:
        """Raises :class:`StoreError` (``"<what>: [differences]"``) unless the files under ``prefix`` are
        exactly the manifest's, by size."""
        got = self._stat_files(prefix)
        want = {rel: m["size"] for rel, m in manifest.items()}
        if got != want:
            diff = sorted(set(got.items()) ^ set(want.items()))[:5]
            raise StoreError(f"{what}: {diff}")

    # --------------------------------------------------------------------------------------- publish
    def publish(
        self,
        name: str,
        model_dir: str,
        metadata: dict | None = None,
        *,
        actor: str = "",
        run_id: str | None = None,
        artifacts: dict[str, str] | None = None,
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
            artifacts: ``{artifact name: directory}`` kept with the version (``{"reference": dir}``: the
                monitoring reference), written once before the commit marker (:mod:`kfloop.store.artifacts`).

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
        src, manifest = _manifest_of(model_dir, "model directory")
        if not (src / "saved_model.pb").is_file():
            raise StoreError(f"model directory {str(model_dir)!r} has no saved_model.pb (not a SavedModel)")
        artifacts = dict(artifacts or {})
        for artifact, src_dir in artifacts.items():  # bad input: refused before anything is written
            check_artifact_name(artifact)
            _manifest_of(src_dir, f"artifact {artifact!r} of {name}:")
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
        self._check_uploaded(
            model_uri, manifest, f"publish of {name} {version}: uploaded files do not match the source"
        )
        for artifact, src_dir in sorted(artifacts.items()):
            self._write_artifact(name, version, artifact, src_dir, actor)
        published_at = now_iso()
        meta = {**metadata, "name": name, "version": version, "published_at": published_at, "files": manifest}
        if artifacts:
            meta["artifacts"] = sorted(artifacts)
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
        if artifacts:
            marker["artifacts"] = sorted(artifacts)
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

    def _require_committed(self, name: str, version: str) -> None:
        if not self.is_committed(name, version):
            have = self.versions(name)
            raise ModelNotFound(
                f"model {name!r} has no committed version {version!r} in {self.root} "
                f"(committed: {', '.join(have) if have else 'none'})"
            )

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
