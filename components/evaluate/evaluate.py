"""Evaluate: TFMA on the eval split, challenger vs champion, and a blessing that always explains itself.

One TFMA run evaluates the challenger and (when there is one) the champion on the same examples with
the same slicing: TFMA's multi-model mode (two ``ModelSpec``s, the champion ``is_baseline=True``)
reads the data once and computes the per-slice differences itself, so the two models can never be
compared on different rows or different slice definitions.

The blessing is decided here, in plain Python over TFMA's metrics, so that every check becomes a
reason naming metric, slice, threshold, challenger value and champion value (TFX's Evaluator writes
no blessing without thresholds and never says why it refused). TFMA's own validator runs the
overall thresholds too; its verdict is recorded as ``tfma_validation_ok`` as a cross-check.

The dataset spec gives the label and the slices: passed in, or read from the challenger's model directory
(``spec.yaml``), so a store version or a model published with ``kfloop models publish`` is evaluated
as it is. Checks per task (``spec.task``; thresholds from :class:`kfloop.config.EvaluationConfig`):

* binary: ``auc_floor`` (value): the challenger's overall AUC must reach it. Always applied.
  ``max_auc_regression`` (change): with a champion, a *paired* comparison on the eval rows both models
  scored (:func:`kfloop.paired.compare`: DeLong interval of challenger AUC - champion AUC, policy of
  :class:`kfloop.config.ComparisonConfig` with ``margin = max_auc_regression``): ``better`` or
  ``non_inferior`` passes, ``worse`` fails, ``undecided`` passes and says so (the eval rows are fixed, so
  the canary decides on live traffic). The reason shows both AUCs, the interval and the rows. TFMA's
  point-estimate change threshold (same epsilon) stays in the TFMA config as the cross-check.
  ``max_slice_auc_regression`` (change): with a champion, the same per slice of the spec's ``slices``, but
  only for slices with at least ``min_slice_examples`` examples and both classes present; other slices
  are reported as not judged (never a silent veto).
* regression (TFMA: MAE, MSE / RMSE, mean label, mean prediction and their calibration per slice; R² ours
  from the scored rows): ``min_r2`` (value); the paired interval of the MSE change (squared label units,
  margin ``regression_margin`` x the champion's MSE); ``max_slice_rmse_increase`` per judged slice.
* multiclass (TFMA: accuracy, log loss, the arg-max confusion matrix giving macro-F1 and per-class recall
  in ``spec.classes`` order): ``max_log_loss_ratio`` (value, x the log loss of the training class
  frequencies); the paired interval of the log-loss change (nats, margin ``multiclass_margin``);
  ``max_slice_accuracy_drop`` per judged slice.

Modules by job: :mod:`.inputs` (data, models, slices), :mod:`.tfma_run` (the TFMA run),
:mod:`.paired_comparison` (the paired interval), :mod:`.policy` (the blessing policy), :mod:`.eval_report`
(HTML report and text table), :mod:`.result` (the result types). This module runs them in order.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import tempfile
from pathlib import Path

from components.evaluate.eval_report import comparison_table, render_html
from components.evaluate.inputs import (
    champion_version_of,
    check_config,
    check_saved_model,
    load_eval_frame,
    model_spec,
    slice_keys,
)
from components.evaluate.paired_comparison import (
    add_r2,
    comparison_config,
    paired_overall,
    predict_examples,
    slice_members,
)
from components.evaluate.policy import decide
from components.evaluate.result import (
    CHALLENGER,
    CHAMPION,
    METRICS,
    OVERALL,
    TASK_METRICS,
    UNITS,
    Evaluation,
    EvaluationError,
    SliceRow,
)
from components.evaluate.tfma_run import eval_config, run_tfma
from kfloop import contract, fs
from kfloop import spec as kspec
from kfloop.config import EvaluationConfig

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "METRICS",
    "OVERALL",
    "Evaluation",
    "EvaluationError",
    "SliceRow",
    "champion_version_of",
    "check_config",
    "check_saved_model",
    "comparison_table",
    "decide",
    "eval_config",
    "evaluate",
    "load_eval_frame",
    "paired_overall",
    "predict_examples",
    "render_html",
    "run_tfma",
]


def _json_ready(obj) -> dict:
    return json.loads(json.dumps(_nan_to_none(obj)))


def _nan_to_none(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def evaluate(
    eval_uri: str,
    model_uri: str,
    champion_uri: str = "",
    *,
    config: EvaluationConfig = EvaluationConfig(),
    spec=None,
    blessing_path: str | None = None,
    report_path: str | None = None,
    workdir: str | None = None,
) -> Evaluation:
    """Evaluates a challenger SavedModel (and the champion, if given) on an eval Dataset CSV with TFMA.

    Args:
        eval_uri: Eval Dataset CSV (local or ``gs://``) with the spec's label column.
        model_uri: The challenger model directory (local or ``gs://``): a training output, a store
            version's ``model_uri`` or a model published with ``kfloop models publish``.
        champion_uri: The champion SavedModel directory, e.g. ``store.model_uri(name, version)``;
            ``""`` = no champion (first model): only value thresholds apply.
        config: Thresholds.
        spec: The :class:`kfloop.spec.DatasetSpec` (or its path / URI / YAML text): label and slices.
            None: the challenger's stored ``spec.yaml``.
        blessing_path: Where to write the blessing JSON (always written when given, atomically).
        report_path: Where to write the self-contained HTML report.
        workdir: Scratch directory for the TFRecord and TFMA output (default: a temp dir).

    Returns:
        The :class:`Evaluation` (blessing dict, slices, ROC, confusion matrix).

    Raises:
        EvaluationError: bad input; nothing is written then.
    """
    check_config(config)
    if spec is not None and not isinstance(spec, kspec.DatasetSpec):
        try:
            spec = kspec.load(spec)
        except (kspec.SpecError, FileNotFoundError) as e:
            raise EvaluationError(f"spec: {e}") from None
    if spec is not None:
        slice_keys(spec)
        load_eval_frame(eval_uri, spec)  # bad data fails before any copy or TFMA work
    args = (spec, eval_uri, model_uri, champion_uri, config)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="kfloop-evaluate-") as tmp:
            return _evaluate(*args, Path(tmp), blessing_path, report_path)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return _evaluate(*args, Path(workdir), blessing_path, report_path)


def _training_class_prior(model_dir: str, spec, labels) -> dict:
    """The class frequencies the multiclass value floor compares with, and their log loss on ``labels``.

    The training split's (``train_class_rates`` in the model's ``kfloop_metadata.json``, as the kfloop
    trainer writes it) when the model directory has them for K classes; else the eval rows' own.
    """
    import numpy as np

    from kfloop import metrics as km

    k = spec.n_classes
    rates, source = None, "eval"
    try:
        meta = json.loads(fs.read_text(contract.metadata_uri(model_dir)))
        found = (meta.get("data") or {}).get("train_class_rates")
        if isinstance(found, list) and len(found) == k and sum(found) > 0:
            rates, source = [float(x) for x in found], "training"
    except (FileNotFoundError, json.JSONDecodeError, TypeError, ValueError, AttributeError):
        pass
    if rates is None:
        counts = np.bincount(labels.astype(int), minlength=k)
        rates = (counts / counts.sum()).tolist()
    return {"source": source, "rates": rates, "log_loss": km.prior_log_loss(rates, labels)}


def _units(task: str, label: str) -> dict:
    """Units of the task's metrics (``label units`` named after the label column)."""
    names = set(TASK_METRICS[task]) | {"mse"}
    out = {m: UNITS[m].replace("label units", f"label units ({label})") for m in names if m in UNITS}
    if task == "binary":
        out.update({"mean_label": "fraction of rows", "mean_prediction": "probability", "auc": "AUC"})
        out.pop("mse", None)
    if task == "regression":
        out["r2"] = "unitless (1 - MSE / variance of the label)"
    if task == "multiclass":
        out.update({"macro_f1": "unitless", "recall[*]": "fraction of the class's rows"})
    return out


def _evaluate(spec, eval_uri, model_uri, champion_uri, config, scratch: Path, blessing_path, report_path):
    import warnings

    import numpy as np
    import tensorflow as tf

    from kfloop import metrics as km

    model_dir = fs.local_copy(model_uri, str(scratch / "challenger") if fs.is_gcs(model_uri) else None)
    check_saved_model(model_dir, "model", None)
    if spec is None:
        spec = model_spec(model_dir, f"model {model_uri!r}")
    elif fs.exists(contract.spec_uri(model_dir)):
        trained_on = model_spec(model_dir, f"model {model_uri!r}")
        if (trained_on.input_names, trained_on.label.name) != (spec.input_names, spec.label.name):
            raise EvaluationError(
                f"model {model_uri!r} was trained on spec {trained_on.name!r} (inputs "
                f"{', '.join(trained_on.input_names)}; label {trained_on.label.name!r}), not on spec "
                f"{spec.name!r}"
            )
        if (trained_on.task, trained_on.classes) != (spec.task, spec.classes):
            raise EvaluationError(
                f"model {model_uri!r} was trained for task {trained_on.task.value}"
                f"{' with classes ' + str(list(trained_on.classes)) if trained_on.classes else ''}, spec "
                f"{spec.name!r} is task {spec.task.value}"
                f"{' with classes ' + str(list(spec.classes)) if spec.classes else ''}"
            )
    task = spec.task.value
    key = contract.output_key(spec)
    check_saved_model(model_dir, "model", key)
    slicing = slice_keys(spec)
    frame, dropped = load_eval_frame(eval_uri, spec)
    champion_dir = None
    if champion_uri:
        champion_dir = fs.local_copy(
            champion_uri, str(scratch / "champion") if fs.is_gcs(champion_uri) else None
        )
        check_saved_model(champion_dir, "champion", key)

    examples_path = str(scratch / "eval.tfrecord")
    examples = contract.to_examples(frame, spec, with_label=True)
    with tf.io.TFRecordWriter(examples_path) as w:
        for ex in examples:
            w.write(ex)

    # Both models score the same rows TFMA evaluates: our metrics of the task and the paired interval.
    labels = frame[spec.label.name].to_numpy(dtype=np.float64 if task == "regression" else np.int64)
    challenger_out = predict_examples(model_dir, examples, key)
    champion_out = predict_examples(champion_dir, examples, key) if champion_dir is not None else None
    try:
        eval_metrics = km.task_metrics(task, labels, challenger_out, spec.classes)
        champion_eval_metrics = (
            km.task_metrics(task, labels, champion_out, spec.classes) if champion_out is not None else None
        )
    except km.MetricsError as e:
        raise EvaluationError(f"model outputs ({key!r}) on the eval rows: {e}") from None
    prior = _training_class_prior(model_dir, spec, labels) if task == "multiclass" else None
    cmp_cfg = comparison_config(config)
    value_bound = margin = None  # TFMA's own thresholds of the task (the cross-check), point estimates
    if task == "regression":
        var = float(np.var(labels))
        value_bound = (1.0 - config.min_r2) * var if var > 0 else None  # MSE at R² = min_r2
        margin = cmp_cfg.regression_margin
    elif task == "multiclass":
        value_bound = config.max_log_loss_ratio * prior["log_loss"] if prior["log_loss"] is not None else None
        margin = cmp_cfg.multiclass_margin

    with warnings.catch_warnings():
        # numpy's divide-by-zero warnings from TFMA's confusion matrices on single-class slices.
        warnings.simplefilter("ignore", RuntimeWarning)
        slices, rocs, confusion, tfma_ok = run_tfma(
            examples_path,
            model_dir,
            champion_dir,
            config,
            str(scratch / "tfma"),
            label=spec.label.name,
            slices=slicing,
            task=task,
            output_key=key,
            classes=spec.classes,
            value_bound=value_bound,
            margin=margin,
        )
    if task == "regression":
        add_r2(slices, slice_members(examples, slicing), labels, challenger_out, champion_out)
    paired_result = None
    if champion_dir is not None:
        paired_result = paired_overall(labels, challenger_out, champion_out, config, task)
    reasons = decide(
        slices,
        config,
        champion_dir is not None,
        paired_result,
        task=task,
        eval_metrics=eval_metrics,
        prior=prior,
    )
    overall = slices[0]
    # Round-tripped through JSON so that the returned dict equals the file (tuples -> lists, NaN -> null).
    blessing = _json_ready(
        {
            "blessed": all(r["passed"] for r in reasons),
            "task": task,
            "classes": list(spec.classes),
            "reasons": reasons,
            "champion_version": champion_version_of(champion_uri) if champion_uri else None,
            "eval_metrics": eval_metrics,
            "champion_eval_metrics": champion_eval_metrics,
            "units": _units(task, spec.label.name),
            "metrics": dict(overall.challenger),
            "champion_metrics": dict(overall.champion) if overall.champion is not None else None,
            "confusion_matrix": confusion,
            "class_prior": prior,
            "slices": [
                {
                    "slice": s.slice,
                    "feature": s.feature,
                    "value": s.value,
                    "examples": s.examples,
                    "positives": s.positives,
                    "challenger": s.challenger,
                    "champion": s.champion,
                }
                for s in slices
            ],
            "thresholds": dataclasses.asdict(config),
            "slicing": [list(keys) for keys in slicing],
            "spec_name": spec.name,
            "spec_digest": spec.digest(),
            "model_uri": model_uri,
            "champion_uri": champion_uri or None,
            "eval_uri": eval_uri,
            "eval_rows": len(frame),
            "rows_without_label": dropped,
            "tfma_validation_ok": tfma_ok,
            "paired": paired_result,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
    )
    result = Evaluation(
        blessing=blessing,
        slices=slices,
        roc=rocs.get(CHALLENGER, {"fpr": [], "tpr": [], "thresholds": []}),
        confusion_matrix=confusion,
        champion_roc=rocs.get(CHAMPION),
    )
    if report_path:
        fs.write_text(report_path, render_html(result))
    if blessing_path:
        fs.write_text(blessing_path, json.dumps(blessing, indent=2, sort_keys=False) + "\n")
    return result
