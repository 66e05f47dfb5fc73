"""Evaluation inputs: thresholds, the eval Dataset CSV read against the spec, the SavedModels."""

from __future__ import annotations

import io
from pathlib import Path

from components.evaluate.result import EvaluationError
from kfloop import contract, fs, layout
from kfloop.config import EvaluationConfig


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


def slice_keys(spec) -> list[tuple[str, ...]]:
    """The spec's evaluation slices as feature-name tuples (a cross is several names).

    Raises:
        EvaluationError: a slice names something that is not a model feature.
    """
    names = set(spec.input_names)
    out = []
    for i, s in enumerate(spec.slices):
        keys = (s,) if isinstance(s, str) else tuple(s)
        for k in keys:
            if k not in names:
                raise EvaluationError(f"slices[{i}]: {k!r} is not a model feature of spec {spec.name!r}")
        out.append(keys)
    return out


def load_eval_frame(eval_uri: str, spec):
    """Reads an eval Dataset CSV and checks it against the spec: the label and every feature present,
    values of the feature's type.

    Returns:
        ``(frame, dropped)``: rows with a label, and the number of rows dropped for a missing label.

    Raises:
        EvaluationError: missing file / columns, a value of the wrong type, the spec's label column missing
            not of the task's values (binary 0/1, multiclass a class index, regression a finite number), no
            labelled rows.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(
            io.BytesIO(fs.read_bytes(eval_uri)), dtype=str, keep_default_na=False, na_values=[""]
        )
    except FileNotFoundError:
        raise EvaluationError(f"eval data {eval_uri!r} does not exist") from None
    except pd.errors.EmptyDataError:
        raise EvaluationError(f"eval data {eval_uri!r} is empty") from None
    except ValueError as e:
        raise EvaluationError(f"eval data {eval_uri!r}: {e}") from None
    label = spec.label.name
    if label not in frame.columns:
        raise EvaluationError(
            f"eval data {eval_uri!r} has no label column {label!r} (columns: {', '.join(frame.columns)})"
        )
    missing = [f.name for f in spec.model_features if f.name not in frame.columns]
    if missing:
        raise EvaluationError(f"eval data {eval_uri!r} lacks feature column(s): {', '.join(missing)}")
    for f in (*spec.model_features, spec.label):
        if f.dtype == "string":
            continue
        values = pd.to_numeric(frame[f.name], errors="coerce")
        bad = values.isna() & frame[f.name].notna()
        if f.dtype == "int64":
            bad |= values.notna() & (values != values.round())
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            what = "label" if f is spec.label else "column"
            raise EvaluationError(
                f"eval data {eval_uri!r}: {what} {f.name!r} has {frame[f.name].iloc[row]!r} at CSV line "
                f"{row + 2} (expected {'a number' if f.dtype == 'float32' else 'an integer'})"
            )
        frame[f.name] = values.astype("float64") if f.dtype == "float32" else values.astype("Int64")
    has_label = frame[label].notna()
    task = spec.task.value
    if task == "binary":
        bad, want = has_label & ~frame[label].isin([0, 1]), "must be 0 or 1"
    elif task == "multiclass":
        k = spec.n_classes
        bad = has_label & ~frame[label].isin(range(k))
        want = f"must be a class index 0..{k - 1} ({', '.join(map(str, spec.classes))})"
    else:
        import numpy as np

        bad = has_label & ~np.isfinite(frame[label].astype("float64"))
        want = "must be a finite number"
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise EvaluationError(
            f"eval data {eval_uri!r}: label {label!r} {want}, got {frame[label].iloc[row]!r} "
            f"(CSV line {row + 2})"
        )
    kept = frame[has_label].reset_index(drop=True)
    if kept.empty:
        raise EvaluationError(f"eval data {eval_uri!r} has no rows with a {label!r} label")
    return kept, int((~has_label).sum())


def check_saved_model(path: str, what: str, output_key: str | None = contract.OUTPUT_KEY) -> None:
    """Checks that ``path`` is a SavedModel with the contract's tf.Example signature (TFMA calls it).

    ``output_key``: the output the signature must return (:func:`kfloop.contract.output_key` of the spec);
    None: any (the spec, and so the task, is not known yet).

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
    name = contract.EXAMPLES_SIGNATURE
    if name not in sigs:
        raise EvaluationError(f"{what} {path!r} has no {name!r} signature (has: {', '.join(sigs)})")
    sig = sigs[name]
    if list(sig.inputs) != [contract.EXAMPLES_INPUT] or (
        output_key is not None and output_key not in sig.outputs
    ):
        returns = f" {output_key!r}" if output_key is not None else " its output"
        raise EvaluationError(
            f"{what} {path!r}: {name} must take {contract.EXAMPLES_INPUT!r} and return{returns} "
            f"(takes {list(sig.inputs)}, returns {list(sig.outputs)})"
        )


def model_spec(model_dir: str, what: str):
    """The spec stored in a model directory (:func:`kfloop.contract.read_spec`).

    Raises:
        EvaluationError: no ``spec.yaml`` there, or not a valid spec.
    """
    from kfloop import spec as kspec

    try:
        return contract.read_spec(model_dir)
    except (FileNotFoundError, kspec.SpecError) as e:
        raise EvaluationError(f"{what}: {e} (pass the dataset spec)") from None


def champion_version_of(champion_uri: str) -> str | None:
    """The store version in a model-store URI ``.../models/<name>/<version>/model``, else None."""
    found = layout.version_of_model_uri(champion_uri)
    return found[1] if found else None
