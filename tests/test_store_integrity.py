"""Issue #18 integrity and containment defects of the model store, each reproduced (local and GCS).

Every test here failed before the fix: an overwritten version after a lost counter, publishes and alias
moves without a history record after a crash or a lost GCS response, half-applied deploys reported as
nothing, deploys of corrupt versions, manifest paths leaving the store, names with a trailing newline.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kfloop import deploy, fs, store
from kfloop.store import CorruptStore, InvalidName, ModelStore
from tests.test_store import NAME, make_model_dir


@pytest.fixture(params=["local", "gcs"])
def ms(request, tmp_path):
    if request.param == "local":
        return ModelStore(str(tmp_path / "store"))
    bucket = request.getfixturevalue("gcs_bucket")
    return ModelStore(f"gs://{bucket}/stores/main")


def _digest_tree(ms: ModelStore, version: str) -> dict[str, str]:
    root = fs.join(ms.root, "models", NAME, version)
    return {u[len(root) :]: hashlib.sha256(fs.read_bytes(u)).hexdigest() for u in fs.list_files(root)}


def _write(ms: ModelStore, rel: str, data: bytes) -> str:
    uri = fs.join(ms.root, "models", NAME, rel)
    fs.write_bytes(uri, data)
    return uri


# --------------------------------------------------------------------------------------- immutability
@pytest.mark.parametrize("counter", [None, b'{"next": 1}', b'{"next": 2}'])
def test_lost_or_rewound_counter_never_reuses_a_version(ms, tmp_path, counter):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {"run_id": "r1"})
    v2 = ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {"run_id": "r2"})
    before = {v: _digest_tree(ms, v) for v in (v1, v2)}
    counter_uri = fs.join(ms.root, "models", NAME, "_next_version.json")
    if counter is None:
        if ms.is_gcs:
            b, k = fs.split_gcs(counter_uri)
            fs.gcs_client().bucket(b).blob(k).delete()
        else:
            Path(counter_uri).unlink()
    else:
        fs.write_bytes(counter_uri, counter)
    v3 = ms.publish(NAME, str(make_model_dir(tmp_path, "c")), {"run_id": "r3"})
    assert v3 == "v0003"
    assert {v: _digest_tree(ms, v) for v in (v1, v2)} == before  # committed versions untouched
    assert ms.versions(NAME) == [v1, v2, v3]
    for v, run in ((v1, "r1"), (v2, "r2"), (v3, "r3")):
        assert ms.verify(NAME, v)["run_id"] == run


def test_a_claimed_uncommitted_directory_is_never_reused(ms, tmp_path):
    ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    _write(ms, "v0002/_CLAIM", b'{"version": "v0002"}')  # another publisher is filling v0002
    fs.write_bytes(fs.join(ms.root, "models", NAME, "_next_version.json"), b'{"next": 2}')
    assert ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {}) == "v0003"
    assert ms.versions(NAME) == ["v0001", "v0003"]


def test_model_files_are_write_once(ms, tmp_path):
    ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    uri = fs.join(ms.model_uri(NAME, "v0001"), "saved_model.pb")
    with pytest.raises(FileExistsError):
        fs.write_bytes(uri, b"overwrite", if_generation_match=0)
    assert ms.verify(NAME, "v0001")


# ------------------------------------------------------------------------------ every move recorded
def test_publish_killed_before_its_record_is_still_recorded(ms, tmp_path, monkeypatch):
    real = ModelStore._write_record

    def die_on_publish_record(self, name, rec, rid):
        if rec["event"] == "publish":
            raise KeyboardInterrupt("killed between _COMMITTED and the history record")
        return real(self, name, rec, rid)

    monkeypatch.setattr(ModelStore, "_write_record", die_on_publish_record)
    with pytest.raises(KeyboardInterrupt):
        ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {}, actor="alice")
    monkeypatch.setattr(ModelStore, "_write_record", real)
    assert ms.versions(NAME) == ["v0001"]
    (rec,) = ms.history(NAME)  # shown at once, rebuilt from the commit marker
    assert (rec["event"], rec["version"], rec["actor"], rec["recovered"]) == (
        "publish",
        "v0001",
        "alice",
        True,
    )
    ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {})  # the next publish writes it for good
    recs = ms.history(NAME)
    assert [(r["event"], r["version"]) for r in recs] == [("publish", "v0001"), ("publish", "v0002")]
    assert not any(r.get("recovered") for r in recs)


def test_alias_move_killed_before_its_record_is_still_recorded(ms, tmp_path, monkeypatch):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    v2 = ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {})
    ms.set_alias(NAME, "champion", v1, expected=None)

    def killed(self, name, alias, obj):
        raise KeyboardInterrupt("killed between the alias swap and its history record")

    monkeypatch.setattr(ModelStore, "_record_after_move", killed)
    with pytest.raises(KeyboardInterrupt):
        ms.set_alias(NAME, "champion", v2, expected=v1, reason="promote", action="promote")
    monkeypatch.undo()
    assert ms.get_alias(NAME, "champion") == v2
    moves = [r for r in ms.history(NAME) if r["event"] == "alias"]
    assert [(r["from"], r["to"], r.get("recovered", False)) for r in moves] == [
        (None, v1, False),
        (v1, v2, True),
    ]
    assert ms.previous_champion(NAME) == v1  # rollback sees the unrecorded move
    ms.rollback(NAME)  # the next move of the alias writes the missing record first
    moves = [r for r in ms.history(NAME) if r["event"] == "alias"]
    assert [(r["from"], r["to"]) for r in moves] == [(None, v1), (v1, v2), (v2, v1)]
    assert not any(r.get("recovered") for r in moves)


def test_gcs_lost_response_after_a_successful_alias_write(gcs_bucket, tmp_path, monkeypatch):
    """The alias upload lands but its response is lost: the retry must see its own move, not raise."""
    import requests
    from google.cloud.storage import Blob

    ms = ModelStore(f"gs://{gcs_bucket}/s")
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    real = Blob.upload_from_string
    lost = []

    def lose_alias_response(self, data, *a, **kw):
        real(self, data, *a, **kw)
        if self.name.endswith("aliases/champion.json") and not lost:
            lost.append(self.name)
            raise requests.exceptions.ConnectionError("connection reset after the write")

    monkeypatch.setattr(Blob, "upload_from_string", lose_alias_response)
    rec = ms.set_alias(NAME, "champion", v1, expected=None)
    assert lost and rec["outcome"] == "success" and rec["to"] == v1
    assert ms.get_alias(NAME, "champion") == v1
    moves = [r for r in ms.history(NAME) if r["event"] == "alias"]
    assert [(r["to"], r["outcome"], r.get("recovered", False)) for r in moves] == [(v1, "success", False)]


def test_gcs_write_once_retry_after_lost_response_is_not_a_conflict(gcs_bucket, monkeypatch):
    import requests
    from google.api_core.exceptions import ServiceUnavailable
    from google.cloud.storage import Blob

    real = Blob.upload_from_string
    calls = []

    def flaky(self, data, *a, **kw):
        calls.append(self.name)
        if len(calls) == 1:
            raise ServiceUnavailable("injected 503")
        real(self, data, *a, **kw)
        if len(calls) == 2:
            raise requests.exceptions.ConnectionError("response lost")

    monkeypatch.setattr(fs, "BACKOFF_INITIAL_S", 0.01)
    monkeypatch.setattr(Blob, "upload_from_string", flaky)
    uri = f"gs://{gcs_bucket}/once.json"
    fs.write_bytes(uri, b"one", if_generation_match=0)  # 503, then a write whose response is lost, then 412
    assert len(calls) == 3 and fs.read_bytes(uri) == b"one"
    with pytest.raises(FileExistsError):
        fs.write_bytes(uri, b"two", if_generation_match=0)
    calls.clear()
    fs.write_bytes(f"gs://{gcs_bucket}/plain", b"x")  # no precondition: retried on the 503 as well
    assert fs.read_bytes(f"gs://{gcs_bucket}/plain") == b"x"


def test_gcs_non_transient_errors_are_not_retried(gcs_bucket, monkeypatch):
    from google.api_core.exceptions import Forbidden
    from google.cloud.storage import Blob

    calls = []

    def forbidden(self, *a, **kw):
        calls.append(1)
        raise Forbidden("no")

    monkeypatch.setattr(Blob, "upload_from_string", forbidden)
    with pytest.raises(Forbidden):
        fs.write_bytes(f"gs://{gcs_bucket}/x", b"x")
    assert calls == [1]


# --------------------------------------------------------------------------- idempotent push per run
def test_a_retried_publish_of_the_same_run_reuses_its_version(ms, tmp_path):
    from components.push.push import push
    from tests.test_push import blessing_file

    blessing = blessing_file(tmp_path / "blessing.json", True)
    model = str(make_model_dir(tmp_path, "a"))
    first = push(model, str(blessing), ms.root, NAME, {"run_id": "run-1"})
    again = push(model, str(blessing), ms.root, NAME, {"run_id": "run-1"})  # KFP retried the task
    assert (first.version, first.alias) == (again.version, again.alias) == ("v0001", "champion")
    model_b = str(make_model_dir(tmp_path, "b"))
    other = push(model_b, str(blessing), ms.root, NAME, {"run_id": "run-2"})
    retry = push(model_b, str(blessing), ms.root, NAME, {"run_id": "run-2"})
    assert (other.version, other.alias) == (retry.version, retry.alias) == ("v0002", "canary")
    assert ms.versions(NAME) == ["v0001", "v0002"]
    hist = ms.history(NAME)
    assert [r["version"] for r in hist if r["event"] == "publish"] == ["v0001", "v0002"]
    assert len([r for r in hist if r["event"] == "alias"]) == 2


def test_a_retry_after_a_crashed_publish_of_the_run_publishes_once(ms, tmp_path, monkeypatch):
    real = fs.write_text

    def crash(uri, text, **kw):
        if uri.endswith("/_COMMITTED"):
            raise KeyboardInterrupt
        return real(uri, text, **kw)

    monkeypatch.setattr(store.fs, "write_text", crash)
    model = str(make_model_dir(tmp_path, "a"))
    with pytest.raises(KeyboardInterrupt):
        ms.publish(NAME, model, {"run_id": "run-1"})
    monkeypatch.undo()
    v = ms.publish(NAME, model, {"run_id": "run-1"})
    assert ms.publish(NAME, model, {"run_id": "run-1"}) == v == "v0002"
    assert ms.versions(NAME) == ["v0002"]


# -------------------------------------------------------------------------------------- containment
@pytest.mark.parametrize("bad", ["taxi-tips\n", "../../x", "a/b", "", "Taxi", ".hidden", "x" * 64, None])
def test_model_names_are_fully_matched(ms, tmp_path, bad):
    with pytest.raises(InvalidName):
        store.check_model_name(bad)
    with pytest.raises(InvalidName):
        ms.publish(bad, str(make_model_dir(tmp_path, "a")), {})
    assert ms.models() == []


@pytest.mark.parametrize("bad", ["champion\n", "v0001", "Champ", "a" * 40])
def test_alias_names_are_fully_matched(ms, tmp_path, bad):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    with pytest.raises(InvalidName):
        ms.set_alias(NAME, bad, v1)


def test_version_refs_are_fully_matched_and_bounded(ms, tmp_path):
    ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    assert not store.is_version("v0001\n")
    for ref in ("v" + "9" * 5000, "v0001\n"):
        with pytest.raises(InvalidName) as e:
            ms.resolve(NAME, ref)
        assert len(str(e.value)) < 200 and "\n" not in str(e.value)


@pytest.mark.parametrize("evil", ["../../../../x/secret.txt", "/etc/passwd", "a/../../b", "./x", "a//b"])
def test_fetch_refuses_manifest_paths_outside_the_version(ms, tmp_path, evil):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    meta_uri = fs.join(ms.root, "models", NAME, v1, "metadata.json")
    meta = json.loads(fs.read_text(meta_uri))
    secret = b"secret"
    entry = meta["files"].pop("kfloop_metadata.json")
    meta["files"][evil] = {"size": len(secret), "sha256": hashlib.sha256(secret).hexdigest()}
    assert entry
    fs.write_text(meta_uri, json.dumps(meta))
    (tmp_path / "x").mkdir(exist_ok=True)
    (tmp_path / "x" / "secret.txt").write_bytes(secret)
    work = tmp_path / "deep" / "a" / "b" / "work"
    with pytest.raises(CorruptStore, match="leaves the version directory"):
        ms.fetch(NAME, v1, str(work / v1))
    assert not (work / v1).exists()
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["secret.txt"]


# ------------------------------------------------------------------------------- deploy verification
@pytest.mark.parametrize("damage", ["missing", "truncated", "garbled", "extra"])
def test_deploy_refuses_a_version_whose_files_do_not_match(ms, tmp_path, damage):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    ms.set_alias(NAME, "champion", v1)
    v2 = ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {})
    uri = fs.join(ms.model_uri(NAME, v2), "variables/variables.data-00000-of-00001")
    data = fs.read_bytes(uri)
    if damage == "missing":
        if ms.is_gcs:
            b, k = fs.split_gcs(uri)
            fs.gcs_client().bucket(b).blob(k).delete()
        else:
            Path(uri).unlink()
    elif damage == "truncated":
        fs.write_bytes(uri, data[: len(data) // 2])
    elif damage == "garbled":
        fs.write_bytes(uri, bytes(b ^ 0x5A for b in data))
    else:
        fs.write_bytes(fs.join(ms.model_uri(NAME, v2), "variables/evil.so"), b"x")
    for dry in (True, False):
        with pytest.raises(deploy.DeployError, match=f"refusing to deploy {NAME} {v2}"):
            deploy.deploy(ms.root, NAME, version=v2, canary_percent=0, dry_run=dry)
    assert ms.aliases(NAME) == {"champion": v1}


# ------------------------------------------------------------------------------- multi-alias changes
def test_deploy_that_loses_the_canary_race_reports_what_it_did(tmp_path, monkeypatch):
    """The issue's case: deploy --version v2 --canary-percent 0 while someone re-points the canary."""
    ms = ModelStore(str(tmp_path / "store"))
    v1, v2, v3 = (ms.publish(NAME, str(make_model_dir(tmp_path, t)), {}) for t in "abc")
    ms.set_alias(NAME, "champion", v1)
    ms.set_alias(NAME, "canary", v2)
    real = ModelStore.set_alias

    def racing(self, name, alias, version, **kw):
        if alias == "canary" and version is None:
            real(self, name, "canary", v3)  # another writer, just before our clear
        return real(self, name, alias, version, **kw)

    monkeypatch.setattr(ModelStore, "set_alias", racing)
    out = deploy.deploy(ms.root, NAME, version=v2, canary_percent=0)
    assert out.moves == [
        f"champion {v1} -> {v2}",
        f"canary left at {v3} (moved by another writer, not cleared)",
    ]
    assert "canary left at v0003" in out.summary()
    assert ms.aliases(NAME) == {"champion": v2, "canary": v3}


def test_promote_whose_second_step_fails_says_exactly_what_was_applied(tmp_path, monkeypatch):
    ms = ModelStore(str(tmp_path / "store"))
    v1, v2 = (ms.publish(NAME, str(make_model_dir(tmp_path, t)), {}) for t in "ab")
    ms.set_alias(NAME, "champion", v1)
    ms.set_alias(NAME, "canary", v2)
    real = ModelStore.set_alias

    def broken_disk(self, name, alias, version, **kw):
        if alias == "canary":
            raise store.StoreError("disk full")
        return real(self, name, alias, version, **kw)

    monkeypatch.setattr(ModelStore, "set_alias", broken_disk)
    with pytest.raises(deploy.PartialApply) as e:
        deploy.promote(ms.root, NAME)
    assert e.value.applied == [f"champion {v1} -> {v2}"]
    assert f"applied only: champion {v1} -> {v2}; NOT applied: canary {v2} -> (unset): disk full" in str(
        e.value
    )
    assert ms.aliases(NAME) == {"champion": v2, "canary": v2}


def test_stores_written_by_an_older_kfloop_are_not_reconciled_twice(tmp_path):
    """Old layout: publish records under random names, markers without ``actor``, aliases without ``move``."""
    ms = ModelStore(str(tmp_path / "store"))
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    ms.set_alias(NAME, "champion", v1)
    model = tmp_path / "store" / "models" / NAME
    for p in (model / "history").iterdir():
        rec = json.loads(p.read_text())
        rec.pop("move", None)
        p.unlink()
        (model / "history" / f"{p.name.split('-')[0]}-{rec['event'][:4]}1234.json").write_text(
            json.dumps(rec)
        )
    marker = json.loads((model / v1 / "_COMMITTED").read_text())
    marker.pop("actor"), marker.pop("run_id")
    (model / v1 / "_COMMITTED").write_text(json.dumps(marker))
    alias = json.loads((model / "aliases" / "champion.json").read_text())
    alias.pop("move")
    (model / "aliases" / "champion.json").write_text(json.dumps(alias))
    assert ms.reconcile(NAME) == []
    assert [(r["event"], r.get("recovered", False)) for r in ms.history(NAME)] == [
        ("publish", False),
        ("alias", False),
    ]
    v2 = ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {})
    ms.set_alias(NAME, "champion", v2, expected=v1)
    assert [(r["event"], r.get("version") or r.get("to")) for r in ms.history(NAME)] == [
        ("publish", v1),
        ("alias", v1),
        ("publish", v2),
        ("alias", v2),
    ]


def test_monitoring_records_refuse_a_model_name_that_leaves_the_store(tmp_path):
    """Every writer of monitoring records (monitor, decide, canary, trigger) goes through kfloop.records."""
    from kfloop import records

    root = tmp_path / "store"
    for bad in ("../../x", "taxi-tips\n", "a/b", ".."):
        with pytest.raises(store.InvalidName):
            records.write(str(root), bad, "runs", "r1", {"x": 1})
    assert not (tmp_path / "x").exists() and not root.exists()
    uri = records.write(str(root), "taxi-tips", "runs", "r1", {"x": 1})
    assert records.read_all(str(root), "taxi-tips", "runs", sort_key=str) == [{"x": 1}] and "taxi-tips" in uri
