"""The model contract: what a kfloop model directory holds and the names every stage relies on.

A model directory (what the trainer exports, what the store keeps under ``models/<name>/<version>/model/``,
what KServe's storage initializer downloads) holds:

==========================  ==============================================================================
``saved_model.pb`` + vars   a TensorFlow SavedModel with the two signatures below
``kfloop_metadata.json``    what produced it: data window, hyperparameters, metrics, libraries (written last:
                            its presence means the export is complete)
``spec.yaml``               the dataset spec the model was trained on (:mod:`kfloop.spec`): serving, batch
                            prediction and monitoring read the features, label and thresholds from it
``schema.pbtxt``            the TFDV schema of its training data (the monitoring reference)
==========================  ==============================================================================

Signatures (both return ``{output_key(spec): float32}``, the key and shape per the spec's task, see
:data:`OUTPUT_KEYS`):

- ``RAW_SIGNATURE`` (``predict_raw``): one 1-D tensor per model feature, named after it, dtype from the
  spec; missing values as the spec's sentinels (NaN, -1, "").
- ``EXAMPLES_SIGNATURE`` (``serving_default``): ``examples``, a 1-D string tensor of serialized
  ``tf.Example``s.

Outputs per task:

- binary: ``probability`` float32 [batch], the probability of the positive class, in [0, 1].
- regression: ``prediction`` float32 [batch], finite, in the label's own units.
- multiclass: ``probabilities`` float32 [batch, K] (K = ``spec.n_classes``), a softmax in ``spec.classes``
  order: every value in [0, 1], every row sums to 1.

In a ``tf.Example`` the label is int64 for binary (0/1) and multiclass (the class index), float for
regression.

Checks and encodings (:func:`check_model`, :func:`encode_inputs`, :func:`synthetic_inputs`) import numpy,
pandas and TensorFlow inside the functions: at module level only the standard library is imported, so both
envs import this module.
"""

from __future__ import annotations

#: Signature over one tensor per feature (the one the predictor and batch jobs call).
RAW_SIGNATURE = "predict_raw"
#: Signature over serialized tf.Examples (TFMA and ``saved_model_cli`` users).
EXAMPLES_SIGNATURE = "serving_default"
#: Name of the input of :data:`EXAMPLES_SIGNATURE`.
EXAMPLES_INPUT = "examples"
#: The output key of both signatures of a binary model (kept for callers that only know binary models;
#: use :func:`output_key` for a spec of any task).
OUTPUT_KEY = "probability"
#: The output key of both signatures per task (``spec.task.value``).
OUTPUT_KEYS = {"binary": "probability", "regression": "prediction", "multiclass": "probabilities"}
#: Rows of a multiclass output must sum to 1 within this.
SUM_TOLERANCE = 1e-3
#: Provenance and metrics of an export, written last.
METADATA_FILE = "kfloop_metadata.json"
#: The dataset spec the model was trained on.
SPEC_FILE = "spec.yaml"
#: The TFDV schema of the model's training data.
SCHEMA_FILE = "schema.pbtxt"


def task_of(spec_or_task) -> str:
    """The task name (``"binary"``, ``"regression"``, ``"multiclass"``) of a spec, a Task or a task name.

    Raises:
        ValueError: not a task kfloop knows.
    """
    task = getattr(spec_or_task, "task", spec_or_task)
    name = getattr(task, "value", task)
    if name not in OUTPUT_KEYS:
        raise ValueError(f"task {name!r} is not one of {', '.join(OUTPUT_KEYS)}")
    return name


def output_key(spec_or_task) -> str:
    """The output key of both signatures for a spec (or a Task / task name): :data:`OUTPUT_KEYS`."""
    return OUTPUT_KEYS[task_of(spec_or_task)]


def output_shape(spec) -> list:
    """The output's shape for a spec, ``None`` = the batch: ``[None]``, or ``[None, K]`` (multiclass)."""
    return [None, spec.n_classes] if task_of(spec) == "multiclass" else [None]


def spec_uri(model_dir: str) -> str:
    """Where the dataset spec of a model directory is."""
    from kfloop import fs

    return fs.join(model_dir, SPEC_FILE)


def schema_uri(model_dir: str) -> str:
    """Where the TFDV schema of a model directory is."""
    from kfloop import fs

    return fs.join(model_dir, SCHEMA_FILE)


def metadata_uri(model_dir: str) -> str:
    """Where the metadata file of a model directory is."""
    from kfloop import fs

    return fs.join(model_dir, METADATA_FILE)


def read_spec(model_dir: str):
    """The :class:`kfloop.spec.DatasetSpec` a model directory was trained on.

    Raises:
        FileNotFoundError: the directory has no ``spec.yaml`` (a model exported before specs existed, or
            not by kfloop: ``kfloop models publish --spec`` adds one).
        kfloop.spec.SpecError: the file is not a valid spec.
    """
    from kfloop import fs, spec

    uri = spec_uri(model_dir)
    if not fs.exists(uri):
        raise FileNotFoundError(
            f"{uri}: the model directory has no {SPEC_FILE} (the model contract needs one)"
        )
    return spec.loads(fs.read_text(uri), origin=uri)


# ------------------------------------------------------------------------------ the files beside a model


def sha256_of(uri: str) -> str:
    """sha256 hex of a file's bytes (local path or ``gs://``)."""
    import hashlib

    from kfloop import fs

    return hashlib.sha256(fs.read_bytes(uri)).hexdigest()


def write_spec_and_schema(model_dir: str, spec, schema_source: str | None = None) -> dict:
    """Writes ``spec.yaml`` (:func:`kfloop.spec.dump`) and, when given, a copy of the TFDV schema into a
    model directory; returns the hashes the metadata records.

    Call it before the metadata file is written (the metadata is written last).

    Args:
        model_dir: The (staging) model directory.
        spec: The :class:`kfloop.spec.DatasetSpec` the model was trained on.
        schema_source: The training data's ``schema.pbtxt`` (path or URI); None: no schema file.

    Returns:
        ``{"spec_sha256": hex, "schema_sha256": hex | None}``: sha256 of the files' bytes as written.

    Raises:
        FileNotFoundError: ``schema_source`` does not exist.
    """
    from kfloop import fs
    from kfloop import spec as kspec

    fs.write_text(spec_uri(model_dir), kspec.dump(spec))
    schema_sha = None
    if schema_source:
        if not fs.exists(schema_source):
            raise FileNotFoundError(f"schema {schema_source!r} does not exist")
        target = schema_uri(model_dir)
        fs.write_bytes(target, fs.read_bytes(schema_source))
        schema_sha = sha256_of(target)
    return {"spec_sha256": sha256_of(spec_uri(model_dir)), "schema_sha256": schema_sha}


def input_specs(spec) -> dict[str, str]:
    """``{feature: dtype}`` of :data:`RAW_SIGNATURE`'s inputs for a spec, in model order."""
    return {f.name: f.dtype for f in spec.model_features}


def signature_description(spec) -> dict:
    """The two signatures' inputs and outputs for a spec (JSON-ready, as the metadata records them).

    Outputs are ``{key: "float32"}`` (the key per task); a multiclass spec adds ``output_shape``
    ``[-1, K]``.
    """
    outputs = {output_key(spec): "float32"}
    extra = {"output_shape": [-1, spec.n_classes]} if task_of(spec) == "multiclass" else {}
    return {
        EXAMPLES_SIGNATURE: {"inputs": {EXAMPLES_INPUT: "string"}, "outputs": dict(outputs), **extra},
        RAW_SIGNATURE: {"inputs": input_specs(spec), "outputs": dict(outputs), **extra},
    }


def encode_inputs(frame, spec) -> dict:
    """Encodes a Dataset-form frame's model features as :data:`RAW_SIGNATURE` inputs (numpy arrays).

    float32 (NaN missing) for numeric, int64 (-1 missing) for categorical ints and booleans, object
    strings (``""`` missing) for categorical strings.
    """
    import numpy as np
    import pandas as pd

    out = {}
    for f in spec.model_features:
        col = frame[f.name]
        if f.dtype == "float32":
            out[f.name] = pd.to_numeric(col).astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
        elif f.dtype == "string":
            out[f.name] = col.where(col.notna(), "").astype(str).to_numpy(dtype=object)
        else:
            out[f.name] = pd.to_numeric(col).astype("Int64").fillna(f.missing).to_numpy(dtype=np.int64)
    return out


def synthetic_inputs(spec, rows: int = 8) -> dict:
    """A few synthetic :data:`RAW_SIGNATURE` input rows for a spec, the last two with every feature missing
    (the sentinels), the others inside the declared ranges / domains (numpy arrays)."""
    import numpy as np

    rows = max(rows, 3)
    present = rows - 2
    out = {}
    for f in spec.model_features:
        if f.dtype == "string":
            vals = [str(v) for v in (f.domain or ("a", "b", "c"))]
            col = [vals[i % len(vals)] for i in range(present)] + ["", f.missing]
            out[f.name] = np.array(col, dtype=object)
        elif f.dtype == "int64":
            if f.kind.value == "boolean":
                vals = [0, 1]
            elif f.domain:
                vals = [int(v) for v in f.domain]
            else:
                lo, hi = f.range or (None, None)
                lo = int(lo) if lo is not None else 0
                vals = list(range(lo, (int(hi) if hi is not None else lo + 5) + 1))[:10] or [lo]
            col = [vals[i % len(vals)] for i in range(present)] + [f.missing, f.missing]
            out[f.name] = np.array(col, dtype=np.int64)
        else:
            lo, hi = f.range or (None, None)
            lo = float(lo) if lo is not None else (float(hi) - 10.0 if hi is not None else 0.0)
            hi = float(hi) if hi is not None else lo + 10.0
            col = list(np.linspace(lo, hi, present)) + [np.nan, np.nan]
            out[f.name] = np.array(col, dtype=np.float32)
    return out


def _tf_dtype_name(dtype) -> str:
    return {"float32": "float32", "int64": "int64", "string": "string"}.get(dtype.name, dtype.name)


def check_model(model_dir: str, spec, rows: int = 8) -> list[str]:
    """Checks a SavedModel directory against the model contract for a spec; returns one line per problem.

    Checked: both signatures present; :data:`RAW_SIGNATURE` takes exactly one input per model feature,
    named after it, with the spec's dtype and a 1-D shape; :data:`EXAMPLES_SIGNATURE` takes
    :data:`EXAMPLES_INPUT` (1-D string); both return :func:`output_key` of the spec's task as float32; a
    call of each on a few synthetic rows (missing sentinels included) returns, per task: binary finite
    probabilities in [0, 1], one per row; regression finite numbers, one per row; multiclass one row of
    ``spec.n_classes`` finite probabilities in [0, 1] per row, each row summing to 1 (within
    :data:`SUM_TOLERANCE`). Every line names the signature and the output.

    Args:
        model_dir: The SavedModel directory (local or ``gs://``).
        spec: The :class:`kfloop.spec.DatasetSpec` the model should serve.
        rows: Synthetic rows per call.

    Returns:
        The problems (empty: the model follows the contract).
    """
    import numpy as np

    from kfloop import fs

    if not fs.is_gcs(model_dir) and not fs.exists(fs.join(model_dir, "saved_model.pb")):
        return [f"{model_dir}: not a SavedModel directory (no saved_model.pb)"]
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(model_dir)
    except Exception as e:  # any load failure is one problem line
        return [f"{model_dir}: the SavedModel does not load ({type(e).__name__}: {str(e).splitlines()[0]})"]
    problems: list[str] = []
    sigs = loaded.signatures
    for name in (RAW_SIGNATURE, EXAMPLES_SIGNATURE):
        if name not in sigs:
            problems.append(f"signature {name!r} is missing (has: {', '.join(sorted(sigs)) or 'none'})")
    task = task_of(spec)
    key = output_key(spec)
    k = spec.n_classes if task == "multiclass" else None

    def outputs_ok(name, fn) -> bool:
        outs = fn.structured_outputs
        if key not in outs:
            others = [v for t, v in OUTPUT_KEYS.items() if t != task and v in outs]
            hint = f"; {others[0]!r} is the output of a {task_of_key(others[0])} model" if others else ""
            problems.append(
                f"signature {name!r}: no output {key!r} (the {task} output; returns: "
                f"{', '.join(sorted(outs))}{hint})"
            )
            return False
        out = outs[key]
        if out.dtype != tf.float32:
            problems.append(
                f"signature {name!r}: output {key!r} is {_tf_dtype_name(out.dtype)}, expected float32"
            )
        want_rank = 2 if k else 1
        if out.shape.rank is not None and out.shape.rank != want_rank:
            problems.append(
                f"signature {name!r}: output {key!r} has shape {out.shape.as_list()}, expected "
                f"{'[batch, ' + str(k) + ']' if k else '[batch]'} for a {task} model"
            )
            return False
        if k and out.shape.rank == 2 and out.shape[1] is not None and out.shape[1] != k:
            problems.append(
                f"signature {name!r}: output {key!r} has {out.shape[1]} columns, the spec has {k} classes "
                f"({', '.join(map(str, spec.classes))})"
            )
            return False
        return True

    def values_ok(name, result, n) -> None:
        p = np.asarray(result[key], dtype=np.float64)
        want = (n, k) if k else (n,)
        if p.shape != want:
            problems.append(
                f"signature {name!r}: output {key!r} has shape {list(p.shape)} for {n} rows, "
                f"expected {list(want)}"
            )
        elif not np.isfinite(p).all():
            problems.append(f"signature {name!r}: output {key!r} is not finite on synthetic rows")
        elif task != "regression" and ((p < 0).any() or (p > 1).any()):
            problems.append(
                f"signature {name!r}: output {key!r} is outside [0, 1] "
                f"(min {p.min():.4g}, max {p.max():.4g}) on synthetic rows"
            )
        elif k and p.size and np.abs(p.sum(axis=1) - 1.0).max() > SUM_TOLERANCE:
            sums = p.sum(axis=1)
            problems.append(
                f"signature {name!r}: output {key!r} rows do not sum to 1 (sums from {sums.min():.4g} "
                f"to {sums.max():.4g} on synthetic rows; a softmax over the {k} classes does)"
            )

    data = synthetic_inputs(spec, rows)
    if RAW_SIGNATURE in sigs:
        fn = sigs[RAW_SIGNATURE]
        args = fn.structured_input_signature[1]
        want = input_specs(spec)
        callable_ = True
        for name, dtype in want.items():
            if name not in args:
                problems.append(f"signature {RAW_SIGNATURE!r}: no input for feature {name!r} ({dtype})")
                callable_ = False
                continue
            got = args[name]
            if _tf_dtype_name(got.dtype) != dtype:
                problems.append(
                    f"signature {RAW_SIGNATURE!r}: input {name!r} is {_tf_dtype_name(got.dtype)}, "
                    f"the spec says {dtype}"
                )
                callable_ = False
            if got.shape.rank != 1:
                shape = got.shape.as_list() if got.shape.rank is not None else "unknown"
                problems.append(
                    f"signature {RAW_SIGNATURE!r}: input {name!r} has shape {shape}, expected 1-D"
                )
                callable_ = False
        for name in args:
            if name not in want:
                problems.append(f"signature {RAW_SIGNATURE!r}: input {name!r} is not a feature of the spec")
                callable_ = False
        if outputs_ok(RAW_SIGNATURE, fn) and callable_:
            try:
                result = fn(**{k: tf.constant(v, dtype=getattr(tf, want[k])) for k, v in data.items()})
            except Exception as e:
                problems.append(f"signature {RAW_SIGNATURE!r}: fails on synthetic rows ({type(e).__name__})")
            else:
                values_ok(RAW_SIGNATURE, result, len(next(iter(data.values()))) if data else 0)
    if EXAMPLES_SIGNATURE in sigs:
        fn = sigs[EXAMPLES_SIGNATURE]
        args = fn.structured_input_signature[1]
        ok = list(args) == [EXAMPLES_INPUT] and args[EXAMPLES_INPUT].dtype == tf.string
        if not ok:
            problems.append(
                f"signature {EXAMPLES_SIGNATURE!r}: must take one string input {EXAMPLES_INPUT!r} "
                f"(takes: {', '.join(f'{k} ({_tf_dtype_name(v.dtype)})' for k, v in args.items())})"
            )
        if outputs_ok(EXAMPLES_SIGNATURE, fn) and ok:
            examples = examples_from_inputs(spec, data)
            try:
                result = fn(**{EXAMPLES_INPUT: tf.constant(examples)})
            except Exception as e:
                problems.append(
                    f"signature {EXAMPLES_SIGNATURE!r}: fails on synthetic rows ({type(e).__name__})"
                )
            else:
                values_ok(EXAMPLES_SIGNATURE, result, len(examples))
    return problems


def task_of_key(key: str) -> str:
    """The task whose output key ``key`` is (:data:`OUTPUT_KEYS`); ``"unknown"`` for another key."""
    return next((t for t, v in OUTPUT_KEYS.items() if v == key), "unknown")


def examples_from_inputs(spec, inputs: dict, labels=None) -> list[bytes]:
    """Serialized ``tf.Example``s of encoded rows (:func:`encode_inputs` form; a sentinel = an absent key).

    Args:
        spec: The dataset spec.
        inputs: ``{feature: array}`` with the missing-value sentinels.
        labels: Optional labels (None entries absent), stored under the label's name: int64 for binary
            (0/1) and multiclass (the class index), float for regression.
    """
    import math

    import tensorflow as tf

    n = len(next(iter(inputs.values()))) if inputs else 0
    float_label = task_of(spec) == "regression"
    out = []
    for i in range(n):
        fmap = {}
        for f in spec.model_features:
            v = inputs[f.name][i]
            if f.dtype == "float32":
                if not math.isnan(float(v)):
                    fmap[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
            elif f.dtype == "string":
                if v != "":
                    fmap[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode()]))
            elif int(v) != f.missing:
                fmap[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
        if labels is not None and labels[i] is not None:
            if float_label:
                value = tf.train.Feature(float_list=tf.train.FloatList(value=[float(labels[i])]))
            else:
                value = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(labels[i])]))
            fmap[spec.label.name] = value
        out.append(tf.train.Example(features=tf.train.Features(feature=fmap)).SerializeToString())
    return out


def to_examples(frame, spec, with_label: bool = True) -> list[bytes]:
    """Serialized ``tf.Example``s of a Dataset-form frame's rows (with the label when asked and present)."""
    import pandas as pd

    labels = None
    if with_label and spec.label.name in frame.columns:
        cast = float if task_of(spec) == "regression" else int
        labels = [None if pd.isna(v) else cast(v) for v in frame[spec.label.name].tolist()]
    return examples_from_inputs(spec, encode_inputs(frame, spec), labels)
