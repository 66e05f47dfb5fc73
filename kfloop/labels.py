"""The read side's label policy and the provenance of the labels a decision used.

**Policy**: the feedback log may hold more than one label for the same ``(request_id, row)`` (a client
retry, a second labeler, an attacker). The first label by arrival time is kept; a later label that says
the same is a repeat, one that says otherwise is a *conflict*: counted and recorded, never used. Keeping
the first (not the last) means that a label, once it has arrived, cannot be overwritten by whoever sends
the next one: a decision already taken on it stays reproducible from the log, and a contradiction shows
up as a number in the decision record instead of silently changing the labels.

**Provenance** (:class:`Provenance`): every decision step (monitor run, canary verdict, trigger decision)
records the labelled rows it used, the feedback files it read, the conflicts it ignored and, when the
feedback log has a ``labeler`` column, who labelled them.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

#: The optional feedback column naming who sent a label (read only if the log schema has it).
LABELER = "labeler"


def feedback_columns(schema) -> list[str]:
    """The feedback columns the join reads: key, label, arrival time and, if present, the labeler."""
    cols = ["request_id", "row", "label", "timestamp"]
    return [*cols, LABELER] if LABELER in schema.names else cols


@dataclasses.dataclass
class Provenance:
    """Where the labels of one decision came from (JSON-ready via :meth:`as_dict`)."""

    labelled_rows: int = 0
    feedback_files: int = 0
    feedback_rows: int = 0
    conflicts: int = 0
    repeats: int = 0
    labelers: collections.Counter | None = None

    def add(self, other: Provenance) -> None:
        """Adds another part's counts (e.g. one hash bucket of the monitor's join)."""
        self.feedback_rows += other.feedback_rows
        self.conflicts += other.conflicts
        self.repeats += other.repeats
        if other.labelers is not None:
            self.labelers = (self.labelers or collections.Counter()) + other.labelers

    def as_dict(self) -> dict:
        out = {
            "labelled_rows": self.labelled_rows,
            "feedback_files": self.feedback_files,
            "feedback_rows": self.feedback_rows,
            "conflicts": self.conflicts,
            "repeats": self.repeats,
            "policy": "first label by arrival kept; later different labels counted as conflicts, unused",
        }
        if self.labelers is not None:
            out["labelers"] = dict(sorted(self.labelers.items()))
        return out


def first_labels(frame, prov: Provenance | None = None):
    """The first label per ``(request_id, row)`` by arrival time, counting repeats and conflicts.

    Args:
        frame: A pandas frame with ``request_id``, ``row``, ``label``, ``ts`` (arrival, any sortable
            number) and optionally ``labeler``.
        prov: Counts are added to it (``feedback_rows``, ``conflicts``, ``repeats``, ``labelers`` of the
            kept labels).

    Returns:
        The frame with one row per key (the first arrival; ties keep file order).
    """
    prov = prov if prov is not None else Provenance()
    prov.feedback_rows += len(frame)
    if len(frame) == 0:
        return frame
    f = frame.sort_values("ts", kind="stable")
    dup = f.duplicated(["request_id", "row"], keep="first").to_numpy()
    kept = f[~dup]
    if dup.any():
        first = kept.set_index(["request_id", "row"])["label"]
        later = f[dup]
        firsts = first.reindex(list(zip(later["request_id"], later["row"], strict=True))).to_numpy()
        differ = int(np.sum(later["label"].to_numpy() != firsts))
        prov.conflicts += differ
        prov.repeats += int(dup.sum()) - differ
    if LABELER in kept.columns:
        who = kept[LABELER].fillna("(none)").astype(str)
        prov.labelers = (prov.labelers or collections.Counter()) + collections.Counter(who.tolist())
    return kept
