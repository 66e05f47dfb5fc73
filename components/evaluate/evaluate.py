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
as it is. Checks (thresholds from :class:`kfloop.config.EvaluationConfig`):

* ``auc_floor`` (value): the challenger's overall AUC must reach it. Always applied.
* ``max_auc_regression`` (change): with a champion, a *paired* comparison on the eval rows both models
  scored (:func:`kfloop.paired.compare`: DeLong interval of challenger AUC - champion AUC, policy of
  :class:`kfloop.config.ComparisonConfig` with ``margin = max_auc_regression``): ``better`` or
  ``non_inferior`` passes, ``worse`` fails, ``undecided`` passes and says so (the eval rows are fixed, so
  the canary decides on live traffic). The reason shows both AUCs, the interval and the rows. TFMA's
  point-estimate change threshold (same epsilon) stays in the TFMA config as the cross-check.
* ``max_slice_auc_regression`` (change): with a champion, the same per slice of the spec's
  ``slices``, but only for slices with at least ``min_slice_examples`` examples and both
  classes present; other slices are reported as not judged (never a silent veto).

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
from components.evaluate.paired_comparison import paired_overall, predict_examples
from components.evaluate.policy import decide
from components.evaluate.result import (
    CHALLENGER,
    CHAMPION,
    METRICS,
    OVERALL,
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


def _evaluate(spec, eval_uri, model_uri, champion_uri, config, scratch: Path, blessing_path, report_path):
    import warnings

    import tensorflow as tf

    model_dir = fs.local_copy(model_uri, str(scratch / "challenger") if fs.is_gcs(model_uri) else None)
    check_saved_model(model_dir, "model")
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
    slicing = slice_keys(spec)
    frame, dropped = load_eval_frame(eval_uri, spec)
    champion_dir = None
    if champion_uri:
        champion_dir = fs.local_copy(
            champion_uri, str(scratch / "champion") if fs.is_gcs(champion_uri) else None
        )
        check_saved_model(champion_dir, "champion")

    examples_path = str(scratch / "eval.tfrecord")
    examples = contract.to_examples(frame, spec, with_label=True)
    with tf.io.TFRecordWriter(examples_path) as w:
        for ex in examples:
            w.write(ex)

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
        )
    paired_result = None
    if champion_dir is not None:
        # The same rows TFMA just evaluated, scored by both models: the paired interval of the change.
        labels = frame[spec.label.name].astype(int).to_numpy()
        paired_result = paired_overall(
            labels, predict_examples(model_dir, examples), predict_examples(champion_dir, examples), config
        )
    reasons = decide(slices, config, champion_dir is not None, paired_result)
    overall = slices[0]
    # Round-tripped through JSON so that the returned dict equals the file (tuples -> lists, NaN -> null).
    blessing = _json_ready(
        {
            "blessed": all(r["passed"] for r in reasons),
            "reasons": reasons,
            "champion_version": champion_version_of(champion_uri) if champion_uri else None,
            "metrics": dict(overall.challenger),
            "champion_metrics": dict(overall.champion) if overall.champion is not None else None,
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
