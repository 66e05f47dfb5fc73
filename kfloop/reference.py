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
  skew references; computed with the validation statistics pipeline).

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

FILES = ("reference.json", "train_stats.pb", "eval_stats.pb")
FORMAT = 1


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


def build_reference(
    train_uri: str,
    eval_uri: str,
    out_uri: str,
    *,
    spec,
    cfg: config.MonitoringConfig = config.MonitoringConfig(),
    schema_path: str | None = None,
    beam_pipeline_args=(),
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

    Returns:
        The ``reference.json`` content.
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
    fs.write_text(fs.join(out_uri, "reference.json"), json.dumps(meta, indent=1, sort_keys=True))
    return meta


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
    from kfloop.clean import ingest

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
    build_reference(
        paths["train"],
        paths["eval"],
        out,
        spec=spec,
        cfg=cfg,
        schema_path=schema_path,
        beam_pipeline_args=beam_pipeline_args,
    )
    ref = load_reference(out)
    ref.version = version
    return ref
