"""The audit history: write-once records of publishes, alias moves and rejections; reconciliation after a crash."""

from __future__ import annotations

import contextlib
import json
import uuid

from kfloop import fs, layout
from kfloop.store.names import (
    CorruptStore,
    _check_version,
    _stamp,
    check_model_name,
    default_actor,
    now_iso,
)


class _History:
    """Appending, reading and reconciling a model's history records."""

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
        rec = {
            "time": marker.get("committed_at") or now_iso(),
            "event": "publish",
            "version": marker["version"],
            "actor": marker.get("actor") or "unknown",
            "files": marker.get("files"),
            "run_id": marker.get("run_id"),
        }
        if marker.get("artifacts"):
            rec["artifacts"] = marker["artifacts"]
        return rec

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
