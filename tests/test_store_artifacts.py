"""Version artifacts (the monitoring reference) go through the store's rules: write-once, recorded, verified."""

from __future__ import annotations

import json

import pytest

from kfloop import fs, layout
from kfloop import reference as R
from kfloop.store import CorruptStore, InvalidName, ModelNotFound, ModelStore, StoreError
from tests.test_store import make_model_dir

NAME = "m"


def _ref_dir(root, tag: str = "a"):
    d = root / f"ref-{tag}"
    d.mkdir()
    (d / "reference.json").write_text(json.dumps({"format": 1, "bounds": {}, "tag": tag}))
    (d / "train_stats.pb").write_bytes(b"stats-" + tag.encode() * 50)
    return d


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store")
    return f"gs://{request.getfixturevalue('gcs_bucket')}/stores/a"


def test_publish_writes_the_reference_before_the_commit_marker_and_records_it(tmp_path, root):
    ms = ModelStore(root)
    ref = _ref_dir(tmp_path)
    v = ms.publish(NAME, str(make_model_dir(tmp_path)), {}, artifacts={layout.REFERENCE: str(ref)})
    assert ms.artifacts(NAME, v) == [layout.REFERENCE]
    uri = R.stored_reference(root, NAME, v)
    assert uri == layout.reference(ms.root, NAME, v) == R.reference_uri(root, NAME, v)
    assert fs.read_text(fs.join(uri, "reference.json")) == (ref / "reference.json").read_text()
    marker = ms.artifact(NAME, v, layout.REFERENCE)
    assert set(marker["files"]) == {"reference.json", "train_stats.pb"}
    (publish,) = [r for r in ms.history(NAME) if r["event"] == "publish"]
    assert publish["artifacts"] == [layout.REFERENCE] and ms.metadata(NAME, v)["artifacts"] == ["reference"]
    # the model's own manifest and fetch are unchanged by the artifact
    assert "reference.json" not in ms.metadata(NAME, v)["files"]
    assert ms.verify(NAME, v)["version"] == v and ms.check(NAME) == []
    # a second write of the reference is refused, and the refusal is recorded
    with pytest.raises(StoreError, match="written already.*write-once"):
        R.store_reference(root, NAME, v, str(_ref_dir(tmp_path, "b")))
    (refused,) = [r for r in ms.history(NAME) if r["event"] == "artifact"]
    assert (refused["outcome"], refused["version"], refused["artifact"]) == ("refused", v, "reference")
    assert fs.read_text(fs.join(uri, "reference.json")) == (ref / "reference.json").read_text()


def test_a_committed_version_gets_its_reference_once_recorded_in_the_history(tmp_path, root):
    ms = ModelStore(root)
    v = ms.publish(NAME, str(make_model_dir(tmp_path)), {})
    assert R.stored_reference(root, NAME, v) is None and ms.artifacts(NAME, v) == []
    uri = R.store_reference(root, NAME, v, str(_ref_dir(tmp_path)), actor="alice")
    assert R.stored_reference(root, NAME, v) == uri
    with pytest.raises(StoreError, match="write-once"):
        R.store_reference(root, NAME, v, str(_ref_dir(tmp_path, "b")))
    recs = [r for r in ms.history(NAME) if r["event"] == "artifact"]
    assert [(r["outcome"], r["actor"]) for r in recs] == [("success", "alice"), ("refused", recs[1]["actor"])]
    assert recs[0]["files"] == 2 and recs[0]["version"] == v
    assert json.loads(fs.read_text(fs.join(uri, "reference.json")))["tag"] == "a"


def test_files_without_the_artifact_marker_are_not_a_reference(tmp_path):
    """What the old push wrote (string surgery beside the model, no marker) is not read as a reference."""
    root = str(tmp_path / "store")
    ms = ModelStore(root)
    v = ms.publish(NAME, str(make_model_dir(tmp_path)), {})
    ref = _ref_dir(tmp_path)
    for p in ref.iterdir():
        fs.write_bytes(fs.join(layout.reference(root, NAME, v), p.name), p.read_bytes())
    assert R.stored_reference(root, NAME, v) is None
    # an interrupted write (files, no marker) is finished by the same content, refused with other content
    with pytest.raises(StoreError, match="other content"):
        ms.put_artifact(NAME, v, layout.REFERENCE, str(_ref_dir(tmp_path, "b")))
    assert ms.put_artifact(NAME, v, layout.REFERENCE, str(ref)) == layout.reference(root, NAME, v)
    assert R.stored_reference(root, NAME, v) is not None


def test_a_garbled_artifact_file_fails_verify_and_check(tmp_path):
    root = str(tmp_path / "store")
    ms = ModelStore(root)
    v = ms.publish(NAME, str(make_model_dir(tmp_path)), {}, artifacts={"reference": str(_ref_dir(tmp_path))})
    stats = tmp_path / "store" / "models" / NAME / v / "reference" / "train_stats.pb"
    stats.chmod(0o644)
    stats.write_bytes(b"X" * stats.stat().st_size)
    with pytest.raises(CorruptStore, match="train_stats.pb: sha256 does not match artifact 'reference'"):
        ms.verify(NAME, v)
    assert any("train_stats.pb" in p for p in ms.check(NAME))


def test_bad_artifact_input_is_refused_before_anything_is_written(tmp_path):
    ms = ModelStore(str(tmp_path / "store"))
    model, ref = str(make_model_dir(tmp_path)), str(_ref_dir(tmp_path))
    with pytest.raises(InvalidName, match="invalid artifact name 'model'"):
        ms.publish(NAME, model, {}, artifacts={"model": ref})
    with pytest.raises(StoreError, match="does not exist"):
        ms.publish(NAME, model, {}, artifacts={"reference": str(tmp_path / "nope")})
    assert ms.versions(NAME) == [] and not (tmp_path / "store" / "models" / NAME / "v0001").exists()
    with pytest.raises(ModelNotFound):
        ms.put_artifact(NAME, "v0001", "reference", ref)
    with pytest.raises(R.ReferenceError_, match="no reference.json"):
        R.store_reference(str(tmp_path / "store"), NAME, "v0001", str(tmp_path))
