"""The bucket layout: every path under a store root (a local directory or ``gs://bucket/prefix``) is built here.

One root holds the model store, the prediction and feedback log, the monitoring records and the shadow
canary's log. Nothing else in kfloop spells these folder names; the functions below only build paths (no
I/O), with :func:`kfloop.fs.join`, so they work for local and ``gs://`` roots alike.

==========================================================================  ====================================
Path under ``<root>``                                                       Function (writer)
==========================================================================  ====================================
``models/<name>/<version>/_CLAIM``                                          :func:`version_claim` (store)
``models/<name>/<version>/model/...``                                       :func:`version_model` (store)
``models/<name>/<version>/metadata.json``                                   :func:`version_metadata` (store)
``models/<name>/<version>/_COMMITTED``                                      :func:`version_commit` (store)
``models/<name>/<version>/<artifact>/...`` (e.g. ``reference/``)            :func:`version_artifact` (store)
``models/<name>/<version>/_artifacts/<artifact>.json``                      :func:`artifact_marker` (store)
``models/<name>/aliases/<alias>.json``                                      :func:`alias` (store)
``models/<name>/history/<time>-<id>.json``                                  :func:`history_record` (store)
``models/<name>/runs/<run-hash>.json``                                      :func:`run_index` (store)
``models/<name>/_next_version.json``                                        :func:`version_counter` (store)
``models/<name>/.lock`` (local stores only)                                 :func:`model_lock` (store)
``predictions/<name>/date=YYYY-MM-DD/<writer>-<seq>.parquet``               :func:`log_partition` (predlog)
``feedback/<name>/date=YYYY-MM-DD/<writer>-<seq>.parquet``                  :func:`log_partition` (predlog)
``predictions/<name>/_staging/<job-key>/<attempt>/date=YYYY-MM-DD/...``     :func:`batch_staging` (predlog)
``predictions/<name>/_commits/<job-key>.json``                              :func:`batch_commit` (predlog)
``monitoring/<name>/<kind>/<id>.json`` (runs, decisions, triggers, ...)     :func:`record` (records)
``shadow/predictions/<name>/...`` (a log root of its own)                   :func:`shadow_root`
``shadow/mirrored/<name>/date=YYYY-MM-DD/<id>.parquet``                     :func:`mirrored` (canary mirror)
==========================================================================  ====================================

The monitoring reference of a version (``reference.json``, ``train_stats.pb``, ``eval_stats.pb``) is the
version artifact :data:`REFERENCE` (:func:`reference`), written once through the store
(:meth:`kfloop.store.ModelStore.publish` with ``artifacts=`` or :meth:`~kfloop.store.ModelStore.put_artifact`).

Every argument that becomes a path segment is checked to be one (not empty, no ``/``, not ``.`` / ``..``,
no NUL): a :class:`LayoutError` otherwise. Names are validated against their own rules (model names,
aliases, versions) by their owners (:mod:`kfloop.store`, :mod:`kfloop.predlog`) before they get here.
Size: one cohesive table of paths (a few lines and a docstring per path).
Only the standard library and :mod:`kfloop.fs` are imported (this module also runs in the serving env).
"""

from __future__ import annotations

import datetime as _dt

from kfloop import fs

MODELS = "models"
PREDICTIONS = "predictions"
FEEDBACK = "feedback"
LOG_KINDS = (PREDICTIONS, FEEDBACK)
MONITORING = "monitoring"
SHADOW = "shadow"
MIRRORED = "mirrored"
#: Human approvals of promotions: who may write this prefix may approve (README, IAM).
APPROVALS = "approvals"

#: Files and folders of a model and its versions.
MODEL_DIR = "model"
METADATA_FILE = "metadata.json"
CLAIM_MARKER = "_CLAIM"
COMMIT_MARKER = "_COMMITTED"
ARTIFACTS_DIR = "_artifacts"
ALIASES_DIR = "aliases"
HISTORY_DIR = "history"
RUNS_DIR = "runs"
COUNTER_FILE = "_next_version.json"
LOCK_FILE = ".lock"

#: The monitoring reference: a version artifact.
REFERENCE = "reference"

#: Batch jobs in the prediction log.
STAGING = "_staging"
COMMITS = "_commits"

#: Monitoring record kinds (``monitoring/<name>/<kind>/``).
RUNS = "runs"
DECISIONS = "decisions"
TRIGGERS = "triggers"
BACKFILLS = "backfills"
CANARY = "canary"
EVENTS = "events"
RECORD_KINDS = (RUNS, DECISIONS, TRIGGERS, BACKFILLS, CANARY, EVENTS)


class LayoutError(ValueError):
    """A path part that is not a single segment (it could leave its folder); the message names it."""


def _seg(value: str, what: str) -> str:
    s = str(value)
    if not s or "/" in s or "\\" in s or "\x00" in s or s in (".", ".."):
        raise LayoutError(f"{what} {value!r} is not a single path segment")
    return s


def _rel(value: str, what: str) -> str:
    """A relative folder of one or more segments (``shadow``, ``logs/shadow``)."""
    s = str(value).strip("/")
    for part in s.split("/"):
        _seg(part, what)
    return s


def date_partition(folder: str, day: _dt.date) -> str:
    """``<folder>/date=YYYY-MM-DD`` (the hive partition of one UTC day).

    Args:
        folder: The folder holding the partitions.
        day: The UTC date.

    Returns:
        The partition's URI.
    """
    return fs.join(folder, f"date={day.isoformat()}")


# ------------------------------------------------------------------------------------------- model store
def models_root(root: str) -> str:
    """``<root>/models``: every model of the store.

    Args:
        root: Store root (local directory or ``gs://bucket/prefix``).

    Returns:
        The folder's URI.
    """
    return fs.join(root, MODELS)


def model_root(root: str, name: str) -> str:
    """``<root>/models/<name>``: one model's versions, aliases, history and counters.

    Args:
        root: Store root.
        name: Model name.

    Returns:
        The folder's URI.
    """
    return fs.join(root, MODELS, _seg(name, "model name"))


def version_root(root: str, name: str, version: str) -> str:
    """``<root>/models/<name>/<version>``: one version's directory.

    Args:
        root: Store root.
        name: Model name.
        version: Version id (``v0001``).

    Returns:
        The folder's URI.
    """
    return fs.join(model_root(root, name), _seg(version, "version"))


def version_model(root: str, name: str, version: str) -> str:
    """``<root>/models/<name>/<version>/model``: the SavedModel (KServe's ``storageUri``).

    Args:
        root: Store root.
        name: Model name.
        version: Version id.

    Returns:
        The folder's URI.
    """
    return fs.join(version_root(root, name, version), MODEL_DIR)


def version_metadata(root: str, name: str, version: str) -> str:
    """``<root>/models/<name>/<version>/metadata.json``.

    Args:
        root: Store root.
        name: Model name.
        version: Version id.

    Returns:
        The file's URI.
    """
    return fs.join(version_root(root, name, version), METADATA_FILE)


def version_claim(root: str, name: str, version: str) -> str:
    """``<root>/models/<name>/<version>/_CLAIM``: written first, write-once (the version is taken).

    Args:
        root: Store root.
        name: Model name.
        version: Version id.

    Returns:
        The file's URI.
    """
    return fs.join(version_root(root, name, version), CLAIM_MARKER)


def version_commit(root: str, name: str, version: str) -> str:
    """``<root>/models/<name>/<version>/_COMMITTED``: written last (readers see only committed versions).

    Args:
        root: Store root.
        name: Model name.
        version: Version id.

    Returns:
        The file's URI.
    """
    return fs.join(version_root(root, name, version), COMMIT_MARKER)


def version_artifact(root: str, name: str, version: str, artifact: str) -> str:
    """``<root>/models/<name>/<version>/<artifact>``: a write-once folder kept with a version.

    Args:
        root: Store root.
        name: Model name.
        version: Version id.
        artifact: Artifact name (e.g. :data:`REFERENCE`).

    Returns:
        The folder's URI.
    """
    return fs.join(version_root(root, name, version), _seg(artifact, "artifact"))


def artifact_marker(root: str, name: str, version: str, artifact: str) -> str:
    """``<root>/models/<name>/<version>/_artifacts/<artifact>.json``: the artifact's manifest, written last.

    Args:
        root: Store root.
        name: Model name.
        version: Version id.
        artifact: Artifact name.

    Returns:
        The file's URI.
    """
    return fs.join(version_root(root, name, version), ARTIFACTS_DIR, f"{_seg(artifact, 'artifact')}.json")


def reference(root: str, name: str, version: str) -> str:
    """``<root>/models/<name>/<version>/reference``: the version's monitoring reference (an artifact).

    Args:
        root: Store root.
        name: Model name.
        version: Version id.

    Returns:
        The folder's URI.
    """
    return version_artifact(root, name, version, REFERENCE)


def aliases_dir(root: str, name: str) -> str:
    """``<root>/models/<name>/aliases``.

    Args:
        root: Store root.
        name: Model name.

    Returns:
        The folder's URI.
    """
    return fs.join(model_root(root, name), ALIASES_DIR)


def alias(root: str, name: str, alias_name: str) -> str:
    """``<root>/models/<name>/aliases/<alias>.json``: the alias object (compare-and-swap).

    Args:
        root: Store root.
        name: Model name.
        alias_name: Alias (``champion``, ``canary``).

    Returns:
        The file's URI.
    """
    return fs.join(aliases_dir(root, name), f"{_seg(alias_name, 'alias')}.json")


def history_dir(root: str, name: str) -> str:
    """``<root>/models/<name>/history``.

    Args:
        root: Store root.
        name: Model name.

    Returns:
        The folder's URI.
    """
    return fs.join(model_root(root, name), HISTORY_DIR)


def history_record(root: str, name: str, stamp: str, record_id: str) -> str:
    """``<root>/models/<name>/history/<stamp>-<id>.json``: one write-once history record.

    Args:
        root: Store root.
        name: Model name.
        stamp: The record's time without separators (``20261123T120000123456Z``).
        record_id: The record's id (a move id, ``publish-<version>``, a random id).

    Returns:
        The file's URI.
    """
    return fs.join(
        history_dir(root, name), f"{_seg(stamp, 'time stamp')}-{_seg(record_id, 'record id')}.json"
    )


def runs_dir(root: str, name: str) -> str:
    """``<root>/models/<name>/runs``: which version each pipeline run published.

    Args:
        root: Store root.
        name: Model name.

    Returns:
        The folder's URI.
    """
    return fs.join(model_root(root, name), RUNS_DIR)


def run_index(root: str, name: str, run_hash: str) -> str:
    """``<root>/models/<name>/runs/<run-hash>.json``.

    Args:
        root: Store root.
        name: Model name.
        run_hash: Hash of the run id.

    Returns:
        The file's URI.
    """
    return fs.join(runs_dir(root, name), f"{_seg(run_hash, 'run hash')}.json")


def version_counter(root: str, name: str) -> str:
    """``<root>/models/<name>/_next_version.json``: the version counter (a hint; compare-and-swap).

    Args:
        root: Store root.
        name: Model name.

    Returns:
        The file's URI.
    """
    return fs.join(model_root(root, name), COUNTER_FILE)


def model_lock(root: str, name: str) -> str:
    """``<root>/models/<name>/.lock``: the lock file of a local store's compare-and-swap.

    Args:
        root: Store root (local).
        name: Model name.

    Returns:
        The file's path.
    """
    return fs.join(model_root(root, name), LOCK_FILE)


# ------------------------------------------------------------------------------------ prediction log
def log_model_root(root: str, kind: str, name: str) -> str:
    """``<root>/<kind>/<name>``: one model's prediction or feedback log.

    Args:
        root: Log root (the store root, or :func:`shadow_root`).
        kind: :data:`PREDICTIONS` or :data:`FEEDBACK`.
        name: Model name.

    Returns:
        The folder's URI.

    Raises:
        LayoutError: ``kind`` is neither.
    """
    if kind not in LOG_KINDS:
        raise LayoutError(f"log kind {kind!r} is not one of {', '.join(LOG_KINDS)}")
    return fs.join(root, kind, _seg(name, "model name"))


def predictions(root: str, name: str) -> str:
    """``<root>/predictions/<name>``.

    Args:
        root: Log root.
        name: Model name.

    Returns:
        The folder's URI.
    """
    return log_model_root(root, PREDICTIONS, name)


def feedback(root: str, name: str) -> str:
    """``<root>/feedback/<name>``.

    Args:
        root: Log root.
        name: Model name.

    Returns:
        The folder's URI.
    """
    return log_model_root(root, FEEDBACK, name)


def log_partition(root: str, kind: str, name: str, day: _dt.date) -> str:
    """``<root>/<kind>/<name>/date=YYYY-MM-DD``: one UTC day of a model's log.

    Args:
        root: Log root.
        kind: :data:`PREDICTIONS` or :data:`FEEDBACK`.
        name: Model name.
        day: The UTC date.

    Returns:
        The folder's URI.
    """
    return date_partition(log_model_root(root, kind, name), day)


def batch_staging(root: str, name: str, job_key: str, attempt: str) -> str:
    """``<root>/predictions/<name>/_staging/<job-key>/<attempt>``: a batch attempt's rows (no reader lists it).

    Args:
        root: Log root.
        name: Model name.
        job_key: The job's file-name-safe key.
        attempt: The attempt id.

    Returns:
        The folder's URI.
    """
    return fs.join(predictions(root, name), STAGING, _seg(job_key, "job key"), _seg(attempt, "attempt"))


def batch_commits(root: str, name: str) -> str:
    """``<root>/predictions/<name>/_commits``.

    Args:
        root: Log root.
        name: Model name.

    Returns:
        The folder's URI.
    """
    return fs.join(predictions(root, name), COMMITS)


def batch_commit(root: str, name: str, job_key: str) -> str:
    """``<root>/predictions/<name>/_commits/<job-key>.json``: names a batch job's committed attempt.

    Args:
        root: Log root.
        name: Model name.
        job_key: The job's file-name-safe key.

    Returns:
        The file's URI.
    """
    return fs.join(batch_commits(root, name), f"{_seg(job_key, 'job key')}.json")


# --------------------------------------------------------------------------------- monitoring records
def records_dir(root: str, name: str, kind: str) -> str:
    """``<root>/monitoring/<name>/<kind>``: one series of monitoring records.

    Args:
        root: Store root.
        name: Model name.
        kind: Record kind (:data:`RECORD_KINDS`: runs, decisions, triggers, backfills, canary).

    Returns:
        The folder's URI.
    """
    return fs.join(root, MONITORING, _seg(name, "model name"), _seg(kind, "record kind"))


def record(root: str, name: str, kind: str, record_id: str) -> str:
    """``<root>/monitoring/<name>/<kind>/<id>.json``: one monitoring record.

    Args:
        root: Store root.
        name: Model name.
        kind: Record kind.
        record_id: The record's id.

    Returns:
        The file's URI.
    """
    return fs.join(records_dir(root, name, kind), f"{_seg(record_id, 'record id')}.json")


# ------------------------------------------------------------------------------------------ approvals
def approval(root: str, name: str, version: str, part: str) -> str:
    """``<root>/approvals/<name>/<version>/<part>.json``: a promotion's approval request or decision.

    Args:
        root: Store root.
        name: Model name.
        version: The canary version awaiting promotion.
        part: ``request`` (written by the canary step) or ``decision`` (``kfloop approve|reject``).

    Returns:
        The file's URI.
    """
    return fs.join(
        root, APPROVALS, _seg(name, "model name"), _seg(version, "version"), f"{_seg(part, 'part')}.json"
    )


# -------------------------------------------------------------------------------------- shadow canary
def shadow_root(root: str, shadow_log: str = SHADOW) -> str:
    """``<root>/shadow``: the shadow canary's log root (it holds ``predictions/``, ``feedback/``, ``mirrored/``).

    Args:
        root: Store root.
        shadow_log: The shadow folder (:attr:`kfloop.config.CanaryConfig.shadow_log`).

    Returns:
        The folder's URI.
    """
    return fs.join(root, _rel(shadow_log, "shadow log folder"))


def mirrored(root: str, name: str, shadow_log: str = SHADOW) -> str:
    """``<root>/shadow/mirrored/<name>``: the mirror's records of what it forwarded to the shadow canary.

    Args:
        root: Store root.
        name: Model name.
        shadow_log: The shadow folder.

    Returns:
        The folder's URI (date partitions below it: :func:`date_partition`).
    """
    return fs.join(shadow_root(root, shadow_log), MIRRORED, _seg(name, "model name"))


def version_of_model_uri(uri: str) -> tuple[str, str] | None:
    """``(name, version)`` of a version's SavedModel URI (:func:`version_model`), else None.

    Args:
        uri: Any URI; only ``.../models/<name>/<version>/model`` (a trailing ``/`` allowed) matches.

    Returns:
        The model name and version the URI names, or None.
    """
    parts = str(uri).rstrip("/").split("/")
    if len(parts) >= 4 and parts[-1] == MODEL_DIR and parts[-4] == MODELS and parts[-3] and parts[-2]:
        return parts[-3], parts[-2]
    return None
