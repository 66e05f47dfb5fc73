"""A model trained by the pipeline env (TF 2.16) loads in the serving env (TF 2.21) and predicts from raw features."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TAXI_SPEC_PATH

pytestmark = pytest.mark.serving

ROOT = Path(__file__).resolve().parents[2]

#: Runs in the pipeline env: ingest the real CSV, train a small model, predict 300 live rows with it.
_TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from kfloop.ingest import ingest
    from kfloop import datasets
    from kfloop import spec as S
    from training_image.trainer import HParams, train
    import tensorflow as tf

    source, out, spec = sys.argv[1], sys.argv[2], S.load(sys.argv[3])
    paths = {k: f"{out}/{k}.csv" for k in ("train", "eval", "live")}
    ingest(source, spec, "2015-01-01", paths["train"], paths["eval"], paths["live"])
    hp = HParams(epochs=2, batch_size=128, learning_rate=0.01, hidden_units=(16,), early_stopping_patience=0)
    result = train(paths["train"], paths["eval"], f"{out}/model", hp, spec=spec)
    rows = datasets.read_dataset(paths["live"], spec).head(300)
    sig = tf.saved_model.load(f"{out}/model").signatures["predict_raw"]
    probs = sig(**{k: tf.constant(v) for k, v in datasets.encode(rows, spec).items()})["probability"].numpy()
    json.dump({"probability": probs.tolist(), "tf": tf.__version__, "auc": result.metrics["auc"]},
              open(f"{out}/pipeline_predictions.json", "w"))
    """
)


@pytest.fixture(scope="module")
def pipeline_trained(taxi_csv, tmp_path_factory):
    python = os.environ.get("KFLOOP_PIPELINE_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip(f"pipeline env python {python!r} not found (set KFLOOP_PIPELINE_PYTHON)")
    out = tmp_path_factory.mktemp("pipeline-trained")
    proc = subprocess.run(
        [python, "-c", _TRAIN_SCRIPT, str(taxi_csv), str(out), TAXI_SPEC_PATH],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_pipeline_model_loads_and_predicts_raw_features_in_serving_env(pipeline_trained, taxi_spec):
    import tensorflow as tf

    from kfloop import datasets

    expected = json.loads((pipeline_trained / "pipeline_predictions.json").read_text())
    assert expected["tf"].startswith("2.16") and tf.__version__ != expected["tf"]  # really two TF versions

    rows = datasets.read_dataset(str(pipeline_trained / "live.csv"), taxi_spec).head(300)
    loaded = tf.saved_model.load(str(pipeline_trained / "model"))
    raw = loaded.signatures["predict_raw"](
        **{k: tf.constant(v) for k, v in datasets.encode(rows, taxi_spec).items()}
    )
    probs = raw["probability"].numpy()
    assert probs.shape == (300,) and probs.dtype == np.float32
    np.testing.assert_allclose(
        probs, np.asarray(expected["probability"], dtype=np.float32), rtol=1e-5, atol=1e-6
    )
    assert probs.std() > 0.05  # a real model separates rows; a constant one would not

    by_examples = loaded.signatures["serving_default"](
        examples=tf.constant(datasets.to_examples(rows, taxi_spec))
    )
    np.testing.assert_allclose(by_examples["probability"].numpy(), probs, rtol=1e-6, atol=1e-7)

    meta = json.loads((pipeline_trained / "model" / "kfloop_metadata.json").read_text())
    assert meta["libraries"]["tensorflow"] == expected["tf"]
