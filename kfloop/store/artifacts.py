"""Version artifacts: write-once folders kept with a version (the monitoring reference), recorded in the history.

An artifact ``<a>`` of a version lives at ``models/<name>/<version>/<a>/`` (:func:`kfloop.layout.version_artifact`)
and exists for readers only once its marker ``_artifacts/<a>.json`` (:func:`kfloop.layout.artifact_marker`:
the files' sizes and sha256 digests) is written, last and write-once. It is written either by
:meth:`~kfloop.store.ModelStore.publish` (``artifacts=``, before the version's commit marker) or later, once,
by :meth:`~kfloop.store.ModelStore.put_artifact` for a committed version. Every file is write-once: a second
write of an artifact is refused (and the refusal recorded); an interrupted write (files, no marker) is
finished by a retry with the same content and refused with other content.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kfloop import fs, layout
from kfloop.store.names import CorruptStore, InvalidName, StoreError, _sha256_file, default_actor, now_iso

_ARTIFACT_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
#: Names an artifact cannot take (the version directory's own entries; the others start with ``_`` or a dot).
_RESERVED = frozenset({layout.MODEL_DIR})


def check_artifact_name(artifact: str) -> str:
    """Returns ``artifact`` if it is a valid artifact name (``reference``).

    Raises:
        InvalidName: not 1-32 lowercase letters, digits or ``-`` starting with a letter, or a reserved name.
    """
    if not isinstance(artifact, str) or not _ARTIFACT_RE.fullmatch(artifact) or artifact in _RESERVED:
        raise InvalidName(
            f"invalid artifact name {artifact!r}: use lowercase letters, digits and '-' (e.g. 'reference'), "
            f"not one of {sorted(_RESERVED)}"
        )
    return artifact


def _manifest_of(src_dir: str, what: str) -> tuple[Path, dict]:
    """``(local folder, {relative path: {"size", "sha256"}})`` of a non-empty source folder.

    Raises:
        StoreError: ``"<what> '<src_dir>' does not exist or is not a directory"`` / ``"... is empty"``.
    """
    src = Path(fs.local_copy(str(src_dir)))
    if not src.is_dir():
        raise StoreError(f"{what} {str(src_dir)!r} does not exist or is not a directory")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not files:
        raise StoreError(f"{what} {str(src_dir)!r} is empty")
    return src, {
        p.relative_to(src).as_posix(): {"size": p.stat().st_size, "sha256": _sha256_file(p)} for p in files
    }


class _Artifacts:
    """Writing an artifact once and reading it through its marker."""

    def _write_artifact(self, name: str, version: str, artifact: str, src_dir: str, actor: str) -> dict:
        """Uploads an artifact's files (write-once), checks them, then writes its marker; returns the marker.

        Raises:
            StoreError: bad source, an artifact already written, or stored files that differ from the source.
        """
        what = f"artifact {artifact!r} of {name} {version}"
        src, manifest = _manifest_of(src_dir, f"{what}:")
        marker_uri = layout.artifact_marker(self.root, name, version, artifact)
        if fs.exists(marker_uri):
            raise StoreError(f"{what} is written already ({marker_uri}); artifacts are write-once")
        base = layout.version_artifact(self.root, name, version, artifact)
        for rel in manifest:
            try:
                fs.upload_file(src / rel, fs.join(base, rel), if_generation_match=0)
            except FileExistsError:  # an interrupted write of this artifact: only the same bytes may stay
                if fs.read_bytes(fs.join(base, rel)) != (src / rel).read_bytes():
                    raise StoreError(
                        f"{what}: {rel} exists with other content (an interrupted write); refusing it"
                    ) from None
        self._check_uploaded(base, manifest, f"{what}: stored files do not match the source")
        marker = {
            "artifact": artifact,
            "version": version,
            "written_at": now_iso(),
            "actor": actor,
            "files": manifest,
        }
        try:
            fs.write_text(marker_uri, json.dumps(marker, indent=1, sort_keys=True), if_generation_match=0)
        except FileExistsError:
            raise StoreError(
                f"{what} was written concurrently ({marker_uri}); artifacts are write-once"
            ) from None
        return marker

    def put_artifact(self, name: str, version: str, artifact: str, src_dir: str, *, actor: str = "") -> str:
        """Writes an artifact of a committed version once; returns its URI. The write is recorded in the
        history (``event: "artifact"``), as is a refused second write (``outcome: "refused"``).

        Args:
            name: Model name.
            version: A committed version.
            artifact: Artifact name (:data:`kfloop.layout.REFERENCE`).
            src_dir: Local directory (or ``gs://`` prefix) with the artifact's files.
            actor: Who writes (default: :func:`kfloop.store.default_actor`).

        Raises:
            ModelNotFound: the version is not committed.
            StoreError: the artifact is written already (write-once), or a bad source.
        """
        check_artifact_name(artifact)
        self._require_committed(name, version)
        actor = actor or default_actor()
        base = {"version": version, "artifact": artifact, "actor": actor}
        try:
            marker = self._write_artifact(name, version, artifact, src_dir, actor)
        except StoreError as e:
            self.record(name, "artifact", **base, outcome="refused", reason=str(e)[:300])
            raise
        self.record(name, "artifact", **base, outcome="success", files=len(marker["files"]))
        return layout.version_artifact(self.root, name, version, artifact)

    def artifact(self, name: str, version: str, artifact: str) -> dict | None:
        """The checked marker of a committed version's artifact (``{"files": manifest, ...}``), or None.

        Raises:
            CorruptStore: the marker is not a valid artifact marker.
        """
        check_artifact_name(artifact)
        if not self.is_committed(name, version):
            return None
        uri = layout.artifact_marker(self.root, name, version, artifact)
        obj = self._load_json(uri, f"artifact {artifact!r} marker", missing_ok=True)
        if obj is None:
            return None
        if obj.get("artifact") != artifact or obj.get("version") != version:
            raise CorruptStore(f"{uri}: names {obj.get('artifact')!r} of {obj.get('version')!r}")
        files = self._field(uri, "artifact marker", obj, "files", dict)
        for rel, m in files.items():
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("size"), int)
                or not isinstance(m.get("sha256"), str)
            ):
                raise CorruptStore(f"{uri}: manifest entry {rel!r} has no valid size / sha256")
        return obj

    def artifact_uri(self, name: str, version: str, artifact: str) -> str | None:
        """The URI of a committed version's artifact, or None when it has none (no marker)."""
        if self.artifact(name, version, artifact) is None:
            return None
        return layout.version_artifact(self.root, name, version, artifact)

    def artifacts(self, name: str, version: str) -> list[str]:
        """Names of a committed version's artifacts (those with a marker)."""
        prefix = fs.join(layout.version_root(self.root, name, version), layout.ARTIFACTS_DIR)
        out = []
        for uri in fs.list_files(prefix):
            base = uri.rsplit("/", 1)[-1]
            if base.endswith(".json") and _ARTIFACT_RE.fullmatch(base.removesuffix(".json")):
                out.append(base.removesuffix(".json"))
        return sorted(out)

    def verify_artifacts(self, name: str, version: str) -> None:
        """Checks every artifact of a committed version against its marker (present, sizes, sha256).

        Raises:
            CorruptStore: a file missing, extra, of the wrong size or sha256 (named).
        """
        import hashlib

        for artifact in self.artifacts(name, version):
            manifest = self.artifact(name, version, artifact)["files"]
            base = layout.version_artifact(self.root, name, version, artifact)
            got = self._stat_files(base)
            for rel, m in sorted(manifest.items()):
                where = fs.join(base, rel)
                if got.get(rel) != m["size"]:
                    raise CorruptStore(f"{where}: missing or of the wrong size (artifact {artifact!r})")
                if hashlib.sha256(fs.read_bytes(where)).hexdigest() != m["sha256"]:
                    raise CorruptStore(f"{where}: sha256 does not match artifact {artifact!r} (garbled?)")
            extra = sorted(set(got) - set(manifest))
            if extra:
                raise CorruptStore(f"{fs.join(base, extra[0])}: not in the manifest of artifact {artifact!r}")
