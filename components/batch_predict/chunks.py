"""The unit of batch scoring: a :class:`Chunk` of encoded rows (one Beam element, one model call), the
:class:`ScoredChunk` it becomes, their cheap Beam coder, and the cutting of Arrow record batches into chunks.
"""

from __future__ import annotations

import typing

#: Rows per element of the Beam pipeline (one model call each).
DEFAULT_CHUNK_ROWS = 16_384


def encode_batch(batch, spec) -> dict:
    """Arrow columns of the spec's model features → the encoded numpy columns of :mod:`serving.request`.

    Missing values become the spec's sentinels (``Feature.missing``: NaN, -1, ``""``). A string column is
    dictionary-encoded first, so that each distinct value becomes one Python string (shared by its rows)
    instead of one per row.
    """
    import numpy as np
    import pyarrow.compute as pc

    out = {}
    for f in spec.model_features:
        col = batch.column(batch.schema.get_field_index(f.name))
        if f.dtype == "float32":
            out[f.name] = col.to_numpy(zero_copy_only=False).astype(np.float32)
        elif f.dtype == "int64":
            col = pc.fill_null(col, -1) if col.null_count else col
            out[f.name] = col.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        else:
            coded = pc.dictionary_encode(pc.fill_null(col, "") if col.null_count else col)
            values = np.array(coded.dictionary.to_pylist() + [""], dtype=object)[:-1]  # 1-D even if empty
            out[f.name] = values[coded.indices.to_numpy(zero_copy_only=False)]
    return out


class Chunk(tuple):
    """One Beam element: ``(first_row, encoded columns)``, plus ``strings``: the string features as the CSV
    reader's Arrow arrays (null = missing), logged as they are instead of from per-row Python objects."""

    def __new__(cls, first: int, columns: dict, strings: dict):
        chunk = super().__new__(cls, (first, columns))
        chunk.strings = strings
        return chunk

    def __reduce__(self):
        return (Chunk, (self[0], self[1], self.strings))


def _chunk(first: int, batch, spec) -> Chunk:
    strings = {
        f.name: batch.column(batch.schema.get_field_index(f.name))
        for f in spec.model_features
        if f.dtype == "string"
    }
    return Chunk(first, encode_batch(batch, spec), strings)


class ScoredChunk(typing.NamedTuple):
    """What :class:`SavedModelHandler` returns for a chunk: the fields of Beam's ``PredictionResult``
    (``example`` = the :class:`Chunk`, ``inference`` = its probabilities), as a type of its own so that
    it gets the cheap coder below."""

    example: Chunk
    inference: typing.Any
    model_id: str | None = None


def _chunk_coder_class():
    import pickle

    from apache_beam import coders

    class ChunkCoder(coders.Coder):
        """Pickles a :class:`Chunk` / :class:`ScoredChunk`, but sizes it from its arrays: Beam's default
        coder pickles every sampled element only to estimate its size (once per PCollection it passes)."""

        def encode(self, value):
            return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

        def decode(self, encoded):
            return pickle.loads(encoded)

        def is_deterministic(self) -> bool:
            return False

        def estimate_size(self, value) -> int:
            if isinstance(value, ScoredChunk):
                return chunk_nbytes(value.example) + int(getattr(value.inference, "nbytes", 0))
            return chunk_nbytes(value)

    return ChunkCoder


def chunk_len(chunk) -> int:
    """The rows of a chunk."""
    return len(next(iter(chunk[1].values())))


def chunk_nbytes(chunk) -> int:
    """The bytes of a chunk's arrays (what Beam's size estimates and ``get_num_bytes`` need)."""
    return sum(int(getattr(col, "nbytes", 0)) for col in chunk[1].values())


def register_chunk_coder() -> None:
    """Registers the :class:`Chunk` / :class:`ScoredChunk` coder with Beam (idempotent)."""
    from apache_beam import coders

    coder = _chunk_coder_class()
    coders.registry.register_coder(Chunk, coder)
    coders.registry.register_coder(ScoredChunk, coder)


def chunks_of(batches, first: int, chunk_rows: int, spec):
    """:class:`Chunk` s of at most ``chunk_rows`` rows from Arrow record batches (a CSV reader's).

    A chunk inside one batch is a zero-copy slice of it; only a chunk that spans batches is copied.
    """
    import pyarrow as pa

    def joined(parts):
        return pa.Table.from_batches(parts).combine_chunks().to_batches()[0]

    carry, held = [], 0  # slices of earlier batches not yet in a chunk (fewer than chunk_rows rows)
    for batch in batches:
        i, n = 0, batch.num_rows
        if held:
            i = min(chunk_rows - held, n)
            carry.append(batch.slice(0, i))
            held += i
            if held < chunk_rows:
                continue
            yield _chunk(first, joined(carry), spec)
            first, carry, held = first + held, [], 0
        while n - i >= chunk_rows:
            yield _chunk(first, batch.slice(i, chunk_rows), spec)
            first, i = first + chunk_rows, i + chunk_rows
        if i < n:
            carry, held = [batch.slice(i)], n - i
    if held:
        yield _chunk(first, joined(carry), spec)
