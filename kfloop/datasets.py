"""Reading and writing kfloop Dataset artifacts (CSV with a spec's ``dataset_columns``).

Also the one conversion from rows to the encoded form every model-facing part uses (tensors with the
missing-value sentinels of :attr:`kfloop.spec.Feature.missing`, and serialized ``tf.Example``s). Every
function takes the dataset spec (:class:`kfloop.spec.DatasetSpec`) that says what the columns are.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from kfloop import fs
from kfloop.spec import Kind

if TYPE_CHECKING:
    from kfloop.spec import DatasetSpec, Feature

#: Kinds encoded as int64 (0/1 for booleans and the label; -1 = missing).
_INT_KINDS = (Kind.CATEGORICAL_INT, Kind.BOOLEAN, Kind.TIMESTAMP, Kind.LABEL)


def read_dataset(uri: str, spec: DatasetSpec):
    """Reads a Dataset CSV (local path or ``gs://``) into a pandas DataFrame with proper dtypes.

    Numeric columns and a regression label are float (NaN = missing); categorical-int, boolean, timestamp and label columns are
    pandas nullable ``Int64``; strings are ``object`` with NaN for missing. Columns the spec does not
    know are kept as text.
    """
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(fs.read_bytes(uri)), dtype=str, keep_default_na=False, na_values=[""])
    for name in frame.columns:
        try:
            kind = spec.feature(name).kind
        except KeyError:
            continue
        if kind in (Kind.NUMERIC, Kind.TARGET):
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        elif kind in _INT_KINDS:
            frame[name] = pd.to_numeric(frame[name]).astype("Int64")
    return frame


def write_dataset(frame, uri: str) -> None:
    """Writes a DataFrame as a Dataset CSV (missing values as empty cells), atomically.

    Lines end in CRLF (RFC 4180): with a bare LF terminator Python's csv writer leaves a value holding a
    carriage return unquoted, and reading the file back would split its row in two.
    """
    fs.write_text(uri, frame.to_csv(index=False, na_rep="", lineterminator="\r\n"))


def encode(frame, spec: DatasetSpec, features: tuple[Feature, ...] | None = None) -> dict:
    """Encodes model features of a Dataset-form DataFrame as numpy arrays with the missing-value sentinels.

    Args:
        frame: Dataset form (e.g. :func:`read_dataset`, :func:`kfloop.clean.clean`).
        spec: The dataset spec.
        features: The features to encode; default ``spec.model_features``.

    Returns:
        ``{name: np.ndarray}``: float32 for numeric, int64 for categorical ints and booleans (0/1, -1 =
        missing), object (str) for strings.
    """
    import numpy as np

    out = {}
    for f in spec.model_features if features is None else features:
        col = frame[f.name]
        if f.kind == Kind.NUMERIC:
            out[f.name] = col.astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
        elif f.kind == Kind.CATEGORICAL_STR:
            out[f.name] = col.fillna("").astype(str).to_numpy(dtype=object)
        else:
            out[f.name] = col.astype("Int64").fillna(f.missing).to_numpy(dtype=np.int64)
    return out


def to_examples(frame, spec: DatasetSpec, with_label: bool = True) -> list[bytes]:
    """Serializes Dataset-form rows as ``tf.Example`` protos (absent key = missing value), for TFMA and
    serving_default: floats for numeric features and a regression label, bytes for strings, int64 for the
    rest (a class label: 0/1 or the class index)."""
    import pandas as pd
    import tensorflow as tf

    label = spec.label
    feats = spec.model_features + ((label,) if with_label and label.name in frame.columns else ())
    cols = {f.name: frame[f.name].tolist() for f in feats}
    out = []
    for i in range(len(frame)):
        fmap = {}
        for f in feats:
            v = cols[f.name][i]
            if pd.isna(v):
                continue
            if f.kind in (Kind.NUMERIC, Kind.TARGET):
                fmap[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
            elif f.kind == Kind.CATEGORICAL_STR:
                fmap[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode()]))
            else:
                fmap[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
        out.append(tf.train.Example(features=tf.train.Features(feature=fmap)).SerializeToString())
    return out
