"""Fixture: one small-but-good taxi model, trained once per test session on the ``taxi_split`` fixture."""

from __future__ import annotations

import pytest

#: Hyperparameters of the session model: the defaults, capped at a few epochs (eval AUC ~0.95, ~10 s).
FIXTURE_HPARAMS = {"epochs": 8, "early_stopping_patience": 2}


@pytest.fixture(scope="session")
def trained_model(taxi_split, tmp_path_factory):
    """Directory (str) of a SavedModel trained on ``taxi_split["train"]``, early-stopped on ``["eval"]``.

    It follows the SavedModel contract: ``serving_default`` (``examples``) and ``predict_raw``
    signatures with output ``probability``, and ``kfloop_metadata.json`` beside (its ``metrics``
    hold the eval ``auc`` and ``loss``). Read-only: copy it before changing anything.
    """
    from training_image.trainer import HParams, train

    model_dir = tmp_path_factory.mktemp("trained_model") / "model"
    train(taxi_split["train"], taxi_split["eval"], str(model_dir), HParams(**FIXTURE_HPARAMS))
    return str(model_dir)
