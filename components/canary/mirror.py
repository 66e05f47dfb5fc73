"""The mirror's own record of the requests it forwarded to a shadow canary.

A shadow canary answers copies of the champion's requests (the local loop's :meth:`kfloop.app.loop._Loop.mirror`
sends them). The prediction log alone cannot tell a request the canary failed from one that was never
mirrored (a client that reached the champion directly, a mirror that was not running yet): both are
champion rows without a canary answer. So the mirror writes what it forwarded and what came back, and
the canary's health check (:func:`components.canary.canary.health`) reads it::

    <store>/<shadow_log>/mirrored/<model>/date=YYYY-MM-DD/<id>.parquet
        request_id: string, status: int32 (HTTP status; 0 = no answer), timestamp: timestamp[us, UTC]

A file is written whole (:func:`kfloop.fs.write_bytes`, write-once) and never rewritten.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from kfloop import config, fs, layout

FOLDER = layout.MIRRORED
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


class MirrorError(ValueError):
    """A bad mirror record (the message names the field)."""


def _root(store_uri: str, model_name: str, shadow_log: str) -> str:
    return layout.mirrored(store_uri, model_name, shadow_log)


def record(
    store_uri: str,
    model_name: str,
    forwarded: list[tuple[str, int]],
    *,
    when: dt.datetime | None = None,
    shadow_log: str = config.CanaryConfig().shadow_log,
) -> str | None:
    """Records the requests a mirror forwarded to the shadow canary and the status each got.

    Args:
        store_uri: Store root.
        model_name: Model name.
        forwarded: ``(request_id, status)`` per forwarded request; status is the canary's HTTP status, 0
            when no answer came (connection refused, timeout).
        when: When they were forwarded (default: now, UTC; the log's clock).
        shadow_log: The shadow log folder (:attr:`kfloop.config.CanaryConfig.shadow_log`).

    Returns:
        The URI written, or None for an empty list.

    Raises:
        MirrorError: an empty request id or a status outside 0..599 (names the request).
    """
    if not forwarded:
        return None
    when = when or dt.datetime.now(dt.UTC)
    for rid, status in forwarded:
        if not isinstance(rid, str) or not rid:
            raise MirrorError(f"request_id must be a non-empty string, got {rid!r}")
        if type(status) is not int or not 0 <= status <= 599:
            raise MirrorError(f"status of request {rid!r} must be an HTTP status or 0, got {status!r}")
    ts = pa.array([int(when.timestamp() * 1e6)] * len(forwarded), pa.int64()).cast(
        SCHEMA.field("timestamp").type
    )
    table = pa.Table.from_arrays(
        [
            pa.array([r for r, _ in forwarded], pa.string()),
            pa.array([s for _, s in forwarded], pa.int32()),
            ts,
        ],
        schema=SCHEMA,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    uri = fs.join(
        layout.date_partition(_root(store_uri, model_name, shadow_log), when.date()),
        f"{when:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet",
    )
    fs.write_bytes(uri, sink.getvalue(), if_generation_match=0)
    return uri


@dataclasses.dataclass
class Mirrored:
    """What the mirror records say about a window.

    Attributes:
        status: ``{request_id: best status}`` (200 if any forwarding of it got 200, else the last status).
        files: Record files read.
        corrupt: Record files that could not be read (skipped, counted).
    """

    status: dict[str, int] = dataclasses.field(default_factory=dict)
    files: int = 0
    corrupt: int = 0

    @property
    def recorded(self) -> bool:
        """Whether any mirror record covers the window (else mirrored and unmirrored cannot be told apart)."""
        return self.files > 0


def read(
    store_uri: str,
    model_name: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    shadow_log: str = config.CanaryConfig().shadow_log,
    slack: dt.timedelta = dt.timedelta(days=1),
) -> Mirrored:
    """The mirror records of the date partitions from ``start`` to ``end + slack`` (a request is forwarded
    after the champion answered it, so its record may fall a little after the window)."""
    out = Mirrored()
    root = _root(store_uri, model_name, shadow_log)
    day, last = start.astimezone(dt.UTC).date(), (end + slack).astimezone(dt.UTC).date()
    while day <= last:
        for uri in fs.list_files(layout.date_partition(root, day)):
            name = uri.rsplit("/", 1)[-1]
            if not name.endswith(".parquet") or name.startswith("."):
                continue
            try:
                t = pq.read_table(
                    pa.BufferReader(fs.read_bytes(uri)), columns=["request_id", "status"], use_threads=False
                )
                rids, codes = t.column("request_id").to_pylist(), t.column("status").to_pylist()
            except Exception:  # a bad record file is skipped and counted, never raised
                out.corrupt += 1
                continue
            out.files += 1
            for rid, code in zip(rids, codes, strict=True):
                if rid is None or code is None:
                    continue
                if out.status.get(rid) != 200:
                    out.status[rid] = int(code)
        day += dt.timedelta(days=1)
    return out
