"""The recorded monitoring runs of a model: one summary per window (:func:`record_run`), the series
(:func:`read_runs`) and its per-feature drift / skew values (:func:`drift_series`).

Below both :mod:`components.monitor.monitor` (which records a run) and :mod:`components.monitor.backfill`
(which reads the runs to backfill their windows).
"""

from __future__ import annotations

from kfloop import layout, records


def record_run(store_uri: str, model_name: str, summary: dict) -> str:
    """Appends one monitoring summary to the store's series; returns its URI."""
    return records.write(store_uri, model_name, layout.RUNS, summary["run_id"], summary)


def read_runs(store_uri: str, model_name: str) -> list[dict]:
    """Every recorded monitoring summary, oldest window first (the drift time series)."""
    return records.read_all(
        store_uri,
        model_name,
        layout.RUNS,
        sort_key=lambda r: (r.get("window_end", ""), r.get("monitored_at", "")),
    )


def drift_series(runs: list[dict], kind: str = "drift") -> dict[str, list[tuple[str, float]]]:
    """``{feature: [(window_end, value), ...]}`` over the runs (kind ``drift`` or ``skew``)."""
    series: dict[str, list[tuple[str, float]]] = {}
    for r in runs:
        for s in r.get(kind) or []:
            if s.get("value") is not None:
                series.setdefault(s["feature"], []).append((r["window_end"], float(s["value"])))
    return series
