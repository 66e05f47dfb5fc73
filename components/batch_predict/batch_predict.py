"""Batch prediction as plain functions: input → Dataset (SERVING form) → Beam RunInference → log + output.

This module is the job (the Beam pipeline of :func:`score`, the commit of :func:`run_job`) and the package's
public names; each other job has its module beside it: :mod:`.inputs` (request id, ref → version and spec,
the caller's CSV, the errors), :mod:`.chunks` (the scored unit and its coder), :mod:`.reading` (streamed
reading, byte ranges), :mod:`.scoring` (the SavedModel and its Beam model handler), :mod:`.writing` (log
files and output parts written behind the scoring, the output file) and :mod:`.watchdog` (stop with
``kfloop predict``).

The columns come from the dataset spec stored with the model version that scores (:func:`version_spec`,
:func:`kfloop.contract.read_spec`): nothing here knows a dataset.

* :func:`prepare_input` reads the caller's CSV (a Dataset, a raw extract as it comes, or rows with only
  the model features) into a Dataset CSV without label, for validation in the ``SERVING`` environment.
* :func:`score` runs an Apache Beam pipeline (DirectRunner locally; ``beam_args`` pass through, so
  ``--runner=DataflowRunner ...`` scales it out): the Dataset is streamed in chunks of ``chunk_rows``, each
  chunk is one element of ``RunInference`` with :class:`SavedModelHandler` (the SavedModel's
  ``predict_raw`` signature, the one the online server calls, on the same encoded columns), and each scored
  chunk is staged in the prediction log as one attempt of a :class:`kfloop.predlog.BatchJob`
  (``source="batch"``, the format the server writes; consecutive chunks share a file of up to
  :data:`LOG_FILE_ROWS` rows, invisible to readers until the job commits) and as a part of the output.
* :func:`finish_output` joins the parts, in input order, into the output file (CSV or Parquet).
* :func:`run_job` is the whole job: score (staged) → every output → commit the log rows (one commit object,
  written last), so the log holds all of a job's rows or none: a failure or kill at any step before the
  commit leaves no rows, and a rerun with the same request id replaces the earlier attempt's rows.

Every row of a batch job gets the job's request id and its input row number as ``row``; feedback for a
batch prediction is keyed by these two, as for an online request.
"""

from __future__ import annotations

import dataclasses
import time
import typing

from components.batch_predict.chunks import (
    DEFAULT_CHUNK_ROWS,
    Chunk,
    ScoredChunk,
    chunk_len,
    register_chunk_coder,
)
from components.batch_predict.inputs import (
    BatchPredictError,
    BlockedInput,
    new_request_id,
    prepare_input,
    resolve,
    version_spec,
)
from components.batch_predict.reading import read_chunks, read_range, read_ranges, split_ranges
from components.batch_predict.scoring import METRICS_NAMESPACE, SavedModel, saved_model_handler
from components.batch_predict.watchdog import PARENT_PID_ENV, stop_with_parent
from components.batch_predict.writing import (
    _write_behind_class,
    _WriteChunks,
    finish_output,
    part_uris,
    staged_files,
)
from kfloop import fs

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "PARENT_PID_ENV",
    "BatchPredictError",
    "BlockedInput",
    "Chunk",
    "SavedModel",
    "ScoreResult",
    "ScoredChunk",
    "chunk_len",
    "finish_output",
    "in_process_runner",
    "new_request_id",
    "part_uris",
    "prepare_input",
    "read_chunks",
    "read_range",
    "read_ranges",
    "register_chunk_coder",
    "resolve",
    "run_job",
    "score",
    "split_ranges",
    "stop_with_parent",
    "version_spec",
]


def in_process_runner(options) -> bool:
    """Whether a pipeline with these options runs its DoFns in this process, one bundle at a time:
    the DirectRunner (the default) in its in-memory mode with one worker."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner
    direct = options.view_as(DirectOptions)
    return (
        runner in (None, "DirectRunner", "direct", "FnApiRunner")
        and (direct.direct_num_workers or 1) == 1
        and direct.direct_running_mode in (None, "in_memory")
    )


@dataclasses.dataclass
class ScoreResult:
    """What one batch scoring run wrote."""

    rows: int
    chunks: int
    model_version: str
    request_id: str
    seconds: float
    log_files: int
    parts_uri: str
    job: typing.Any = None  # the kfloop.predlog.BatchJob the rows are staged in (None: no log)
    committed: dict | None = None

    def metrics(self) -> dict:
        return {
            "rows": self.rows,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds, 1) if self.seconds else 0.0,
        }


def score(
    dataset_uri: str,
    store_uri: str,
    model_name: str,
    version: str,
    parts_uri: str,
    *,
    log_root: str | None,
    request_id: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    beam_args: list[str] | tuple[str, ...] = (),
    progress: bool = True,
    job=None,
) -> ScoreResult:
    """Scores a Dataset CSV with one store version in an Apache Beam pipeline (``RunInference``).

    The log rows are only staged (:class:`kfloop.predlog.BatchJob`); :func:`run_job` commits them.

    The model features are those of the version's own spec (:func:`version_spec`).

    Args:
        dataset_uri: Dataset CSV with the model features (local or ``gs://``).
        store_uri: Model store root.
        model_name: Model name in the store.
        version: Committed version to score with (see :func:`resolve`).
        parts_uri: Folder for the scored rows, in input order, one part per :data:`LOG_FILE_ROWS` rows or
            less: Parquet parts of the prediction log's columns, or (when the log is written) ``.ref``
            files naming the log file that holds the part's rows.
        log_root: Prediction log root (the store root, as the server uses); None: no log written.
        job: The :class:`kfloop.predlog.BatchJob` to stage the rows in (default: a new attempt of the
            job ``request_id`` under ``log_root``).
        request_id: The job's request id (default :func:`new_request_id`).
        chunk_rows: Rows per Beam element / model call.
        beam_args: Beam pipeline options (``--runner=DataflowRunner``, ``--direct_num_workers=2``, ...).
        progress: Print one line per scored chunk.

    Returns:
        A :class:`ScoreResult`.
    """
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    from kfloop import predlog

    request_id = request_id or new_request_id()
    version, spec, _ = version_spec(store_uri, model_name, version)
    if job is None and log_root:
        job = predlog.BatchJob(log_root, model_name, request_id)
    handler = saved_model_handler(store_uri, model_name, version)
    writer = _WriteChunks(job, model_name, version, request_id, parts_uri, progress, spec)
    register_chunk_coder()
    local = not fs.is_gcs(dataset_uri)
    t0 = time.perf_counter()
    options = PipelineOptions(list(beam_args))
    # A Reshuffle spreads work over workers; a runner that works in this process has one, and skips it.
    spread = not in_process_runner(options)
    if local:
        # One range per element for a runner with workers (each numbered by its newline count); one
        # element of all ranges in this process, so that read_ranges parses ahead across ranges (and
        # numbers the rows as it reads them).
        ranges = split_ranges(dataset_uri, count_rows=spread)
        ranges = [(dataset_uri, [r]) for r in ranges] if spread else [(dataset_uri, ranges)]
    else:
        ranges = [dataset_uri]
    p = beam.Pipeline(options=options)
    ranges = p | "Ranges" >> beam.Create(ranges)
    if spread:  # tiny elements: each worker then reads, scores and writes its ranges
        ranges = ranges | "Spread" >> beam.Reshuffle()
    chunks = ranges | "ReadChunks" >> beam.FlatMap(
        read_ranges if local else read_chunks, chunk_rows=chunk_rows, spec=spec
    ).with_output_types(Chunk)
    if not local and spread:
        # A gs:// file is one range, read by one worker: spread its chunks for scoring and writing.
        chunks = chunks | "SpreadChunks" >> beam.Reshuffle().with_output_types(Chunk)
    scored = chunks | "RunInference" >> RunInference(handler).with_output_types(ScoredChunk)
    _ = scored | "Write" >> beam.ParDo(_write_behind_class()(writer))
    run = p.run()
    run.wait_until_finish()
    seconds = time.perf_counter() - t0
    counters = {
        c.key.metric.name: c.committed
        for c in run.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    }
    return ScoreResult(
        rows=int(counters.get("rows", 0)),
        chunks=int(counters.get("chunks", 0)),
        model_version=version,
        request_id=request_id,
        seconds=seconds,
        log_files=int(counters.get("log_files", 0)),
        parts_uri=parts_uri,
        job=job,
    )


def run_job(
    dataset_uri: str,
    store_uri: str,
    model_name: str,
    version: str,
    parts_uri: str,
    outputs: list[str],
    *,
    log: bool = True,
    request_id: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    beam_args: list[str] | tuple[str, ...] = (),
    progress: bool = True,
) -> ScoreResult:
    """One batch job, atomic in the prediction log: score (rows staged) → write every output → commit.

    The log rows are committed last (:meth:`kfloop.predlog.BatchJob.commit`, one small object), only
    after every output is written: a failure at any step removes this attempt's staged rows and logs
    nothing; a process killed before the commit leaves only staged files, which no reader lists. A rerun
    with the same ``request_id`` commits over the earlier attempt (its rows replace the earlier ones).

    Args:
        dataset_uri, store_uri, model_name, version, parts_uri, request_id, chunk_rows, beam_args,
            progress: As for :func:`score`.
        outputs: Files to write the scored rows to (:func:`finish_output`), in order.
        log: Write (and commit) the prediction log under ``store_uri``.

    Returns:
        The :class:`ScoreResult` (``committed``: the commit object, or None without log).
    """
    from kfloop import predlog

    request_id = request_id or new_request_id()
    job = predlog.BatchJob(store_uri, model_name, request_id) if log else None
    try:
        result = score(
            dataset_uri,
            store_uri,
            model_name,
            version,
            parts_uri,
            log_root=store_uri if log else None,
            request_id=request_id,
            chunk_rows=chunk_rows,
            beam_args=beam_args,
            progress=progress,
            job=job,
        )
        for out in outputs:
            finish_output(parts_uri, out)
        if job is not None:
            result.committed = job.commit(staged_files(parts_uri), result.rows)
    except BaseException:
        if job is not None:
            job.abort()
        raise
    return result
