"""One monitoring window of the Parquet log, streamed in bounded memory.

Pass 1 reads the window's prediction files (:func:`kfloop.predlog.scan`: only the window's date partitions,
filter on ``timestamp``, corrupt files skipped and named) and the feedback files of the label horizon, one
record batch at a time. Every row is checked (:func:`check_predictions`, :func:`check_feedback`); a bad row
is skipped and counted with its reason, never raised. Good rows are spilled, hash-partitioned on
``(request_id, row)``, into ``buckets`` local Arrow files (predictions and feedback alike).

Pass 2 takes one bucket at a time: duplicate ``(request_id, row)`` predictions are dropped (and counted),
the bucket's labels are joined (the first label for a key is kept: :mod:`kfloop.labels`), the live
metric's counters of the task are updated (binary: the live-AUC histograms; regression: squared and
absolute errors; multiclass: correct rows and log loss) and the model's output is counted in the bins of
the champion's eval predictions (output drift), and the rows go on as TFDV record batches (one list value per cell,
null = missing; numeric features also clipped to the reference's quantiles, as extra columns) into staged
Arrow IPC files for the statistics pipeline. Memory holds one log file or one bucket (``rows / buckets``), whatever the window.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kfloop import labels as L
from kfloop import predlog as P
from kfloop import reference as R

#: Spill partitions: pass 2 holds about ``rows / BUCKETS`` rows.
BUCKETS = 64

#: Probability histogram resolution for the live AUC (2**20 bins on [0, 1]: ties only below 1e-6).
AUC_BINS = 1 << 20

#: Rows per TFDV record batch.
BATCH_ROWS = 10_000


def _mask_reason(counts: collections.Counter, mask, reason: str):
    n = int(np.count_nonzero(mask))
    if n:
        counts[reason] += n
    return mask


def _np(arr) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def output_column(spec) -> str:
    """The prediction log's output column of a spec's task (``probability``, ``prediction``,
    ``probabilities``)."""
    return R.OUTPUT_KEYS[_task(spec)]


def _task(spec) -> str:
    return spec.task.value if spec is not None else "binary"


def outputs_of(table, spec) -> np.ndarray:
    """The model outputs of checked prediction rows: float64 [n] (binary, regression) or [n, K]."""
    col = table.column(output_column(spec))
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
        k = spec.n_classes
        return _np(col.flatten()).astype(np.float64).reshape(-1, k)
    return _np(col).astype(np.float64)


def _bad_outputs(batch: pa.RecordBatch, spec) -> tuple[np.ndarray, str]:
    """Rows whose output is not one of the task's (reason text per task)."""
    task = _task(spec)
    col = batch.column(batch.schema.get_field_index(output_column(spec)))
    if task == "multiclass":
        k = spec.n_classes
        bad = ~_np(col.is_valid())
        if pa.types.is_list(col.type):
            bad |= _np(pc.fill_null(pc.list_value_length(col), 0)) != k
        vals = np.full((len(col), k), np.nan)
        ok = np.flatnonzero(~bad)
        if ok.size:
            flat = _np(pc.fill_null(col.take(pa.array(ok)).flatten().cast(pa.float64()), np.nan))
            vals[ok] = flat.reshape(-1, k)
        with np.errstate(invalid="ignore"):
            bad |= ~(((vals >= 0) & (vals <= 1)).all(axis=1) & (np.abs(vals.sum(axis=1) - 1) <= 1e-3))
        return bad, f"probabilities not a distribution over the {k} classes"
    v = _np(pc.fill_null(col.cast(pa.float64()), np.nan))
    if task == "regression":
        return ~np.isfinite(v), "prediction not a finite number"
    with np.errstate(invalid="ignore"):
        return ~((v >= 0.0) & (v <= 1.0)), "probability not a number in [0, 1]"


def check_predictions(
    batch: pa.RecordBatch, counts: collections.Counter, numeric: tuple[str, ...] = (), spec=None
) -> pa.RecordBatch:
    """The good rows of a prediction batch; every bad row is counted in ``counts`` by reason.

    Bad: an empty ``request_id`` or ``model_version``, a negative ``row``, an output that is not the
    task's (``spec``'s; None: binary): a probability that is not a number in [0, 1] (NaN, infinite, null),
    a regression prediction that is not finite, multiclass probabilities that are not K numbers in [0, 1]
    summing to 1; a non-finite value (NaN that is not null, infinity) of one of the ``numeric`` features
    (the spec's numeric model inputs).
    """
    bad = np.zeros(batch.num_rows, dtype=bool)
    rid = batch.column(batch.schema.get_field_index("request_id"))
    bad |= _mask_reason(
        counts, ~_np(pc.fill_null(pc.greater(pc.utf8_length(rid), 0), False)), "empty request_id"
    )
    ver = batch.column(batch.schema.get_field_index("model_version"))
    bad |= _mask_reason(
        counts, ~_np(pc.fill_null(pc.greater(pc.utf8_length(ver), 0), False)) & ~bad, "empty model_version"
    )
    row = batch.column(batch.schema.get_field_index("row"))
    bad |= _mask_reason(counts, ~_np(pc.fill_null(pc.greater_equal(row, 0), False)) & ~bad, "negative row")
    bad_p, why = _bad_outputs(batch, spec)
    bad |= _mask_reason(counts, bad_p & ~bad, why)
    for name in numeric:
        if name not in batch.schema.names:
            continue
        v = _np(pc.fill_null(batch.column(batch.schema.get_field_index(name)), 0.0))
        bad |= _mask_reason(counts, ~np.isfinite(v) & ~bad, f"{name} not finite")
    if not bad.any():
        return batch
    return batch.filter(pa.array(~bad))


def check_feedback(batch: pa.RecordBatch, counts: collections.Counter, spec=None) -> pa.RecordBatch:
    """The good rows of a feedback batch (empty request id, negative row, a label that is not the task's
    are counted): binary 0 / 1, multiclass a class index 0..K-1, regression a finite number."""
    bad = np.zeros(batch.num_rows, dtype=bool)
    rid = batch.column(batch.schema.get_field_index("request_id"))
    bad |= _mask_reason(
        counts, ~_np(pc.fill_null(pc.greater(pc.utf8_length(rid), 0), False)), "empty request_id"
    )
    row = batch.column(batch.schema.get_field_index("row"))
    bad |= _mask_reason(counts, ~_np(pc.fill_null(pc.greater_equal(row, 0), False)) & ~bad, "negative row")
    task = _task(spec)
    lab = _np(pc.fill_null(batch.column(batch.schema.get_field_index("label")).cast(pa.float64()), np.nan))
    if task == "regression":
        bad_l, why = ~np.isfinite(lab), "label not a finite number"
    elif task == "multiclass":
        k = spec.n_classes
        bad_l, why = ~np.isin(lab, np.arange(k)), f"label not a class index in 0..{k - 1}"
    else:
        bad_l, why = ~np.isin(lab, (0, 1)), "label not 0 or 1"
    bad |= _mask_reason(counts, bad_l & ~bad, why)
    if not bad.any():
        return batch
    return batch.filter(pa.array(~bad))


def _feedback_schema(spec) -> pa.Schema:
    """The feedback log schema of the spec's task (its ``label`` typed per task)."""
    make = getattr(P, "feedback_schema", None)  # kfloop.predlog's per-task schema (issue 26)
    return make(spec) if make is not None else P.FEEDBACK_SCHEMA


def _bucket_of(batch: pa.RecordBatch, buckets: int) -> np.ndarray:
    """Bucket of each row's ``(request_id, row)``: the same in pass 1 for predictions and feedback."""
    rid = batch.column(batch.schema.get_field_index("request_id"))
    enc = pc.dictionary_encode(rid)
    words = enc.dictionary.to_pylist()
    hashes = np.fromiter((hash(w) for w in words), dtype=np.int64, count=len(words))
    h = hashes[_np(enc.indices)]
    rows = _np(batch.column(batch.schema.get_field_index("row"))).astype(np.int64)
    return ((h ^ (rows * 0x9E3779B1)) % buckets).astype(np.int64)


class _Spill:
    """``buckets`` append-only Arrow IPC files of one schema."""

    def __init__(self, folder: str, name: str, schema: pa.Schema, buckets: int):
        self.paths = [os.path.join(folder, f"{name}-{i:03d}.arrow") for i in range(buckets)]
        self.schema = schema
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._sinks: dict[int, object] = {}

    def add(self, batch: pa.RecordBatch, which: np.ndarray) -> None:
        if batch.schema != self.schema:  # same columns and types; the schema metadata may differ
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        order = np.argsort(which, kind="stable")
        sorted_b = batch.take(pa.array(order))
        ids, starts = np.unique(which[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for b, s, e in zip(ids.tolist(), starts.tolist(), ends.tolist(), strict=True):
            w = self._writers.get(b)
            if w is None:
                sink = pa.OSFile(self.paths[b], "wb")
                w = pa.ipc.new_stream(sink, self.schema)
                self._writers[b], self._sinks[b] = w, sink
            w.write_batch(sorted_b.slice(s, e - s))

    def close(self) -> None:
        for b, w in self._writers.items():
            w.close()
            self._sinks[b].close()

    def read(self, b: int) -> pa.Table:
        if b not in self._writers:
            return self.schema.empty_table()
        with pa.OSFile(self.paths[b], "rb") as f:
            return pa.ipc.open_stream(f).read_all()

    def remove(self, b: int) -> None:
        if b in self._writers and os.path.exists(self.paths[b]):
            os.remove(self.paths[b])


@dataclasses.dataclass
class WindowStats:
    """Counters of one window (JSON-ready via :meth:`as_dict`)."""

    rows: int = 0
    labelled_rows: int = 0
    positives: int = 0
    probability_sum: float = 0.0
    model_versions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bad_predictions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bad_feedback: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    corrupt_files: list = dataclasses.field(default_factory=list)
    files: int = 0
    feedback_files: int = 0
    labels: L.Provenance = dataclasses.field(default_factory=L.Provenance)
    pos_hist: np.ndarray | None = None
    neg_hist: np.ndarray | None = None
    task: str = "binary"
    #: Regression: sums of the outputs, labels, squared and absolute errors (labelled rows for the last 3).
    output_sum: float = 0.0
    label_sum: float = 0.0
    sq_err_sum: float = 0.0
    abs_err_sum: float = 0.0
    #: Multiclass: correct labelled rows, their log loss (nats), labels and summed probabilities per class.
    correct: int = 0
    log_loss_sum: float = 0.0
    class_labels: np.ndarray | None = None
    probability_sums: np.ndarray | None = None
    #: Output drift: the live outputs in the bins of the champion's eval predictions (None: no reference).
    output_counts: np.ndarray | None = None

    def live_auc(self) -> float | None:
        """ROC AUC of the labelled rows (ties within one histogram bin count half); None without both
        classes."""
        if self.pos_hist is None:
            return None
        pos, neg = self.pos_hist.astype(np.float64), self.neg_hist.astype(np.float64)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))

    def bad_total(self) -> int:
        return sum(self.bad_predictions.values()) + sum(self.bad_feedback.values()) + len(self.corrupt_files)


def _tfdv_column(arr: pa.Array, clip: tuple[float, float] | None = None) -> pa.Array:
    """A flat nullable column as TFDV's list column (one value per cell, null list = missing)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    valid = _np(arr.is_valid())
    values = arr.filter(arr.is_valid())
    if clip is not None:
        values = pa.array(np.clip(_np(values).astype(np.float64), clip[0], clip[1]).astype(np.float32))
    if pa.types.is_string(values.type):
        values = values.cast(pa.binary())
    counts = np.concatenate([[0], np.cumsum(valid)]).astype(np.int32)
    offsets = pa.array(counts, mask=np.concatenate([~valid, [False]]))
    return pa.ListArray.from_arrays(offsets, values)


#: Suffix of the clipped copy of a numeric feature in the staged batches (split off again by
#: :func:`components.monitor.scoring.split_statistics`).
CLIPPED = "__clipped"


def tfdv_batches(table: pa.Table, spec, bounds: dict | None = None, with_event_time: bool = True) -> list:
    """Record batches in TFDV's format of the spec's model features (+ its event time = prediction time,
    when the spec has a time column), and, for each numeric feature in ``bounds``, its values clipped to
    them as ``<name>__clipped``: one statistics pass gives both the raw and the clipped statistics.

    Args:
        table: Prediction-log rows (one column per model feature, ``timestamp``).
        spec: The :class:`kfloop.spec.DatasetSpec` of the model that logged them.
        bounds: ``{numeric feature: (low, high)}``.
        with_event_time: Add the event-time column (only if the spec has one).
    """
    table = table.combine_chunks()
    out = []
    for start in range(0, table.num_rows, BATCH_ROWS):
        part = table.slice(start, BATCH_ROWS)
        arrays, names = [], []
        if with_event_time and spec.event_time is not None:
            secs = _np(part.column("timestamp").combine_chunks().cast(pa.int64())) // 1_000_000
            arrays.append(_tfdv_column(pa.array(secs, type=pa.int64())))
            names.append(spec.event_time.name)
        for name in spec.input_names:
            arrays.append(_tfdv_column(part.column(name)))
            names.append(name)
        for name, clip in (bounds or {}).items():
            arrays.append(_tfdv_column(part.column(name), clip))
            names.append(name + CLIPPED)
        out.append(pa.RecordBatch.from_arrays(arrays, names))
    return out


class _Stage:
    """Staged Arrow IPC files of TFDV batches (one file per bucket) for the statistics pipeline."""

    def __init__(self, folder: str, name: str):
        self.folder, self.name, self.paths = folder, name, []

    def add(self, batches: list) -> None:
        if not batches:
            return
        from kfloop import fs

        path = fs.join(self.folder, f"{self.name}-{len(self.paths):05d}.arrow")
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batches[0].schema) as w:
            for b in batches:
                w.write_batch(b)
        fs.write_bytes(path, sink.getvalue().to_pybytes())
        self.paths.append(path)


def process_window(
    store_uri: str,
    model_name: str,
    start,
    end,
    feedback_end,
    *,
    spec,
    bounds: dict,
    stage_dir: str,
    spill_dir: str | None = None,
    buckets: int = BUCKETS,
    on_rows=None,
    output_ref: dict | None = None,
) -> tuple[WindowStats, list[str], list[str]]:
    """Streams one window: checks, dedupes, joins labels, counts and stages the TFDV batches.

    Args:
        store_uri: Log root holding ``predictions/`` and ``feedback/``.
        model_name: Model name.
        start: Window start (inclusive), end: window end (exclusive), both aware datetimes.
        feedback_end: Labels that arrived in ``[start, feedback_end)`` are joined.
        spec: The :class:`kfloop.spec.DatasetSpec` of the model whose log this is (features, time column).
        bounds: ``{numeric feature: (low, high)}`` the clipped statistics use.
        stage_dir: Where the TFDV batches are staged (readable by the Beam workers).
        spill_dir: Local folder for the bucket files (default: a temporary folder, removed).
        buckets: Number of hash partitions.
        on_rows: Called with each bucket's deduplicated, labelled table (e.g. to write the live dataset).
        output_ref: The champion's eval-output reference (:attr:`kfloop.reference.Reference.output`):
            the live outputs are counted in its bins (``stats.output_counts``); None: not counted.

    Returns:
        ``(stats, paths)``: counters and the staged files of the TFDV batches (raw and clipped columns).
    """
    ws = WindowStats(task=_task(spec))
    if ws.task == "binary":
        ws.pos_hist = np.zeros(AUC_BINS, dtype=np.int64)
        ws.neg_hist = np.zeros(AUC_BINS, dtype=np.int64)
    elif ws.task == "multiclass":
        ws.class_labels = np.zeros(spec.n_classes, dtype=np.int64)
        ws.probability_sums = np.zeros(spec.n_classes, dtype=np.float64)
    if output_ref is not None:
        ws.output_counts = np.zeros(len(output_ref["counts"]), dtype=np.int64)
    staged = _Stage(stage_dir, "live")
    numeric = tuple(f.name for f in spec.features_of("numeric"))
    with tempfile.TemporaryDirectory(prefix="kfloop-monitor-", dir=spill_dir) as tmp:
        preds = _Spill(tmp, "p", P.prediction_schema(spec), buckets)
        fb_full = _feedback_schema(spec)
        fb_schema = pa.schema([fb_full.field(c) for c in L.feedback_columns(fb_full)])
        fbs = _Spill(tmp, "f", fb_schema, buckets)
        rep = P.ScanReport()
        try:
            for batch in P.scan(store_uri, model_name, P.PREDICTIONS, start, end, schema=spec, report=rep):
                good = check_predictions(batch, ws.bad_predictions, numeric, spec)
                if good.num_rows:
                    preds.add(good, _bucket_of(good, buckets))
            frep = P.ScanReport()
            for batch in P.scan(  # the task's label type: a file of another task is skipped and named
                store_uri,
                model_name,
                P.FEEDBACK,
                start,
                feedback_end,
                columns=fb_schema.names,
                schema=fb_full,
                report=frep,
            ):
                good = check_feedback(batch, ws.bad_feedback, spec)
                if good.num_rows:
                    fbs.add(good, _bucket_of(good, buckets))
        finally:
            preds.close()
            fbs.close()
        for reason, n in rep.bad_rows.items():
            ws.bad_predictions[reason] += n
        for reason, n in frep.bad_rows.items():
            ws.bad_feedback[reason] += n
        ws.corrupt_files = [*rep.corrupt, *frep.corrupt]
        ws.files, ws.feedback_files = rep.files, frep.files
        ws.labels.feedback_files = frep.files
        for b in range(buckets):
            table = preds.read(b)
            preds.remove(b)
            if table.num_rows == 0:
                continue
            table, labels = _dedupe_and_join(table, fbs.read(b), ws)
            fbs.remove(b)
            _count(table, labels, ws, spec, output_ref)
            if on_rows is not None:
                on_rows(table, labels)
            staged.add(tfdv_batches(table, spec, bounds))
    return ws, staged.paths


def _dedupe_and_join(table: pa.Table, fb: pa.Table, ws: WindowStats) -> tuple[pa.Table, np.ndarray]:
    """Drops repeated ``(request_id, row)`` predictions (first kept, the rest counted) and returns the label
    of each row as float64 (NaN = none arrived; the first arrival is kept, later contradicting labels are
    counted in ``ws.labels``: :func:`kfloop.labels.first_labels`)."""
    import pandas as pd

    keys = pd.DataFrame(
        {
            "request_id": table.column("request_id").to_pandas(),
            "row": _np(table.column("row").combine_chunks()),
        }
    )
    dup = keys.duplicated(["request_id", "row"]).to_numpy()
    if dup.any():
        ws.bad_predictions["duplicate (request_id, row)"] += int(dup.sum())
        table = table.filter(pa.array(~dup))
        keys = keys[~dup].reset_index(drop=True)
    if fb.num_rows == 0:
        return table, np.full(table.num_rows, np.nan)
    f = pd.DataFrame(
        {
            "request_id": fb.column("request_id").to_pandas(),
            "row": _np(fb.column("row").combine_chunks()),
            "label": _np(fb.column("label").combine_chunks()),
            "ts": _np(fb.column("timestamp").combine_chunks().cast(pa.int64())),
        }
    )
    if L.LABELER in fb.schema.names:
        f[L.LABELER] = fb.column(L.LABELER).to_pandas()
    f = L.first_labels(f, ws.labels)
    joined = keys.merge(f[["request_id", "row", "label"]], on=["request_id", "row"], how="left", sort=False)
    return table, joined["label"].to_numpy(dtype=np.float64, na_value=np.nan)


def _count(table: pa.Table, labels: np.ndarray, ws: WindowStats, spec=None, output_ref=None) -> None:
    out = outputs_of(table, spec)
    ws.rows += table.num_rows
    for v, n in zip(
        *np.unique(_np(table.column("model_version").combine_chunks()), return_counts=True), strict=True
    ):
        ws.model_versions[str(v)] += int(n)
    has = ~np.isnan(labels)
    ws.labelled_rows += int(has.sum())
    if output_ref is not None:
        ws.output_counts += R.output_counts(output_ref, out)
    if ws.task == "regression":
        e = out[has] - labels[has]
        ws.output_sum += float(out.sum())
        ws.label_sum += float(labels[has].sum())
        ws.sq_err_sum += float((e**2).sum())
        ws.abs_err_sum += float(np.abs(e).sum())
        return
    if ws.task == "multiclass":
        y, p = labels[has].astype(np.int64), out[has]
        ws.probability_sums += out.sum(axis=0)
        ws.class_labels += np.bincount(y, minlength=len(ws.class_labels))
        ws.correct += int((np.argmax(p, axis=1) == y).sum())
        ws.log_loss_sum += float(-np.log(np.clip(p[np.arange(y.size), y], 1e-15, 1.0)).sum())
        return
    ws.probability_sum += float(out.sum())
    ws.positives += int((labels == 1).sum())
    idx = np.minimum((out * AUC_BINS).astype(np.int64), AUC_BINS - 1)
    ws.pos_hist += np.bincount(idx[labels == 1], minlength=AUC_BINS)
    ws.neg_hist += np.bincount(idx[labels == 0], minlength=AUC_BINS)
