"""The model store against a local directory and a real fake-gcs-server: atomic publish, CAS aliases,
audited history, rollback."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from kfloop import fs, store
from kfloop.store import AliasConflict, ModelNotFound, ModelStore, StoreError

NAME = "taxi-tips"


def make_model_dir(root: Path, tag: str = "a") -> Path:
    """A small SavedModel-shaped directory (the store copies bytes; it never parses the model)."""
    d = root / f"model-{tag}"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"pb-" + tag.encode() * 100)
    (d / "variables" / "variables.index").write_bytes(b"index-" + tag.encode())
    (d / "variables" / "variables.data-00000-of-00001").write_bytes(bytes(range(256)) * 40)
    (d / "kfloop_metadata.json").write_text(json.dumps({"tag": tag}))
    return d


@pytest.fixture(params=["local", "gcs"])
def ms(request, tmp_path):
    """A ModelStore on a local directory, and one on a fresh fake-gcs-server bucket."""
    if request.param == "local":
        return ModelStore(str(tmp_path / "store"))
    bucket = request.getfixturevalue("gcs_bucket")
    return ModelStore(f"gs://{bucket}/stores/main")


def test_fake_gcs_enforces_if_generation_match(gcs_bucket):
    from google.api_core.exceptions import PreconditionFailed

    b = fs.gcs_client().bucket(gcs_bucket)
    b.blob("x").upload_from_string(b"1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        b.blob("x").upload_from_string(b"2", if_generation_match=0)
    blob = b.blob("x")
    blob.reload()
    b.blob("x").upload_from_string(b"3", if_generation_match=blob.generation)
    with pytest.raises(PreconditionFailed):  # stale generation
        b.blob("x").upload_from_string(b"4", if_generation_match=blob.generation)
    assert b.blob("x").download_as_bytes() == b"3"


def test_publish_layout_versions_and_fetch(ms, tmp_path):
    src = make_model_dir(tmp_path, "a")
    v1 = ms.publish(NAME, str(src), {"metrics": {"auc": 0.8}, "run_id": "r1"})
    v2 = ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {"run_id": "r2"})
    assert (v1, v2) == ("v0001", "v0002")
    assert ms.versions(NAME) == [v1, v2]
    assert ms.models() == [NAME]
    meta = ms.metadata(NAME, v1)
    assert meta["run_id"] == "r1" and meta["metrics"]["auc"] == 0.8 and meta["version"] == v1
    assert set(meta["files"]) == {
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
        "kfloop_metadata.json",
    }
    uri = ms.model_uri(NAME, v1)
    assert uri == fs.join(ms.root, "models", NAME, v1, "model")
    assert fs.exists(fs.join(ms.root, "models", NAME, v1, "_COMMITTED"))
    assert fs.read_bytes(fs.join(uri, "saved_model.pb")) == (src / "saved_model.pb").read_bytes()

    dest = Path(ms.fetch(NAME, v1, str(tmp_path / "fetched" / v1)))
    for p in src.rglob("*"):
        if p.is_file():
            assert (dest / p.relative_to(src)).read_bytes() == p.read_bytes()
    assert ms.fetch(NAME, v1, str(dest)) == str(dest)  # a complete copy is reused
    with pytest.raises(StoreError, match="does not hold this model"):
        ms.fetch(NAME, v2, str(dest))
    assert [r["version"] for r in ms.history(NAME) if r["event"] == "publish"] == [v1, v2]


def test_interrupted_publish_is_invisible(ms, tmp_path, monkeypatch):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    real_write = store.fs.write_text

    def crash_before_marker(uri, text, **kw):
        if uri.endswith("/_COMMITTED"):
            raise KeyboardInterrupt("killed before the commit marker")
        return real_write(uri, text, **kw)

    monkeypatch.setattr(store.fs, "write_text", crash_before_marker)
    with pytest.raises(KeyboardInterrupt):
        ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {})
    monkeypatch.setattr(store.fs, "write_text", real_write)

    # The files of v0002 are there, its marker is not: readers do not see it.
    assert fs.list_files(ms.model_uri(NAME, "v0002"))
    assert ms.versions(NAME) == [v1]
    assert ms.resolve(NAME, "latest") == v1
    with pytest.raises(ModelNotFound, match="v0002"):
        ms.resolve(NAME, "v0002")
    with pytest.raises(ModelNotFound):
        ms.set_alias(NAME, "champion", "v0002")
    with pytest.raises(ModelNotFound):
        ms.fetch(NAME, "v0002", str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()
    # The next publish takes a fresh version and is visible.
    assert ms.publish(NAME, str(make_model_dir(tmp_path, "c")), {}) == "v0003"
    assert ms.versions(NAME) == [v1, "v0003"]


def test_alias_cas_and_history(ms, tmp_path):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    v2 = ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {})
    assert ms.get_alias(NAME, "champion") is None
    with pytest.raises(ModelNotFound, match="champion"):
        ms.resolve(NAME)
    ms.set_alias(NAME, "champion", v1, expected=None, reason="first", actor="alice")
    assert ms.resolve(NAME) == v1 and ms.resolve(NAME, v2) == v2
    rec = ms.alias_record(NAME, "champion")
    assert rec["version"] == v1 and rec["updated_at"] and rec["actor"] == "alice"
    with pytest.raises(AliasConflict, match=r"expected None, found 'v0001'"):
        ms.set_alias(NAME, "champion", v2, expected=None, reason="stale", actor="bob")
    assert ms.get_alias(NAME, "champion") == v1
    ms.set_alias(NAME, "canary", v2, reason="new", actor="carol")
    assert ms.aliases(NAME) == {"champion": v1, "canary": v2}
    ms.set_alias(NAME, "canary", None, expected=v2, reason="clear")
    assert ms.get_alias(NAME, "canary") is None and ms.aliases(NAME) == {"champion": v1}

    hist = [r for r in ms.history(NAME) if r["event"] == "alias"]
    assert [(r["alias"], r["from"], r["to"], r["outcome"], r["actor"]) for r in hist[:3]] == [
        ("champion", None, v1, "success", "alice"),
        ("champion", v1, v2, "conflict", "bob"),
        ("canary", None, v2, "success", "carol"),
    ]
    assert all(r["time"] for r in hist) and hist[1]["reason"] == "stale"


def test_concurrent_promotions_one_winner(ms, tmp_path):
    v1 = ms.publish(NAME, str(make_model_dir(tmp_path, "a")), {})
    v2 = ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {})
    v3 = ms.publish(NAME, str(make_model_dir(tmp_path, "c")), {})
    ms.set_alias(NAME, "champion", v1, expected=None)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def promote(version):
        barrier.wait()
        try:
            ms.set_alias(NAME, "champion", version, expected=v1, reason="promote", actor=f"a-{version}")
            results[version] = "won"
        except AliasConflict as e:
            results[version] = e

    threads = [threading.Thread(target=promote, args=(v,)) for v in (v2, v3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [v for v, r in results.items() if r == "won"]
    losers = [r for r in results.values() if isinstance(r, AliasConflict)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert ms.get_alias(NAME, "champion") == winners[0]
    assert losers[0].expected == v1 and losers[0].actual == winners[0]
    attempts = [r for r in ms.history(NAME) if r["event"] == "alias" and r["reason"] == "promote"]
    assert sorted(r["outcome"] for r in attempts) == ["conflict", "success"]
    assert {r["to"] for r in attempts} == {v2, v3}


def test_rollback_restores_previous_champions(ms, tmp_path):
    vs = [ms.publish(NAME, str(make_model_dir(tmp_path, t)), {}) for t in "abc"]
    with pytest.raises(ModelNotFound, match="no champion"):
        ms.rollback(NAME)
    for v in vs:
        ms.set_alias(NAME, "champion", v, action="promote")
    assert ms.champion_lineage(NAME) == vs
    rec = ms.rollback(NAME, reason="bad canary")
    assert (rec["from"], rec["to"], rec["action"]) == (vs[2], vs[1], "rollback")
    assert ms.get_alias(NAME, "champion") == vs[1]
    ms.rollback(NAME)
    assert ms.get_alias(NAME, "champion") == vs[0]
    with pytest.raises(ModelNotFound, match="no earlier champion"):
        ms.rollback(NAME)
    # A promotion after rollbacks starts a new lineage on top.
    ms.set_alias(NAME, "champion", vs[2], action="promote")
    assert ms.previous_champion(NAME) == vs[0]


def test_bad_inputs_are_named(tmp_path):
    ms = ModelStore(str(tmp_path / "s"))
    with pytest.raises(StoreError, match="invalid model name 'Bad Name'"):
        ms.publish("Bad Name", str(make_model_dir(tmp_path)), {})
    with pytest.raises(StoreError, match="does not exist"):
        ms.publish(NAME, str(tmp_path / "missing"), {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="is empty"):
        ms.publish(NAME, str(tmp_path / "empty"), {})
    (tmp_path / "notsm").mkdir()
    (tmp_path / "notsm" / "x.txt").write_text("x")
    with pytest.raises(StoreError, match="no saved_model.pb"):
        ms.publish(NAME, str(tmp_path / "notsm"), {})
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        ms.publish(NAME, str(make_model_dir(tmp_path, "b")), {"x": object()})
    assert ms.versions(NAME) == []  # nothing half-written
    with pytest.raises(StoreError, match="invalid alias"):
        ms.get_alias(NAME, "v0001")
    with pytest.raises(StoreError, match="invalid version"):
        ms.model_uri(NAME, "latest")
    with pytest.raises(StoreError, match="empty"):
        ModelStore("")
