"""Writing scored chunks: staged prediction-log files and output parts, written behind the scoring
(:func:`_write_behind_class`), and the caller's output file joined from the parts (:func:`finish_output`).
"""

from __future__ import annotations

import collections
import time
import uuid

from components.batch_predict.chunks import chunk_len
from components.batch_predict.scoring import METRICS_NAMESPACE
from kfloop import fs

#: Rows per prediction-log file (and per part of the output) of a batch job: consecutive scored chunks
#: are written together, so that a 1M-row job writes 16 files, not 64 (each file costs an fsync, a
#: rename, a footer and a ``.ref``; monitoring then lists and opens fewer files).
LOG_FILE_ROWS = 65_536
#: Groups of chunks being written at once by the write step's thread (bounds the memory they hold:
#: with the group being filled, at most ``(WRITES_IN_FLIGHT + 1) * LOG_FILE_ROWS`` rows).
WRITES_IN_FLIGHT = 2


def _write_behind_class():
    import apache_beam as beam

    class WriteBehind(beam.DoFn):
        """Writes the scored chunks in a background thread (:class:`_WriteChunks`), so that the Parquet
        encoding (which releases the GIL) runs beside the next chunks' reading and scoring.

        Consecutive chunks (each starting where the one before ended) are grouped up to
        :data:`LOG_FILE_ROWS` rows and written as one file; a gap or the end of the bundle ends a group.
        At most :data:`WRITES_IN_FLIGHT` groups are pending; the bundle finishes only when all its writes
        have (a failed write fails the bundle, after the others are waited for). Counters and progress
        lines are emitted from the DoFn's own thread, where Beam's metrics container lives.
        """

        def __init__(self, write: _WriteChunks):
            self._write = write

        def setup(self):
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kfloop-batch-write")

        def start_bundle(self):
            self._pending = collections.deque()
            self._group, self._group_rows, self._next_row = [], 0, None

        def process(self, result):
            first, n = result.example[0], chunk_len(result.example)
            if self._group and first != self._next_row:
                self._submit()
            self._group.append(result)
            self._group_rows += n
            self._next_row = first + n
            if self._group_rows >= LOG_FILE_ROWS:
                self._submit()
            return ()

        def finish_bundle(self):
            try:
                if self._group:
                    self._submit()
                while self._pending:
                    self._done(self._pending.popleft())
            finally:
                for future in self._pending:  # after a failure: wait for the rest, then re-raise
                    future.exception()
                self._pending.clear()
                self._group, self._group_rows = [], 0

        def teardown(self):
            pool = getattr(self, "_pool", None)
            if pool is not None:
                pool.shutdown(wait=True)

        def _submit(self) -> None:
            self._pending.append(self._pool.submit(self._write.write, self._group))
            self._group, self._group_rows = [], 0
            while len(self._pending) > WRITES_IN_FLIGHT:
                self._done(self._pending.popleft())

        def _done(self, future) -> None:
            self._write.count(*future.result())

    return WriteBehind


class _WriteChunks:
    """Writes consecutive scored chunks: one staged prediction-log file and one part of the output (rows of
    the prediction schema of ``spec``, the scoring version's)."""

    def __init__(self, job, model_name, version, request_id, parts_uri, progress, spec):
        self.job, self.model_name, self.version = job, model_name, version
        self.request_id, self.parts_uri, self.progress = request_id, parts_uri, progress
        self.spec = spec

    def write(self, results: list) -> tuple[int, int, int, int]:
        """Writes scored chunks whose rows follow each other; returns ``(first row, rows, log files
        written, chunks)``."""
        import numpy as np
        import pyarrow as pa

        from kfloop import predlog

        now = time.time()
        tables = []
        for result in results:
            first, columns = result.example
            # The string features as parsed (Arrow), not back from the encoded per-row Python strings.
            columns = {**columns, **getattr(result.example, "strings", {})}
            probs = np.asarray(result.inference, dtype=np.float32)
            rows = np.arange(first, first + len(probs), dtype=np.int64)
            tables.append(
                predlog.prediction_table(
                    self.request_id,
                    now,
                    self.version,
                    columns,
                    probs,
                    source="batch",
                    rows=rows,
                    schema=self.spec,
                )
            )
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        first = results[0].example[0]
        written = []
        if self.job is not None:
            # Unique per group and bundle attempt: Beam workers each count their own file sequence, and a
            # retried bundle must not collide with its first attempt. Staged: readers see it once the job
            # commits the files its parts name (a failed bundle's files are named by no part).
            writer = f"b-{first:012d}-{uuid.uuid4().hex[:6]}"
            written = self.job.write(table, writer_id=writer)
            # The log file holds exactly these rows in order: the output refers to it (one write).
            fs.write_text(fs.join(self.parts_uri, f"part-{first:012d}.ref"), "\n".join(written) + "\n")
        else:
            fs.write_bytes(
                fs.join(self.parts_uri, f"part-{first:012d}.parquet"), predlog.parquet_bytes(table)
            )
        return first, table.num_rows, len(written), len(results)

    def count(self, first: int, n: int, log_files: int, chunks: int) -> None:
        """Counts written chunks (Beam metrics: committed = successful attempts) and prints progress."""
        from apache_beam.metrics import Metrics

        if self.progress:
            print(f"batch predict: scored rows {first}..{first + n - 1}", flush=True)
        Metrics.counter(METRICS_NAMESPACE, "rows").inc(n)
        Metrics.counter(METRICS_NAMESPACE, "chunks").inc(chunks)
        Metrics.counter(METRICS_NAMESPACE, "log_files").inc(log_files)


def staged_files(parts_uri: str) -> list[str]:
    """The staged log files the parts' ``.ref`` files name (the rows of the successful bundles)."""
    out = []
    for uri in part_uris(parts_uri):
        if uri.endswith(".ref"):
            out += [u for u in fs.read_text(uri).splitlines() if u]
    return out


def part_uris(parts_uri: str) -> list[str]:
    """The scored parts under ``parts_uri``, in input-row order."""
    return sorted(u for u in fs.list_files(parts_uri) if u.rsplit("/", 1)[-1].startswith("part-"))


def finish_output(parts_uri: str, output_uri: str) -> int:
    """Joins the scored parts, in input order, into the caller's output file; returns its row count.

    ``.csv`` output: ``request_id, row, timestamp, model_version, source``, the raw features (empty =
    missing) and the task's output (``probability``; ``prediction``; multiclass ``probability[<class>]``
    per class and the predicted ``class``); anything else: one Parquet file of the prediction log's schema (the
    scoring version's spec's, as the parts have it). Parts are
    read one at a time; the file appears whole (written to a temp file, then moved / uploaded).
    """
    import os
    import tempfile

    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from kfloop import predlog

    parts = part_uris(parts_uri)
    rows = 0
    fd, tmp = tempfile.mkstemp(prefix="kfloop-batch-out-")
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        as_csv = output_uri.lower().endswith(".csv")
        writer = None
        with open(tmp, "wb") as sink:
            for uri in parts:
                table = _read_part(uri)
                rows += table.num_rows
                if as_csv:
                    table = table.set_column(
                        table.schema.get_field_index("timestamp"),
                        "timestamp",
                        pc.strftime(table.column("timestamp"), format="%Y-%m-%dT%H:%M:%SZ"),
                    )
                    table = _flat_outputs(table)
                    options = pcsv.WriteOptions(include_header=writer is None)
                    pcsv.write_csv(table, sink, write_options=options)
                    writer = True
                else:
                    if writer is None:
                        schema = predlog.as_prediction_schema(table.schema)
                        writer = pq.ParquetWriter(sink, schema, compression=predlog.COMPRESSION)
                    writer.write_table(table.select(schema.names).cast(schema))
            if writer is not None and not as_csv:
                writer.close()
        if fs.is_gcs(output_uri):
            bucket, key = fs.split_gcs(output_uri)
            fs.gcs_client().bucket(bucket).blob(key).upload_from_filename(tmp)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(output_uri)), exist_ok=True)
            os.replace(tmp, output_uri) if _same_fs(tmp, output_uri) else _copy(tmp, output_uri)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows


def _flat_outputs(table):
    """A multiclass table for CSV: its ``probabilities`` list column becomes one column per class,
    ``probability[<class>]`` in the spec's class order (the schema's ``kfloop.classes``), then ``class``
    (the most probable one); other tables unchanged."""
    import json

    import numpy as np
    import pyarrow as pa

    name = "probabilities"
    if name not in table.schema.names or not pa.types.is_list(table.schema.field(name).type):
        return table
    meta = table.schema.metadata or {}
    col = table.column(name).combine_chunks()
    k = len(col[0]) if len(col) else 0
    classes = json.loads(meta[b"kfloop.classes"]) if b"kfloop.classes" in meta else list(range(k))
    probs = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, len(classes))
    table = table.drop([name])
    for i, c in enumerate(classes):
        table = table.append_column(f"probability[{c}]", pa.array(probs[:, i], type=pa.float32()))
    best = np.asarray(classes, dtype=object)[probs.argmax(axis=1)] if len(probs) else []
    return table.append_column("class", pa.array([str(b) for b in best], type=pa.string()))


def _read_part(uri: str):
    """One scored chunk: a Parquet part, or a ``.ref`` naming the prediction-log file(s) that hold it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if uri.endswith(".ref"):
        refs = [u for u in fs.read_text(uri).splitlines() if u]
        tables = [pq.read_table(pa.BufferReader(fs.read_bytes(u))) for u in refs]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return pq.read_table(pa.BufferReader(fs.read_bytes(uri)))


def _same_fs(a: str, b: str) -> bool:
    import os

    try:
        return os.stat(a).st_dev == os.stat(os.path.dirname(os.path.abspath(b))).st_dev
    except OSError:
        return False


def _copy(src: str, dest: str) -> None:
    import os
    import shutil

    tmp = f"{dest}.tmp-{uuid.uuid4().hex[:6]}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
