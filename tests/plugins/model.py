"""Fixture: one small-but-good taxi model, trained once per test session on the ``taxi_split`` fixture."""

from __future__ import annotations

import os

import pytest

#: Hyperparameters of the session model: the defaults, capped at a few epochs (eval AUC ~0.95, ~10 s).
FIXTURE_HPARAMS = {"epochs": 8, "early_stopping_patience": 2}


@pytest.fixture(scope="session")
def trained_model(taxi_split, tmp_path_factory):
    """Directory (str) of a SavedModel trained on ``taxi_split["train"]``, early-stopped on ``["eval"]``.

    It follows the SavedModel contract: ``serving_default`` (``examples``) and ``predict_raw``
    signatures with output ``probability``, and ``kfloop_metadata.json`` beside (its ``metrics``
    hold the eval ``auc`` and ``loss``), the taxi example's ``spec.yaml`` and ``schema.pbtxt``. Read-only: copy it before changing anything.
    """
    from tests.conftest import TAXI_SPEC_PATH
    from training_image.trainer import HParams, train

    schema = os.path.join(os.path.dirname(TAXI_SPEC_PATH), "schema.pbtxt")
    model_dir = tmp_path_factory.mktemp("trained_model") / "model"
    train(
        taxi_split["train"],
        taxi_split["eval"],
        str(model_dir),
        HParams(**FIXTURE_HPARAMS),
        spec=TAXI_SPEC_PATH,
        schema_uri=schema,
    )
    return str(model_dir)
