"""KFP wrapper of :func:`kfloop.ingest.ingest`."""

from kfp.dsl import Dataset, Metrics, Output

from components._kfp import component


@component
def ingest_op(
    source: str,
    spec: str,
    cutoff: str,
    window_start: str,
    live_end: str,
    eval_fraction: float,
    train_data: Output[Dataset],
    eval_data: Output[Dataset],
    live_data: Output[Dataset],
    counts: Output[Metrics],
):
    """Reads a CSV, cleans and labels it per the dataset spec, and splits it by time into train / eval / live.

    Args:
        source: CSV in raw (or Dataset) form, local path or ``gs://``.
        spec: The dataset spec: its YAML text, or a path / ``gs://`` URI of it.
        cutoff: Start of the live window (UTC date or epoch seconds; a row position without a time column;
            "" = the middle row).
        window_start: Start of the training window ("" = first row).
        live_end: End of the live window, exclusive ("" = after the last row).
        eval_fraction: Share of the training window held out (by row hash) for evaluation.

    Returns:
        train_data: Training split (CSV, the training window minus the eval hold-out).
        eval_data: Evaluation split (CSV, a deterministic hold-out of the training window).
        live_data: Later "live" window (CSV), replayed as traffic by the local loop.
        counts: Row counts per split (KFP Metrics).
    """
    from kfloop import spec as S
    from kfloop.ingest import ingest

    result = ingest(
        source,
        S.load(spec),
        cutoff,
        train_data.path,
        eval_data.path,
        live_data.path,
        window_start=window_start,
        live_end=live_end,
        eval_fraction=eval_fraction,
    )
    for name, value in result.metrics().items():
        counts.log_metric(name, value)
    for art, (lo, hi) in (
        (train_data, result.train_window),
        (eval_data, result.train_window),
        (live_data, result.live_window),
    ):
        art.metadata.update({"window_start": lo, "window_end": hi, "format": "csv"})
    train_data.metadata["rows"] = result.train_rows
    eval_data.metadata["rows"] = result.eval_rows
    live_data.metadata["rows"] = result.live_rows
