"""Aliases: compare-and-swap moves (``champion``, ``canary``), resolution of refs, the champion lineage, rollback."""

from __future__ import annotations

from pathlib import Path

from kfloop import fs, layout
from kfloop.store.names import (
    _ALIAS_RE,
    _VERSION_RE,
    ANY,
    CHAMPION,
    AliasConflict,
    CorruptStore,
    ModelNotFound,
    _check_alias,
    _check_ref,
    check_model_name,
    default_actor,
    is_version,
    now_iso,
)


class _Aliases:
    """Reading, resolving and moving aliases."""

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
