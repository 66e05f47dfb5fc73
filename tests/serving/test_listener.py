"""Closing the listener: connections the kernel queued before the close are answered, not reset."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import pytest

pytestmark = pytest.mark.serving


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger="kfloop.serving")


def _connections() -> set:
    """The live connections of an :class:`Answer` server (uvicorn keeps such a set: ``server_state``)."""
    return set()


class Answer(asyncio.Protocol):
    """Answers the first bytes it reads, then closes; like uvicorn's protocols it has ``cycle`` (the request
    in progress: None until one is read) and ``timeout_keep_alive_task`` (None until a response is sent)."""

    cycle = None
    timeout_keep_alive_task = None

    def __init__(self, connections: set):
        self.connections = connections

    def connection_made(self, transport):
        self.transport = transport
        self.connections.add(self)

    def connection_lost(self, exc):
        self.connections.discard(self)

    def data_received(self, data):
        self.transport.write(b"answered " + data)
        self.transport.close()


async def _close_with_queued_connections(drain: bool, n: int = 8) -> list[str]:
    """``n`` clients connect and send while the loop does not run (queued in the kernel), then the listener
    closes, after :func:`serving.listener.drain_listeners` or not; what each client reads back."""
    from serving import listener

    loop = asyncio.get_running_loop()
    protocols = _connections()

    server = await loop.create_server(lambda: Answer(protocols), "127.0.0.1", 0, backlog=64)
    port = server.sockets[0].getsockname()[1]
    clients = []
    for i in range(n):  # blocking calls on the loop's thread: the handshakes complete in the kernel only
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(b"r%d" % i)
        clients.append(c)
    assert listener.accept_queue_length(server.sockets[0]) == n
    if drain:
        await listener.drain_listeners([server], protocols, timeout=2.0)
    server.close()
    await asyncio.sleep(0.2)  # the accepted connections answer
    got = []
    for c in clients:
        try:
            got.append(c.recv(100).decode() or "closed without an answer")
        except ConnectionResetError:
            got.append("reset")
        c.close()
    late = socket.socket()
    late.settimeout(5)
    try:
        late.connect(("127.0.0.1", port))
        got.append("late: connected")
    except ConnectionRefusedError:
        got.append("late: refused")
    finally:
        late.close()
    return got


def test_queued_connections_are_reset_by_a_bare_close():
    """The failure the drain prevents, on this kernel: what is queued at close is reset."""
    got = asyncio.run(_close_with_queued_connections(drain=False))
    assert got[:-1] == ["reset"] * 8 and got[-1] == "late: refused", got


def test_drained_listener_answers_every_queued_connection_then_refuses(caplog):
    got = asyncio.run(_close_with_queued_connections(drain=True))
    assert got[:-1] == [f"answered r{i}" for i in range(8)] and got[-1] == "late: refused", got
    assert "listener drained" in caplog.text and "left after" not in caplog.text


async def _accepted_silent_connection():
    """An :class:`Answer` server, its connections and a client the loop has accepted (nothing sent yet)."""
    conns = _connections()
    server = await asyncio.get_running_loop().create_server(lambda: Answer(conns), "127.0.0.1", 0)
    c = socket.create_connection(server.sockets[0].getsockname(), timeout=5)
    while not conns:
        await asyncio.sleep(0.01)
    return server, conns, c


def test_an_accepted_connection_whose_request_comes_late_is_waited_for(caplog):
    """The loop accepted the connection before the drain; the client sends its request 0.2 s into it."""
    from serving import listener

    async def go():
        server, conns, c = await _accepted_silent_connection()
        threading.Timer(0.2, c.sendall, (b"late",)).start()
        await listener.drain_listeners([server], conns, timeout=5.0)
        server.close()
        await asyncio.sleep(0.1)
        try:
            return c.recv(100).decode()
        finally:
            c.close()

    assert asyncio.run(go()) == "answered late"
    assert "left after" not in caplog.text


def test_a_connection_that_never_sends_holds_the_drain_only_until_its_timeout(caplog):
    from serving import listener

    async def go():
        server, conns, c = await _accepted_silent_connection()
        await listener.drain_listeners([server], conns, timeout=0.3)
        server.close()
        c.close()

    asyncio.run(go())
    assert "0 queued / 1 connections without their request left after 0.3 s" in caplog.text


def test_new_connections_do_not_complete_once_refused():
    """After the filter, a SYN is dropped: the handshake does not complete and nothing is queued."""
    from serving import listener

    srv = socket.create_server(("127.0.0.1", 0), backlog=8)
    try:
        listener.refuse_new_connections(srv)
        c = socket.socket()
        c.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.connect(srv.getsockname())
        c.close()
        assert listener.accept_queue_length(srv) == 0
    finally:
        srv.close()
