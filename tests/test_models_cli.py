"""``kfloop models check|publish|push`` through the real CLI: exit codes and one line per problem."""

import json
from pathlib import Path

import pytest

from kfloop import contract
from kfloop import spec as S
from kfloop.app import cli
from kfloop.store import ModelStore
from tests import byo_module_model as B
from tests.conftest import TAXI_SPEC_PATH


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # a command's one-line message, or argparse's usage error
        rc = e.code if isinstance(e.code, int) else 1
        if isinstance(e.code, str):
            print(e.code, file=__import__("sys").stderr)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def module_model(tmp_path_factory):
    """A hand-written module model of the synthetic churn spec, and that spec's files."""
    d = tmp_path_factory.mktemp("models_cli")
    paths = B.write_splits(d, train_rows=400, eval_rows=100)
    paths["model"] = str(d / "module")
    B.export(S.load(paths["spec"]), B.synthetic_frame(400, seed=1), paths["model"], steps=50)
    return paths


def test_the_trained_taxi_model_passes_the_check(trained_model, capsys):
    rc, out, err = run(["models", "check", trained_model, "--spec", TAXI_SPEC_PATH], capsys)
    assert (rc, err) == (0, "") and "follows the model contract for spec 'taxi-tips' (16 inputs)" in out


def test_check_against_the_wrong_spec_lists_every_problem(trained_model, module_model, capsys):
    rc, _, err = run(["models", "check", trained_model, "--spec", module_model["spec"]], capsys)
    lines = err.strip().splitlines()
    assert rc == 1 and all(
        line.startswith("kfloop models check: signature 'predict_raw': ") for line in lines
    )
    assert sum("no input for feature" in line for line in lines) == 5  # the churn spec's five features
    assert sum("is not a feature of the spec" in line for line in lines) == 16  # the taxi model's inputs


def test_bad_spec_and_missing_directory_are_one_line(module_model, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(module_model["spec"]).read_text().replace("kind: boolean", "kind: boolish"))
    rc, _, err = run(["models", "check", module_model["model"], "--spec", str(bad)], capsys)
    assert rc == 2 and err.count("\n") == 1 and "columns[4].kind" in err and "boolish" in err
    rc, _, err = run(["models", "check", str(tmp_path / "nope"), "--spec", module_model["spec"]], capsys)
    assert (
        rc == 1
        and err
        == f"kfloop models check: {tmp_path / 'nope'}: not a SavedModel directory (no saved_model.pb)\n"
    )


def test_publish_replaces_the_directory_s_own_spec_and_metadata(module_model, tmp_path, capsys):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(module_model["model"], src)
    (src / contract.METADATA_FILE).write_text('{"from": "elsewhere"}')
    (src / contract.SCHEMA_FILE).write_text("# the exporter's own schema\n")
    store_uri = tmp_path / "store"
    store_uri.mkdir()
    argv = ["models", "publish", str(src), "--spec", module_model["spec"], "--store", str(store_uri)]
    rc, out, err = run([*argv, "--model", "churn-byo"], capsys)
    assert (rc, err) == (0, "") and out.startswith("published churn-byo v0001 (no alias)")
    assert "kfloop models push v0001" in out
    ms = ModelStore(str(store_uri))
    version_dir = Path(ms.model_uri("churn-byo", "v0001"))
    meta = json.loads((version_dir / contract.METADATA_FILE).read_text())
    assert meta["source"] == "published" and "from" not in meta
    assert (version_dir / contract.SCHEMA_FILE).read_text() == "# the exporter's own schema\n"  # kept
    assert meta["schema_sha256"] == contract.sha256_of(str(version_dir / contract.SCHEMA_FILE))
    assert contract.read_spec(str(version_dir)) == S.load(module_model["spec"])
    assert ms.aliases("churn-byo") == {}
    assert (src / contract.METADATA_FILE).read_text() == '{"from": "elsewhere"}'  # the source is untouched


def test_publish_and_push_refusals(module_model, tmp_path, capsys):
    argv = ["models", "publish", module_model["model"], "--spec", module_model["spec"]]
    rc, _, err = run([*argv, "--store", ""], capsys)
    assert rc == 1 and err.startswith("kfloop models publish: no model store") and err.count("\n") == 1
    store_uri = tmp_path / "store"
    store_uri.mkdir()
    rc, _, err = run([*argv, "--store", str(store_uri), "--schema", str(tmp_path / "none.pbtxt")], capsys)
    assert rc == 2 and err == f"kfloop models publish: --schema {tmp_path / 'none.pbtxt'}: does not exist\n"
    blessing = tmp_path / "b.json"
    blessing.write_text(json.dumps({"blessed": True, "reasons": [], "champion_version": None, "metrics": {}}))
    push = [
        "models",
        "push",
        "v0007",
        "--blessing",
        str(blessing),
        "--store",
        str(store_uri),
        "--name",
        "x-y",
    ]
    rc, _, err = run(push, capsys)
    assert (
        rc == 1
        and err == f"kfloop models push: version 'v0007': no committed version of 'x-y' in {store_uri}\n"
    )
    assert ModelStore(str(store_uri)).versions("churn-demo") == []
