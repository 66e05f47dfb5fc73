"""The evaluate component's interface (its kfp.local run is part of tests/test_pipeline_local.py)."""

from components.evaluate.component import evaluate_op
from kfloop import config


def test_component_defaults_follow_config():
    spec = evaluate_op.component_spec
    params = spec.inputs
    cfg = config.EvaluationConfig()
    assert params["auc_floor"].default == cfg.auc_floor
    assert params["max_auc_regression"].default == cfg.max_auc_regression
    assert params["min_slice_examples"].default == cfg.min_slice_examples
    assert params["max_slice_auc_regression"].default == cfg.max_slice_auc_regression
    for name in ("min_r2", "max_log_loss_ratio", "max_slice_rmse_increase", "max_slice_accuracy_drop"):
        assert params[name].default == getattr(cfg, name), name
    assert "slice_features" not in params  # the slices are the spec's
    assert params["spec"].default == ""  # "" = the spec stored with the challenger
    assert params["champion_uri"].default == ""
    assert set(spec.outputs) >= {"blessing", "metrics", "classification", "report", "blessed"}
