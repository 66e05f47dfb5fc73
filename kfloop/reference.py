"""The champion's reference for monitoring: statistics of its training and eval data, kept with its version.

At push time the training pipeline computes, from the train / eval splits the model was trained and
evaluated on, the monitoring reference (:func:`build_reference`) and push publishes it with the version,
through the store's rules: the version artifact :data:`kfloop.layout.REFERENCE`
(``models/<name>/<version>/reference/``, :func:`kfloop.layout.reference`), written once before the
version's commit marker (:meth:`kfloop.store.ModelStore.publish` with ``artifacts=``), or once later for
a committed version that has none (:func:`store_reference`; recorded in the model's history). Readers
find it through the store (:func:`stored_reference`): files without the artifact's marker are not a reference.

* ``reference.json``: the numeric clip bounds (the training split's ``[q, 1 - q]`` quantiles, see
  :class:`kfloop.config.MonitoringConfig`), the quantile, row counts;
* ``train_stats.pb`` / ``eval_stats.pb``: TFDV statistics of the clipped train / eval splits (the drift and
  skew references; computed with the validation statistics pipeline);
* ``reference.json``'s ``output`` (when the model's eval predictions were given, :func:`output_reference`):
  the distribution of the model's output on the eval split, the label-free reference of the monitor's
  output drift (binary: the probability, regression: the predicted value, both as a histogram of
  :data:`OUTPUT_BINS` equal-width bins between the eval predictions' clip quantiles; multiclass: the
  predicted-class counts and the mean probabilities), with the model's metrics on those rows
  (:func:`kfloop.metrics.task_metrics`). A reference without it (older versions) has ``output`` None:
  output drift is then reported as unavailable.

The monitor then only reads these few hundred KB (:func:`champion_reference`), never the source data. A
version without a stored reference is rebuilt (into the run's work directory) from the source with its
recorded data window.

This is a ground-floor module (push and monitor import it); the numeric clipping it shares with the
monitor's scoring (:func:`clip_bounds`, :func:`clip_numeric`) lives here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

from kfloop import config, fs, layout
from kfloop.contract import OUTPUT_KEYS

FILES = ("reference.json", "train_stats.pb", "eval_stats.pb")
FORMAT = 1

#: Bins of the output histogram (binary probability, regression prediction).
OUTPUT_BINS = 20
#: The model's output per task: the SavedModel's output key and the prediction log's column (contract 2, 4).


class ReferenceError_(ValueError):
    """No champion, or its metadata has no data window; the message names the model and version."""


def clip_numeric(frame, bounds: dict[str, tuple[float, float]], spec):
    """A copy of the model features of ``frame`` (those of ``spec``) with numeric columns clipped to
    ``bounds``."""
    out = frame[list(spec.input_names)].copy()
    for name, (lo, hi) in bounds.items():
        out[name] = out[name].astype("float64").clip(lo, hi)
    return out


def clip_bounds(reference, quantile: float, spec) -> dict[str, tuple[float, float]]:
    """``{numeric feature: (q, 1 - q) quantiles}`` of the reference (the spec's numeric model inputs with
    values only)."""
    bounds = {}
    for name in (f.name for f in spec.features_of("numeric")):
        col = reference[name].astype("float64").dropna()
        if len(col):
            bounds[name] = (float(col.quantile(quantile)), float(col.quantile(1.0 - quantile)))
    return bounds


@dataclasses.dataclass
class Reference:
    """A loaded reference: clip bounds and the clipped train (and eval) statistics."""

    uri: str
    bounds: dict
    train_stats: object
    eval_stats: object | None
    meta: dict
    version: str | None = None

    @property
    def output(self) -> dict | None:
        """The eval predictions' distribution (:func:`output_reference`); None for a reference without it."""
        return self.meta.get("output") or None


def build_reference(
    train_uri: str,
    eval_uri: str,
    out_uri: str,
    *,
    spec,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    schema_path: str | None = None,
    beam_pipeline_args=(),
    model_dir: str | None = None,
    eval_outputs=None,
) -> dict:
    """Computes the monitoring reference of a model's train / eval Dataset CSVs into ``out_uri`` (a folder).

    Args:
        train_uri: The training split (Dataset form).
        eval_uri: The eval split ('' for none).
        out_uri: The reference folder to write.
        spec: The model's :class:`kfloop.spec.DatasetSpec` (features, kinds, statistics options).
        cfg: Monitoring thresholds (the clip quantile).
        schema_path: The model's TFDV schema (None: the schema the spec alone implies).
        beam_pipeline_args: Beam options for the statistics (DirectRunner when empty).
        model_dir: The model's SavedModel: its outputs on the eval split (:func:`score_frame`) become the
            reference's ``output`` (output drift, the eval metrics).
        eval_outputs: The model's outputs on the eval rows instead ([n], or [n, K] for multiclass).

    Returns:
        The ``reference.json`` content.

    Raises:
        ReferenceError_: ``eval_outputs`` do not fit the eval split (rows, shape, values).
    """
    from kfloop import datasets
    from kfloop.tfdv import ops as V

    schema = V.load_schema(schema_path) if schema_path else V.spec_schema(spec)
    train = datasets.read_dataset(train_uri, spec)
    bounds = clip_bounds(train, cfg.clip_quantile, spec)

    def write_statistics(frame, name: str) -> None:  # of the frame clipped to the training bounds
        clipped = clip_numeric(frame, bounds, spec)
        stats = V.compute_statistics(clipped, schema=schema, spec=spec, beam_pipeline_args=beam_pipeline_args)
        V.write_statistics(stats, fs.join(out_uri, name))

    write_statistics(train, "train_stats.pb")
    meta = {
        "format": FORMAT,
        "clip_quantile": cfg.clip_quantile,
        "bounds": {k: [lo, hi] for k, (lo, hi) in bounds.items()},
        "train": train_uri,
        "train_rows": len(train),
        "eval": eval_uri or "",
        "eval_rows": 0,
    }
    if eval_uri:
        evals = datasets.read_dataset(eval_uri, spec)
        if len(evals):
            write_statistics(evals, "eval_stats.pb")
            meta["eval_rows"] = len(evals)
            if eval_outputs is None and model_dir:
                eval_outputs = score_frame(model_dir, evals, spec)
            if eval_outputs is not None:
                meta["output"] = output_reference(
                    spec, eval_outputs, evals[spec.label.name], cfg.clip_quantile
                )
    fs.write_text(fs.join(out_uri, "reference.json"), json.dumps(meta, indent=1, sort_keys=True))
    return meta


def score_frame(model_dir: str, frame, spec, batch_rows: int = 8192):
    """The outputs of a SavedModel's raw signature on a Dataset frame: [n] (binary, regression), [n, K]."""
    import numpy as np
    import tensorflow as tf

    from kfloop import contract

    sig = tf.saved_model.load(model_dir).signatures[contract.RAW_SIGNATURE]
    cols = contract.encode_inputs(frame, spec)
    key = OUTPUT_KEYS[spec.task.value]
    out = []
    for lo in range(0, len(frame), batch_rows):
        tensors = {
            f.name: tf.constant(cols[f.name][lo : lo + batch_rows], dtype=getattr(tf, f.dtype))
            for f in spec.model_features
        }
        out.append(np.asarray(sig(**tensors)[key].numpy(), dtype=np.float64))
    k = spec.n_classes if spec.task.value == "multiclass" else 0
    return np.concatenate(out) if out else np.zeros((0, k) if k else 0)


def _edges(lo: float, hi: float, bins: int):
    import numpy as np

    return np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)


def output_counts(output: dict, outputs):
    """Counts of ``outputs`` in the bins of an :func:`output_reference` (the same clipping and bins).

    Returns:
        int64 counts: per histogram bin (binary, regression), per predicted class (multiclass).
    """
    import numpy as np

    x = np.asarray(outputs, dtype=np.float64)
    if output["kind"] == "classes":
        k = len(output["classes"])
        return np.bincount(np.argmax(x, axis=1), minlength=k).astype(np.int64) if len(x) else np.zeros(k, int)
    edges = np.asarray(output["edges"], dtype=np.float64)
    clipped = np.clip(x.reshape(-1), edges[0], edges[-1])
    idx = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1).astype(np.int64)


def output_reference(spec, outputs, labels, quantile: float, bins: int = OUTPUT_BINS) -> dict:
    """The eval predictions' distribution kept with a version (``reference.json``'s ``output``).

    Args:
        spec: The model's dataset spec (task, classes).
        outputs: The model's outputs on the eval rows: [n] probabilities / predictions, or [n, K].
        labels: The eval rows' Dataset-form labels (for the eval metrics; missing ones are left out).
        quantile: Numeric outputs are clipped to their ``[q, 1 - q]`` quantiles (as numeric features are).
        bins: Histogram bins (binary, regression).

    Raises:
        ReferenceError_: outputs of another length or shape than the task's, or not finite.
    """
    import numpy as np
    import pandas as pd

    task = spec.task.value
    x = np.asarray(outputs, dtype=np.float64)
    y = pd.to_numeric(pd.Series(labels).reset_index(drop=True), errors="coerce").to_numpy(dtype=np.float64)
    k = spec.n_classes
    want = (len(y), k) if task == "multiclass" else (len(y),)
    if x.shape != want or not np.isfinite(x).all():
        raise ReferenceError_(f"eval outputs {x.shape} must be finite, of shape {want} ({task})")
    out: dict = {"task": task, "rows": len(x), "measure": "jensen_shannon_divergence"}
    if task == "multiclass":
        out.update(kind="classes", classes=[str(c) for c in spec.classes])
        out["mean_probabilities"] = [float(v) for v in x.mean(axis=0)] if len(x) else [None] * k
    else:
        lo, hi = (float(np.quantile(x, quantile)), float(np.quantile(x, 1 - quantile))) if len(x) else (0, 1)
        out.update(kind="histogram", bounds=[lo, hi], edges=[float(e) for e in _edges(lo, hi, bins)])
        out["mean"] = float(x.mean()) if len(x) else None
    out["counts"] = [int(c) for c in output_counts(out, x)]
    from kfloop import metrics

    keep = ~np.isnan(y)
    try:
        out["eval_metrics"] = metrics.task_metrics(task, y[keep], x[keep], spec.classes)
    except metrics.MetricsError as e:
        raise ReferenceError_(f"eval outputs: {e}") from None
    return out


def jensen_shannon(a, b) -> float | None:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two count vectors over the same bins; None when a
    side is empty."""
    import numpy as np

    p, q = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(u):
        nz = u > 0
        return float((u[nz] * np.log2(u[nz] / m[nz])).sum())

    return min(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), 1.0)


def is_reference(uri: str) -> bool:
    """Whether ``uri`` is a reference folder (holds ``reference.json``)."""
    return bool(uri) and fs.exists(fs.join(uri, "reference.json"))


def load_reference(uri: str) -> Reference:
    """Loads a reference folder written by :func:`build_reference`.

    Raises:
        ReferenceError_: ``reference.json`` or the training statistics are missing or unreadable.
    """
    from kfloop.tfdv import ops as V

    try:
        meta = json.loads(fs.read_text(fs.join(uri, "reference.json")))
        bounds = {k: (float(lo), float(hi)) for k, (lo, hi) in meta["bounds"].items()}
    except FileNotFoundError:
        raise ReferenceError_(f"reference {uri!r} has no reference.json") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ReferenceError_(f"reference {uri!r}: reference.json is unreadable: {e}") from None
    try:
        train = V.load_statistics(fs.join(uri, "train_stats.pb"))
        evals = V.load_statistics(fs.join(uri, "eval_stats.pb")) if meta.get("eval_rows") else None
    except V.ValidationError as e:
        raise ReferenceError_(f"reference {uri!r}: {e}") from None
    return Reference(uri, bounds, train, evals, meta)


def reference_uri(store_uri: str, model_name: str, version: str) -> str:
    """Where a version's reference lives: ``models/<name>/<version>/reference`` (:func:`kfloop.layout.reference`)."""
    from kfloop import store as kstore

    return layout.reference(kstore.ModelStore(store_uri).root, kstore.check_model_name(model_name), version)


def stored_reference(store_uri: str, model_name: str, version: str) -> str | None:
    """The URI of a committed version's stored reference, or None when it has none.

    Raises:
        kfloop.store.CorruptStore: the reference's marker is not valid.
    """
    from kfloop import store as kstore

    return kstore.ModelStore(store_uri).artifact_uri(model_name, version, layout.REFERENCE)


def store_reference(store_uri: str, model_name: str, version: str, ref_dir: str, *, actor: str = "") -> str:
    """Stores a reference folder with a committed version that has none (write-once, recorded in the
    model's history); returns its URI. Push publishes it with the version instead (``artifacts=``).

    Raises:
        ReferenceError_: ``ref_dir`` is not a reference folder.
        kfloop.store.StoreError: the version is not committed, or already has a reference.
    """
    if not is_reference(ref_dir):
        raise ReferenceError_(f"reference {ref_dir!r} has no reference.json")
    from kfloop import store as kstore

    return kstore.ModelStore(store_uri).put_artifact(
        model_name, version, layout.REFERENCE, ref_dir, actor=actor
    )


def reference_for(
    reference_train: str,
    reference_eval: str = "",
    *,
    spec,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    schema_path: str | None = None,
    beam_pipeline_args=(),
) -> Reference:
    """A reference from a reference folder, or computed from train / eval Dataset CSVs (explicit ones).

    Raises:
        ReferenceError_: the folder or a CSV is missing.
    """
    if is_reference(reference_train):
        return load_reference(reference_train)
    if not fs.exists(reference_train):
        raise ReferenceError_(f"reference dataset {reference_train!r} does not exist")
    if reference_eval and not fs.exists(reference_eval):
        raise ReferenceError_(f"reference dataset {reference_eval!r} does not exist")
    tmp = tempfile.mkdtemp(prefix="kfloop-ref-")
    build_reference(
        reference_train,
        reference_eval,
        tmp,
        spec=spec,
        cfg=cfg,
        schema_path=schema_path,
        beam_pipeline_args=beam_pipeline_args,
    )
    return load_reference(tmp)


def champion_reference(
    store_uri: str,
    model_name: str,
    source: str,
    workdir: str,
    *,
    spec,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    schema_path: str | None = None,
    beam_pipeline_args=(),
) -> Reference:
    """The champion's stored reference; for a version without one, rebuilt once from ``source``.

    Raises:
        ReferenceError_: no champion, or no stored reference and no data window / source to rebuild it.
    """
    from kfloop import store as kstore

    st = kstore.ModelStore(store_uri)
    try:
        version = st.resolve(model_name, kstore.CHAMPION)
        meta = st.metadata(model_name, version)
    except kstore.StoreError as e:
        raise ReferenceError_(f"no champion reference for model {model_name!r}: {e}") from None
    stored = stored_reference(store_uri, model_name, version)
    if stored:
        ref = load_reference(stored)
        ref.version = version
        return ref
    window = meta.get("data_window") or {}
    if not window.get("end"):
        raise ReferenceError_(
            f"model {model_name!r} version {version}: no stored reference and metadata.json has no "
            "data_window.end (the ingest cutoff) to rebuild it"
        )
    if not source:
        raise ReferenceError_(
            f"model {model_name!r} version {version}: no stored reference; give the source data to rebuild it"
        )
    from kfloop.ingest import ingest

    os.makedirs(workdir, exist_ok=True)
    paths = {k: os.path.join(workdir, f"{k}.csv") for k in ("train", "eval", "rest")}
    ingest(
        source,
        spec,
        window["end"],
        paths["train"],
        paths["eval"],
        paths["rest"],
        window_start=window.get("start") or "",
        eval_fraction=float(meta.get("eval_fraction", config.DEFAULT_EVAL_FRACTION)),
    )
    out = os.path.join(workdir, "reference")
    model_dir = st.model_uri(model_name, version)
    build_reference(
        paths["train"],
        paths["eval"],
        out,
        spec=spec,
        cfg=cfg,
        schema_path=schema_path,
        beam_pipeline_args=beam_pipeline_args,
        model_dir=model_dir if fs.exists(fs.join(model_dir, "saved_model.pb")) else None,
    )
    ref = load_reference(out)
    ref.version = version
    return ref
