"""KFP wrapper of :func:`components.champion.champion.champion_uri`."""

from typing import NamedTuple

from kfp.dsl import Markdown, Output

from components._kfp import component


@component
def champion_op(store_uri: str, model_name: str, report: Output[Markdown]) -> NamedTuple(
    "Champion", [("version", str), ("model_uri", str)]
):
    """Looks up the model in production (the store's ``champion`` alias) for the evaluation to beat.

    Args:
        store_uri: Model store root (local directory or ``gs://bucket/prefix``).
        model_name: Name of the model in the store.

    Returns:
        report: Which version is champion, or that there is none yet.
        version: Champion version ("" when there is none).
        model_uri: URI of the champion's SavedModel ("" when there is none).
    """
    from collections import namedtuple

    from components.champion.champion import champion_uri

    version, uri = champion_uri(store_uri, model_name)
    with open(report.path, "w") as f:
        if version:
            f.write(f"Champion of **{model_name}**: `{version}` at `{uri}`\n")
        else:
            f.write(f"No champion of **{model_name}** yet: the challenger is judged on value thresholds.\n")
    return namedtuple("Champion", ["version", "model_uri"])(version, uri)
