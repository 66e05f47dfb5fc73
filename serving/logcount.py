"""Counting the rows of a prediction log, whatever its file format (JSONL lines or Parquet files).

The log moved from JSONL to Parquet (one row per predicted row in both); tests and ``benchmarks/soak.py``
compare answered rows with logged rows through this one function so they hold across the change.
"""

from __future__ import annotations

from kfloop import fs, layout


def count_logged_rows(log_root: str, model_name: str) -> int:
    """Rows logged for ``model_name`` under ``log_root`` (``predictions/<model>/date=*/``), both formats.

    ``.jsonl`` files count their non-empty lines, ``.parquet`` files their footer's row count (pyarrow needed
    only when such files exist). Other files (temporary uploads) are ignored.
    """
    prefix = layout.predictions(log_root, model_name)
    total = 0
    for uri in fs.list_files(prefix):
        if uri.endswith(".jsonl"):
            total += sum(1 for line in fs.read_bytes(uri).splitlines() if line.strip())
        elif uri.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            total += pq.ParquetFile(pa.BufferReader(fs.read_bytes(uri))).metadata.num_rows
    return total
