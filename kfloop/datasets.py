"""Reading and writing kfloop Dataset artifacts (CSV with :data:`kfloop.features.DATASET_COLUMNS`).

Also the one conversion from rows to the encoded form every model-facing part uses (tensors with the
missing-value sentinels of :mod:`kfloop.features`, and serialized ``tf.Example``s).
"""

from __future__ import annotations

import io

from kfloop import features as F
from kfloop import fs


def read_dataset(uri: str):
    """Reads a Dataset CSV (local path or ``gs://``) into a pandas DataFrame with proper dtypes.

    Numeric columns are float (NaN = missing); categorical-int, timestamp and label columns are
    pandas nullable ``Int64``; strings are ``object`` with NaN for missing.
    """
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(fs.read_bytes(uri)), dtype=str, keep_default_na=False, na_values=[""])
    for name in frame.columns:
        try:
            kind = F.feature(name).kind
        except KeyError:
            continue
        if kind == F.Kind.NUMERIC:
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        elif kind in (F.Kind.CATEGORICAL_INT, F.Kind.TIMESTAMP, F.Kind.LABEL):
            frame[name] = pd.to_numeric(frame[name]).astype("Int64")
    return frame


def write_dataset(frame, uri: str) -> None:
    """Writes a DataFrame as a Dataset CSV (missing values as empty cells), atomically."""
    fs.write_text(uri, frame.to_csv(index=False, na_rep=""))


def encode(frame, features=F.MODEL_FEATURES) -> dict:
    """Encodes model features of a DataFrame as numpy arrays with the missing-value sentinels.

    Returns:
        ``{name: np.ndarray}``: float32 for numeric, int64 for categorical ints, object (str) for strings.
    """
    import numpy as np

    out = {}
    for f in features:
        col = frame[f.name]
        if f.kind == F.Kind.NUMERIC:
            out[f.name] = col.astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)
        elif f.kind == F.Kind.CATEGORICAL_STR:
            out[f.name] = col.fillna("").astype(str).to_numpy(dtype=object)
        else:
            out[f.name] = col.astype("Int64").fillna(f.missing).to_numpy(dtype=np.int64)
    return out


def to_examples(frame, with_label: bool = True) -> list[bytes]:
    """Serializes rows as ``tf.Example`` protos (absent key = missing value), for TFMA and serving_default."""
    import pandas as pd
    import tensorflow as tf

    feats = F.MODEL_FEATURES + ((F.LABEL,) if with_label and F.LABEL.name in frame.columns else ())
    cols = {f.name: frame[f.name].tolist() for f in feats}
    out = []
    for i in range(len(frame)):
        fmap = {}
        for f in feats:
            v = cols[f.name][i]
            if pd.isna(v):
                continue
            if f.kind == F.Kind.NUMERIC:
                fmap[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
            elif f.kind == F.Kind.CATEGORICAL_STR:
                fmap[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode()]))
            else:
                fmap[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
        out.append(tf.train.Example(features=tf.train.Features(feature=fmap)).SerializeToString())
    return out
