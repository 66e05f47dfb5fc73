"""Pointing at the rows behind a schema anomaly: the first value of a column outside its schema domain.

TFDV reports anomalies per feature, from statistics. For a file a person has to fix (a raw extract), the
first offending CSV line is what they need; :func:`first_offending_row` finds it in the data itself, from
the same schema the statistics were validated against.
"""

from __future__ import annotations


def _domain(schema, name: str):
    """``("float"|"int", min, max)`` or ``("string", values)`` of a schema feature, or None."""
    for feat in schema.feature:
        if feat.name != name:
            continue
        which = feat.WhichOneof("domain_info")
        if which == "float_domain":
            d = feat.float_domain
            return ("float", d.min if d.HasField("min") else None, d.max if d.HasField("max") else None)
        if which == "int_domain":
            d = feat.int_domain
            return ("int", d.min if d.HasField("min") else None, d.max if d.HasField("max") else None)
        if which == "string_domain":
            return ("string", set(feat.string_domain.value))
        if which == "domain":
            for sd in schema.string_domain:
                if sd.name == feat.domain:
                    return ("string", set(sd.value))
        return None
    return None


def first_offending_row(frame, schema, name: str):
    """The first row whose ``name`` value lies outside the schema's domain for that feature.

    Args:
        frame: Typed DataFrame (e.g. :func:`kfloop.clean.clean` output), in file order.
        schema: TFDV ``Schema`` proto.
        name: Feature name.

    Returns:
        ``(position, value)`` (0-based data row) or ``None`` when the column is absent, has no domain in
        the schema, or every value is inside it.
    """
    import pandas as pd

    if name not in frame.columns:
        return None
    domain = _domain(schema, name)
    if domain is None:
        return None
    col = frame[name].reset_index(drop=True)
    present = col.notna()
    if domain[0] == "string":
        bad = present & ~col.astype(str).isin(domain[1])
    else:
        values = pd.to_numeric(col, errors="coerce").astype("float64")
        bad = pd.Series(False, index=col.index)
        if domain[1] is not None:
            bad |= present & (values < domain[1])
        if domain[2] is not None:
            bad |= present & (values > domain[2])
    if not bad.any():
        return None
    pos = int(bad.to_numpy().argmax())
    return pos, col[pos]
