"""Evaluate: TFMA on the eval split, challenger vs champion, and a blessing that always explains itself.

One TFMA run evaluates the challenger and (when there is one) the champion on the same examples with
the same slicing: TFMA's multi-model mode (two ``ModelSpec``s, the champion ``is_baseline=True``)
reads the data once and computes the per-slice differences itself, so the two models can never be
compared on different rows or different slice definitions.

The blessing is decided here, in plain Python over TFMA's metrics, so that every check becomes a
reason naming metric, slice, threshold, challenger value and champion value (TFX's Evaluator writes
no blessing without thresholds and never says why it refused). TFMA's own validator runs the
overall thresholds too; its verdict is recorded as ``tfma_validation_ok`` as a cross-check.

Checks (thresholds from :class:`kfloop.config.EvaluationConfig`):

* ``auc_floor`` (value): the challenger's overall AUC must reach it. Always applied.
* ``max_auc_regression`` (change): with a champion, a *paired* comparison on the eval rows both models
  scored (:func:`kfloop.paired.compare`: DeLong interval of challenger AUC - champion AUC, policy of
  :class:`kfloop.config.ComparisonConfig` with ``margin = max_auc_regression``): ``better`` or
  ``non_inferior`` passes, ``worse`` fails, ``undecided`` passes and says so (the eval rows are fixed, so
  the canary decides on live traffic). The reason shows both AUCs, the interval and the rows. TFMA's
  point-estimate change threshold (same epsilon) stays in the TFMA config as the cross-check.
* ``max_slice_auc_regression`` (change): with a champion, the same per slice of
  ``slice_features``, but only for slices with at least ``min_slice_examples`` examples and both
  classes present; other slices are reported as not judged (never a silent veto).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
import tempfile
from pathlib import Path

from kfloop import datasets, fs
from kfloop import features as F
from kfloop.config import EvaluationConfig

#: Our metric name -> TFMA metric class. Order = order in tables and reports.
METRICS: dict[str, str] = {
    "example_count": "ExampleCount",
    "auc": "AUC",
    "pr_auc": "AUCPrecisionRecall",
    "binary_accuracy": "BinaryAccuracy",
    "precision": "Precision",
    "recall": "Recall",
    "calibration": "Calibration",
    "mean_label": "MeanLabel",
    "mean_prediction": "MeanPrediction",
}
_TFMA_NAME = {
    "example_count": "example_count",
    "auc": "auc",
    "pr_auc": "auc_precision_recall",
    "binary_accuracy": "binary_accuracy",
    "precision": "precision",
    "recall": "recall",
    "calibration": "calibration",
    "mean_label": "mean_label",
    "mean_prediction": "mean_prediction",
}
#: Model names inside the TFMA run.
CHALLENGER, CHAMPION = "candidate", "baseline"
#: Name of the overall slice in reasons and tables.
OVERALL = "Overall"
#: Thresholds of the ROC curve (ConfusionMatrixPlot) and of the confusion matrix.
ROC_THRESHOLDS = 100
DECISION_THRESHOLD = 0.5


class EvaluationError(ValueError):
    """Bad input (eval data, model, champion, thresholds); the message names the field or path."""


@dataclasses.dataclass
class SliceRow:
    """Metrics of one slice for the challenger and (optionally) the champion."""

    slice: str
    feature: str | None
    value: str | None
    challenger: dict[str, float]
    champion: dict[str, float] | None

    @property
    def examples(self) -> int:
        return int(self.challenger.get("example_count", 0))

    @property
    def positives(self) -> int:
        return round(self.challenger.get("mean_label", 0.0) * self.examples)

    def diff(self, metric: str) -> float | None:
        if self.champion is None:
            return None
        return _sub(self.challenger.get(metric), self.champion.get(metric))


@dataclasses.dataclass
class Evaluation:
    """Result of :func:`evaluate`.

    Attributes:
        blessing: The blessing dict (the JSON written to ``blessing_path``).
        slices: Per-slice metrics, overall first.
        roc: Challenger's overall ROC curve: ``{"fpr": [...], "tpr": [...], "thresholds": [...]}``.
        confusion_matrix: Challenger's overall confusion matrix at 0.5: ``[[tn, fp], [fn, tp]]``.
        champion_roc: The champion's ROC curve (None without a champion).
    """

    blessing: dict
    slices: list[SliceRow]
    roc: dict[str, list[float]]
    confusion_matrix: list[list[int]]
    champion_roc: dict[str, list[float]] | None = None

    @property
    def blessed(self) -> bool:
        return bool(self.blessing["blessed"])


def _sub(a, b):
    if a is None or b is None:
        return None
    return a - b


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 2):
        return str(int(v))
    return f"{v:.4f}"


# ----------------------------------------------------------------------------- inputs


def check_config(config: EvaluationConfig) -> None:
    """Raises EvaluationError for thresholds out of range, naming the field."""
    if not 0.0 <= config.auc_floor <= 1.0:
        raise EvaluationError(f"auc_floor must be in [0, 1], got {config.auc_floor}")
    for name in ("max_auc_regression", "max_slice_auc_regression"):
        v = getattr(config, name)
        if not 0.0 <= v <= 1.0:
            raise EvaluationError(f"{name} must be in [0, 1], got {v}")
    if config.min_slice_examples < 1:
        raise EvaluationError(f"min_slice_examples must be >= 1, got {config.min_slice_examples}")
    for name in config.slice_features:
        if name not in {f.name for f in F.MODEL_FEATURES}:
            raise EvaluationError(f"slice feature {name!r} is not a model feature")


def load_eval_frame(eval_uri: str):
    """Reads an eval Dataset CSV and checks its label column.

    Returns:
        ``(frame, dropped)``: rows with a label, and the number of rows dropped for a missing label.

    Raises:
        EvaluationError: missing file / columns, label column ``big_tipper`` missing or not 0/1, no rows.
    """
    import pandas as pd

    try:
        frame = datasets.read_dataset(eval_uri)
    except FileNotFoundError:
        raise EvaluationError(f"eval data {eval_uri!r} does not exist") from None
    except pd.errors.EmptyDataError:
        raise EvaluationError(f"eval data {eval_uri!r} is empty") from None
    except ValueError as e:
        raise EvaluationError(f"eval data {eval_uri!r}: {e}") from None
    label = F.LABEL.name
    if label not in frame.columns:
        raise EvaluationError(
            f"eval data {eval_uri!r} has no label column {label!r} (columns: {', '.join(frame.columns)})"
        )
    missing = [f.name for f in F.MODEL_FEATURES if f.name not in frame.columns]
    if missing:
        raise EvaluationError(f"eval data {eval_uri!r} lacks feature column(s): {', '.join(missing)}")
    has_label = frame[label].notna()
    bad = has_label & ~frame[label].isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise EvaluationError(
            f"eval data {eval_uri!r}: label {label!r} must be 0 or 1, got {frame[label].iloc[row]!r} "
            f"(CSV line {row + 2})"
        )
    kept = frame[has_label].reset_index(drop=True)
    if kept.empty:
        raise EvaluationError(f"eval data {eval_uri!r} has no rows with a {label!r} label")
    return kept, int((~has_label).sum())


def check_saved_model(path: str, what: str) -> None:
    """Checks that ``path`` is a SavedModel with the kfloop ``serving_default`` signature.

    Reads ``saved_model.pb`` only (no graph loading), so a wrong directory fails fast and clearly.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(path) / "saved_model.pb"
    if not Path(path).exists():
        raise EvaluationError(f"{what} {path!r} does not exist")
    if not pb.is_file():
        raise EvaluationError(f"{what} {path!r} is not a SavedModel directory (no saved_model.pb)")
    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString(pb.read_bytes())
    except Exception as e:  # protobuf's DecodeError
        raise EvaluationError(f"{what} {path!r}: unreadable saved_model.pb ({e})") from None
    sigs = sm.meta_graphs[0].signature_def if sm.meta_graphs else {}
    if "serving_default" not in sigs:
        raise EvaluationError(f"{what} {path!r} has no 'serving_default' signature (has: {', '.join(sigs)})")
    sig = sigs["serving_default"]
    if list(sig.inputs) != ["examples"] or "probability" not in sig.outputs:
        raise EvaluationError(
            f"{what} {path!r}: serving_default must take 'examples' and return 'probability' "
            f"(takes {list(sig.inputs)}, returns {list(sig.outputs)})"
        )


def champion_version_of(champion_uri: str) -> str | None:
    """The store version in a model-store URI ``.../models/<name>/<version>/model``, else None."""
    m = re.search(r"/models/[^/]+/([^/]+)/model/?$", champion_uri)
    return m.group(1) if m else None


# ----------------------------------------------------------------------------- TFMA


def eval_config(config: EvaluationConfig, with_champion: bool):
    """The TFMA EvalConfig: overall + ``slice_features`` slices, the metrics of :data:`METRICS`,
    ROC / confusion-matrix plots, and TFMA's own overall AUC thresholds (the cross-check)."""
    import tensorflow_model_analysis as tfma

    specs = [
        tfma.ModelSpec(
            name=CHALLENGER,
            signature_name="serving_default",
            label_key=F.LABEL.name,
            prediction_key="probability",
        )
    ]
    if with_champion:
        specs.append(
            tfma.ModelSpec(
                name=CHAMPION,
                signature_name="serving_default",
                label_key=F.LABEL.name,
                prediction_key="probability",
                is_baseline=True,
            )
        )
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.auc_floor})
    )
    if with_champion:
        threshold.change_threshold.CopyFrom(
            tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -config.max_auc_regression},
            )
        )
    metrics = []
    for name, cls in METRICS.items():
        metric = tfma.MetricConfig(class_name=cls)
        if name == "auc":  # overall slice only: per-slice rules (min size, one class) are ours
            metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
        metrics.append(metric)
    metrics.append(
        tfma.MetricConfig(
            class_name="ConfusionMatrixPlot", config=json.dumps({"num_thresholds": ROC_THRESHOLDS})
        )
    )
    metrics.append(
        tfma.MetricConfig(
            class_name="ConfusionMatrixAtThresholds", config=json.dumps({"thresholds": [DECISION_THRESHOLD]})
        )
    )
    metrics_spec = tfma.MetricsSpec(metrics=metrics)
    slicing = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[n]) for n in config.slice_features]
    return tfma.EvalConfig(model_specs=specs, metrics_specs=[metrics_spec], slicing_specs=slicing)


def _slice_name(slice_key) -> tuple[str, str | None, str | None]:
    keys = list(slice_key.single_slice_keys)
    if not keys:
        return OVERALL, None, None
    parts, cols, vals = [], [], []
    for k in keys:
        which = k.WhichOneof("kind")
        v = getattr(k, which) if which else ""
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        parts.append(f"{k.column}={v}")
        cols.append(k.column)
        vals.append(str(v))
    return ", ".join(parts), ", ".join(cols), ", ".join(vals)


def _roc(matrices) -> dict[str, list[float]]:
    fpr, tpr, thr = [], [], []
    for m in matrices:
        tp, fp, tn, fn = m.true_positives, m.false_positives, m.true_negatives, m.false_negatives
        fpr.append(fp / (fp + tn) if fp + tn else 0.0)
        tpr.append(tp / (tp + fn) if tp + fn else 0.0)
        thr.append(float(max(m.threshold, 0.0)))
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr}


def run_tfma(
    examples_path: str, model_dir: str, champion_dir: str | None, config: EvaluationConfig, output_dir: str
):
    """Runs TFMA once over ``examples_path`` (TFRecord of tf.Examples) for challenger and champion.

    Returns:
        ``(slices, rocs, confusion, tfma_validation_ok)`` where ``rocs`` maps model name -> ROC and
        ``confusion`` is the challenger's overall ``[[tn, fp], [fn, tp]]`` at 0.5.
    """
    import tensorflow_model_analysis as tfma

    cfg = eval_config(config, champion_dir is not None)
    models = [
        tfma.default_eval_shared_model(
            eval_saved_model_path=model_dir, eval_config=cfg, model_name=CHALLENGER
        )
    ]
    if champion_dir is not None:
        models.append(
            tfma.default_eval_shared_model(
                eval_saved_model_path=champion_dir, eval_config=cfg, model_name=CHAMPION
            )
        )
    tfma.run_model_analysis(
        eval_shared_model=models if len(models) > 1 else models[0],
        eval_config=cfg,
        data_location=examples_path,
        output_path=output_dir,
    )

    by_slice: dict[str, SliceRow] = {}
    for mfs in tfma.load_metrics(output_dir):
        name, col, val = _slice_name(mfs.slice_key)
        row = by_slice.setdefault(name, SliceRow(name, col, val, {}, {} if champion_dir else None))
        for kv in mfs.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            ours = {v: k for k, v in _TFMA_NAME.items()}.get(kv.key.name)
            if ours is None:
                continue
            # With a single model TFMA leaves model_name empty.
            target = row.challenger if kv.key.model_name in (CHALLENGER, "") else row.champion
            if target is not None:
                target[ours] = float(kv.value.double_value.value)

    rocs: dict[str, dict] = {}
    confusion = [[0, 0], [0, 0]]
    for pfs in tfma.load_plots(output_dir):
        if _slice_name(pfs.slice_key)[0] != OVERALL:
            continue
        for kv in pfs.plot_keys_and_values:
            if kv.value.HasField("confusion_matrix_at_thresholds"):
                rocs[kv.key.model_name or CHALLENGER] = _roc(kv.value.confusion_matrix_at_thresholds.matrices)
    for mfs in tfma.load_metrics(output_dir):
        if _slice_name(mfs.slice_key)[0] != OVERALL:
            continue
        for kv in mfs.metric_keys_and_values:
            if (
                kv.key.name == "confusion_matrix_at_thresholds"
                and kv.key.model_name in (CHALLENGER, "")
                and not kv.key.is_diff
            ):
                m = kv.value.confusion_matrix_at_thresholds.matrices[0]
                confusion = [
                    [int(m.true_negatives), int(m.false_positives)],
                    [int(m.false_negatives), int(m.true_positives)],
                ]
    validation_ok = bool(tfma.load_validation_result(output_dir).validation_ok)
    for row in by_slice.values():  # TFMA reports AUC 0 on a single-class slice; it is undefined
        if row.positives in (0, row.examples):
            for metrics in (row.challenger, row.champion or {}):
                metrics.update({"auc": math.nan, "pr_auc": math.nan})

    def order(r: SliceRow):
        if r.slice == OVERALL:
            return (0, "", 0, "")
        rank = list(config.slice_features).index(r.feature) if r.feature in config.slice_features else 99
        num = int(r.value) if r.value and r.value.lstrip("-").isdigit() else 0
        return (1, rank, num, r.value or "")

    return sorted(by_slice.values(), key=order), rocs, confusion, validation_ok


# ----------------------------------------------------------------------------- blessing


def _reason(metric, slice_, threshold, challenger, champion, passed, message, kind, judged=True) -> dict:
    return {
        "metric": metric,
        "slice": slice_,
        "threshold": threshold,
        "challenger": challenger,
        "champion": champion,
        "passed": bool(passed),
        "message": message,
        "kind": kind,
        "judged": judged,
    }


def _finite(v) -> bool:
    return v is not None and not math.isnan(v)


def decide(
    slices: list[SliceRow], config: EvaluationConfig, has_champion: bool, paired: dict | None = None
) -> list[dict]:
    """Applies the thresholds to per-slice metrics; returns the reasons (blessed = all passed).

    ``paired``: the paired comparison of the overall slice (:func:`paired_overall`); when given, it decides
    the overall change threshold (and its reason carries ``interval`` and ``verdict``).

    Each reason has ``metric``, ``slice``, ``threshold``, ``challenger``, ``champion``, ``passed``,
    ``message``, plus ``kind`` (``value`` | ``change`` | ``no_champion``) and ``judged`` (False for a
    slice reported but not judged: too few examples or a single class).
    """
    reasons: list[dict] = []
    overall = next((s for s in slices if s.slice == OVERALL), None)
    if overall is None:
        raise EvaluationError("TFMA produced no overall slice (no eval examples?)")
    ch_auc = overall.challenger.get("auc")
    champ_auc = overall.champion.get("auc") if overall.champion is not None else None

    # Value threshold: always.
    ok = _finite(ch_auc) and ch_auc >= config.auc_floor
    reasons.append(
        _reason(
            "auc",
            OVERALL,
            config.auc_floor,
            ch_auc,
            champ_auc,
            ok,
            f"challenger AUC {_fmt(ch_auc)} {'>=' if ok else '<'} floor {config.auc_floor} "
            f"({'passed' if ok else 'failed'}; value threshold on {overall.examples} examples)",
            "value",
        )
    )
    if overall.examples < config.min_slice_examples:
        reasons.append(
            _reason(
                "example_count",
                OVERALL,
                config.min_slice_examples,
                overall.examples,
                overall.champion.get("example_count") if overall.champion else None,
                False,
                f"only {overall.examples} eval examples overall (< min_slice_examples "
                f"{config.min_slice_examples}): too few to bless any model",
                "value",
            )
        )

    if not has_champion:
        reasons.append(
            _reason(
                "auc",
                OVERALL,
                None,
                ch_auc,
                None,
                True,
                "no champion in the model store: only value thresholds apply (first model); "
                "change thresholds and per-slice comparisons were not applied",
                "no_champion",
                judged=False,
            )
        )
        return reasons

    # Change threshold, overall: the paired interval when we have it, else the point estimates.
    if paired is not None:
        ok = paired["verdict"] != "worse"
        note = {
            "better": "passed",
            "non_inferior": "passed",
            "worse": "failed",
            "undecided": "passed as undecided: the canary decides on live traffic",
        }[paired["verdict"]]
        rec = _reason(
            "auc",
            OVERALL,
            -config.max_auc_regression,
            paired["comparison"]["challenger"],
            paired["comparison"]["champion"],
            ok,
            f"paired comparison, {paired['message']} ({note})",
            "change",
        )
        rec.update(interval=paired["comparison"], verdict=paired["verdict"], comparison="evaluate")
        reasons.append(rec)
    else:
        diff = _sub(ch_auc, champ_auc)
        ok = _finite(diff) and diff >= -config.max_auc_regression
        reasons.append(
            _reason(
                "auc",
                OVERALL,
                -config.max_auc_regression,
                ch_auc,
                champ_auc,
                ok,
                f"challenger AUC {_fmt(ch_auc)} vs champion AUC {_fmt(champ_auc)}: change {_fmt(diff)} "
                f"{'>=' if ok else '<'} -{config.max_auc_regression} allowed ({'passed' if ok else 'failed'})",
                "change",
            )
        )

    # Change threshold per slice, only where the slice is large enough to judge.
    for s in slices:
        if s.slice == OVERALL:
            continue
        a, b = s.challenger.get("auc"), (s.champion or {}).get("auc")
        n, pos = s.examples, s.positives
        if n < config.min_slice_examples:
            why = f"only {n} examples (< min_slice_examples {config.min_slice_examples})"
        elif pos == 0 or pos == n:
            why = f"{n} examples but a single class ({pos} positives): AUC is undefined"
        elif not (_finite(a) and _finite(b)):
            why = "AUC is not finite"
        else:
            why = None
        if why:
            reasons.append(
                _reason(
                    "auc",
                    s.slice,
                    -config.max_slice_auc_regression,
                    a,
                    b,
                    True,
                    f"not judged: {why}; reported, not a veto",
                    "change",
                    judged=False,
                )
            )
            continue
        d = a - b
        ok = d >= -config.max_slice_auc_regression
        reasons.append(
            _reason(
                "auc",
                s.slice,
                -config.max_slice_auc_regression,
                a,
                b,
                ok,
                f"challenger AUC {_fmt(a)} vs champion AUC {_fmt(b)} on {n} examples: change {_fmt(d)} "
                f"{'>=' if ok else '<'} -{config.max_slice_auc_regression} allowed "
                f"({'passed' if ok else 'failed'})",
                "change",
            )
        )
    return reasons


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


# ----------------------------------------------------------------------------- entry point


def predict_examples(model_dir: str, examples: list[bytes], batch_rows: int = 4096):
    """The ``probability`` of a SavedModel's ``serving_default`` for serialized tf.Examples (float64 array)."""
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    out = []
    for lo in range(0, len(examples), batch_rows):
        probs = fn(examples=tf.constant(examples[lo : lo + batch_rows]))["probability"]
        out.append(np.asarray(probs, dtype=np.float64).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def paired_overall(labels, challenger, champion, config: EvaluationConfig) -> dict:
    """The paired comparison of challenger and champion on the same eval rows, and its verdict.

    Eval rows are fixed (no more will come), so the comparison is judged without the collection limit:
    ``undecided`` stays ``undecided`` (:func:`decide` lets it pass to the canary, and says so).
    """
    from kfloop import config as kconfig
    from kfloop import paired

    cmp_cfg = dataclasses.replace(kconfig.ComparisonConfig(), margin=config.max_auc_regression)
    c = paired.compare(labels, challenger, champion, cfg=cmp_cfg)
    verdict, message = paired.verdict(c, cmp_cfg)
    return {
        "comparison": c.to_dict(),
        "verdict": verdict,
        "message": message,
        "config": dataclasses.asdict(cmp_cfg),
    }


def evaluate(
    eval_uri: str,
    model_uri: str,
    champion_uri: str = "",
    *,
    config: EvaluationConfig = EvaluationConfig(),
    blessing_path: str | None = None,
    report_path: str | None = None,
    workdir: str | None = None,
) -> Evaluation:
    """Evaluates a challenger SavedModel (and the champion, if given) on an eval Dataset CSV with TFMA.

    Args:
        eval_uri: Eval Dataset CSV (local or ``gs://``) with the label ``big_tipper``.
        model_uri: The challenger SavedModel directory (local or ``gs://``).
        champion_uri: The champion SavedModel directory, e.g. ``store.model_uri(name, version)``;
            ``""`` = no champion (first model): only value thresholds apply.
        config: Thresholds and slices.
        blessing_path: Where to write the blessing JSON (always written when given, atomically).
        report_path: Where to write the self-contained HTML report.
        workdir: Scratch directory for the TFRecord and TFMA output (default: a temp dir).

    Returns:
        The :class:`Evaluation` (blessing dict, slices, ROC, confusion matrix).

    Raises:
        EvaluationError: bad input; nothing is written then.
    """
    check_config(config)
    frame, dropped = load_eval_frame(eval_uri)
    args = (frame, dropped, eval_uri, model_uri, champion_uri, config)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="kfloop-evaluate-") as tmp:
            return _evaluate(*args, Path(tmp), blessing_path, report_path)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return _evaluate(*args, Path(workdir), blessing_path, report_path)


def _evaluate(
    frame, dropped, eval_uri, model_uri, champion_uri, config, scratch: Path, blessing_path, report_path
) -> Evaluation:
    import warnings

    import tensorflow as tf

    model_dir = fs.local_copy(model_uri, str(scratch / "challenger") if fs.is_gcs(model_uri) else None)
    check_saved_model(model_dir, "model")
    champion_dir = None
    if champion_uri:
        champion_dir = fs.local_copy(
            champion_uri, str(scratch / "champion") if fs.is_gcs(champion_uri) else None
        )
        check_saved_model(champion_dir, "champion")

    examples_path = str(scratch / "eval.tfrecord")
    examples = datasets.to_examples(frame, with_label=True)
    with tf.io.TFRecordWriter(examples_path) as w:
        for ex in examples:
            w.write(ex)

    with warnings.catch_warnings():
        # numpy's divide-by-zero warnings from TFMA's confusion matrices on single-class slices.
        warnings.simplefilter("ignore", RuntimeWarning)
        slices, rocs, confusion, tfma_ok = run_tfma(
            examples_path, model_dir, champion_dir, config, str(scratch / "tfma")
        )
    paired_result = None
    if champion_dir is not None:
        # The same rows TFMA just evaluated, scored by both models: the paired interval of the change.
        labels = frame[F.LABEL.name].astype(int).to_numpy()
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
        from components.evaluate.eval_report import render_html

        fs.write_text(report_path, render_html(result))
    if blessing_path:
        fs.write_text(blessing_path, json.dumps(blessing, indent=2, sort_keys=False) + "\n")
    return result


def comparison_table(result: Evaluation) -> str:
    """A plain-text table: per slice, examples, challenger / champion AUC and the change; then reasons."""
    has_champ = result.blessing["champion_metrics"] is not None
    lines = []
    ov = result.slices[0]
    lines.append("Overall metrics" + (" (challenger vs champion)" if has_champ else " (challenger)"))
    for m in METRICS:
        a = ov.challenger.get(m)
        if has_champ:
            b = ov.champion.get(m)
            lines.append(f"  {m:<16} {_fmt(a):>10} {_fmt(b):>10} {_fmt(_sub(a, b)):>10}")
        else:
            lines.append(f"  {m:<16} {_fmt(a):>10}")
    lines.append("")
    head = f"  {'slice':<28} {'n':>6} {'pos':>5} {'AUC':>8}"
    if has_champ:
        head += f" {'champion':>9} {'change':>8}"
    lines.append("Per slice")
    lines.append(head)
    for s in result.slices:
        line = f"  {s.slice:<28} {s.examples:>6} {s.positives:>5} {_fmt(s.challenger.get('auc')):>8}"
        if has_champ:
            line += f" {_fmt(s.champion.get('auc')):>9} {_fmt(s.diff('auc')):>8}"
        lines.append(line)
    lines.append("")
    verdict = "BLESSED" if result.blessed else "NOT BLESSED"
    lines.append(f"Verdict: {verdict}")
    for r in result.blessing["reasons"]:
        mark = "ok  " if r["passed"] else "FAIL"
        if not r["judged"]:
            mark = "info"
        lines.append(f"  [{mark}] {r['metric']} @ {r['slice']}: {r['message']}")
    return "\n".join(lines)
