"""``kfloop models list|history`` and ``kfloop deploy|promote|rollback`` (local mode, dry-run YAML)."""

from __future__ import annotations

import json

import pytest
import yaml

from kfloop.app import cli
from kfloop.store import ModelStore
from tests.test_store import make_model_dir


def test_cli_flow(tmp_path, capsys):
    root = str(tmp_path / "store")
    ms = ModelStore(root)
    v1, v2 = (
        ms.publish("taxi-tips", str(make_model_dir(tmp_path, t)), {"metrics": {"auc": 0.81}}) for t in "ab"
    )
    assert cli.main(["deploy", "--store", root, "--version", v1]) == 0
    assert cli.main(["deploy", "--store", root, "--version", v2, "--canary-percent", "10"]) == 0
    assert ms.aliases("taxi-tips") == {"champion": v1, "canary": v2}
    capsys.readouterr()

    assert cli.main(["promote", "--store", root, "--mode", "cluster", "--namespace", "ml", "--dry-run"]) == 0
    out = capsys.readouterr()
    isvc = yaml.safe_load(out.out)
    assert isvc["kind"] == "InferenceService" and isvc["metadata"]["namespace"] == "ml"
    assert "--model-ref=v0002" in isvc["spec"]["predictor"]["model"]["args"] and "would move" in out.err
    assert ms.get_alias("taxi-tips", "champion") == v1  # dry run

    assert cli.main(["promote", "--store", root]) == 0
    assert cli.main(["rollback", "--store", root, "--reason", "bad"]) == 0
    assert ms.get_alias("taxi-tips", "champion") == v1
    capsys.readouterr()
    assert cli.main(["models", "list", "--store", root, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["aliases"]) for r in rows] == [(v1, ["champion"]), (v2, [])]
    assert cli.main(["models", "history", "--store", root]) == 0
    text = capsys.readouterr().out
    assert "rollback  champion  v0002 -> v0001  success" in text and "bad" in text


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("KFLOOP_STORE_URI", raising=False)
    with pytest.raises(SystemExit, match="no model store"):
        cli.main(["models", "list"])
    with pytest.raises(SystemExit, match=r"kfloop models list: model store '.*/typo' does not exist"):
        cli.main(["models", "list", "--store", str(tmp_path / "typo")])
    with pytest.raises(SystemExit, match=r"kfloop rollback: model store '.*/typo' does not exist"):
        cli.main(["rollback", "--store", str(tmp_path / "typo")])
    with pytest.raises(SystemExit, match=r"kfloop promote: .*no canary"):
        cli.main(["promote", "--store", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"kfloop deploy: .*no committed version"):
        cli.main(["deploy", "--store", str(tmp_path)])
    ms = ModelStore(str(tmp_path))
    ms.publish("taxi-tips", str(make_model_dir(tmp_path)), {})
    ms.publish("taxi-tips", str(make_model_dir(tmp_path, "b")), {})
    ms.set_alias("taxi-tips", "champion", "v0001")
    with pytest.raises(SystemExit, match=r"kfloop deploy: refusing a canary .*RawDeployment"):
        cli.main(["deploy", "--store", str(tmp_path), "--version", "v0002", "--raw-deployment"])
