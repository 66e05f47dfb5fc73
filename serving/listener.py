"""Closing the listener at shutdown without resetting connections the kernel has already accepted.

When a listening socket closes, Linux resets every connection still in its accept queue: the client has
sent its request and gets "Server disconnected without sending a response", which it cannot safely retry.
A connection the event loop has accepted but not read yet is no better off: uvicorn's shutdown closes
connections with no request in progress. Both happen to clients that connect in the last moments before
the listener closes (in a pod: before the endpoint removal has reached every node).

:func:`drain_listeners` runs just before uvicorn closes its listeners:

1. it attaches a drop-everything socket filter (classic BPF, ``SO_ATTACH_FILTER``, no privilege needed) to
   each listening socket: new handshakes no longer complete, so the client's SYN is retransmitted (after
   ~1 s) and meets the closed port: "connection refused", which every client retries safely;
2. it lets the event loop accept the queue (``TCP_INFO``'s ``tcpi_unacked`` is the queue's length on a
   listening socket) and read the request of every connection accepted so far (a client may send it a
   moment after its connect returns), until nothing is queued and no connection is without its request,
   at most ``timeout`` seconds. Then uvicorn closes the listeners and the idle kept-alive connections; the
   requests read are answered as in-flight ones.

Linux only; elsewhere (or if a step fails) it logs and returns, and shutdown goes on as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import select
import socket
import struct
import time

log = logging.getLogger("kfloop.serving")

SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>
_BPF_RET_K = 0x06  # BPF_RET | BPF_K: return the constant k (0 = drop the packet)


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def refuse_new_connections(sock) -> None:
    """Attaches a drop-all filter to a listening socket: no new handshake completes on it."""
    program = (_SockFilter * 1)(_SockFilter(_BPF_RET_K, 0, 0, 0))
    fprog = _SockFprog(1, program)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))  # the kernel copies the program


def accept_queue_length(sock) -> int:
    """Connections the kernel has accepted and the process has not (``tcpi_unacked`` of a listener)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 24)[0]  # 8 one-byte fields, then rto, ato, snd_mss, rcv_mss


def _waiting(connections) -> int:
    """Connections with no request in progress that are fresh (accepted, nothing read yet: the client's
    request may be on its way) or whose socket holds bytes not read yet (a request arriving)."""
    fresh, fds = 0, []
    for conn in connections:
        cycle = getattr(conn, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            continue  # in progress: uvicorn lets it finish
        if cycle is None and getattr(conn, "timeout_keep_alive_task", None) is None:
            fresh += 1  # never served a request (an idle kept-alive one has its keep-alive timer armed)
            continue
        transport = getattr(conn, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and sock.fileno() >= 0:
            fds.append(sock.fileno())
    readable = select.select(fds, [], [], 0)[0] if fds else []
    return fresh + len(readable)


async def drain_listeners(servers, connections, timeout: float) -> None:
    """Refuses new connections on ``servers``' sockets, then waits (at most ``timeout`` s) until the accept
    queues are empty and every one of ``connections`` (uvicorn's protocol objects) has its request read
    (or is an idle kept-alive connection)."""
    socks = [s for server in servers for s in server.sockets if s.family in (socket.AF_INET, socket.AF_INET6)]
    try:
        for s in socks:
            refuse_new_connections(s)
    except (OSError, AttributeError) as e:
        log.warning("shutdown: could not stop new connections before closing the listener (%s)", e)
        return
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        queued = sum(accept_queue_length(s) for s in socks)
        waiting = _waiting(list(connections))
        if not queued and not waiting:
            break
        if time.monotonic() >= deadline:
            log.warning(
                "shutdown: %d queued / %d connections without their request left after %.1f s",
                queued,
                waiting,
                timeout,
            )
            return
        await asyncio.sleep(0.005)  # the loop accepts and reads meanwhile
    log.info("shutdown: listener drained in %.3f s", time.monotonic() - t0)
