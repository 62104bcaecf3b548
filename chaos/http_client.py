"""A lean HTTP/1.1 keep-alive client for the load generator (asyncio protocol + httptools parser).

Why not httpx: at 1,000 requests/s httpx's per-request overhead (about 1 ms of CPU on this machine)
takes most of a core, so the generator itself falls behind its schedule and the load's latencies
measure the client. This client does one thing: GET or POST one request at a time on each pooled
connection to one loopback origin, and return (status, content-type, body bytes). Connections are
opened on demand up to `max_connections` and reused; one that the server closes (or that answers
with `Connection: close`) is dropped. Timeouts are the caller's (asyncio.wait_for); a request that
is cancelled or fails closes its connection, so a late answer can never be read by the next request.
"""
from __future__ import annotations

import asyncio
from typing import Any

import httptools


class HttpError(Exception):
    """The connection failed or the answer could not be parsed."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, str, bytes]] | None = None
        self.body: list[bytes] = []
        self.content_type = ""
        self.keep_alive = True
        self.closed = False

    # -- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"unparseable answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection closed by the server{f': {exc}' if exc else ''}"))

    # -- httptools callbacks --------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-type":
            self.content_type = value.decode("latin-1")
        elif lower == b"connection" and value.lower() == b"close":
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), self.content_type, b"".join(self.body)))

    # -- use --------------------------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def send(self, raw: bytes) -> asyncio.Future[tuple[int, str, bytes]]:
        assert self.transport is not None
        self.body, self.content_type = [], ""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanClient:
    """Requests to one origin (host, port) over pooled keep-alive connections."""

    def __init__(self, host: str, port: int, *, max_connections: int = 256) -> None:
        self.host, self.port, self.max_connections = host, port, max_connections
        self._idle: list[_Connection] = []
        self._open = 0
        self._host_header = f"{host}:{port}".encode()

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self._open -= 1
        if self._open >= self.max_connections:
            raise HttpError(f"all {self.max_connections} connections are busy")
        self._open += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        except OSError as exc:
            self._open -= 1
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    async def request(self, method: str, target: str, body: bytes | None = None) -> tuple[int, str, bytes]:
        """(status, content type, body) of one request; `target` is the path with its query string."""
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: " + self._host_header]
        if body is not None:
            head += [b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
        raw = b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")
        conn = await self._connection()
        ok = False
        try:
            answer = await conn.send(raw)
            ok = conn.keep_alive and not conn.closed
            return answer
        finally:
            if ok:
                self._idle.append(conn)
            else:  # failed, cancelled (timeout) or not reusable: never hand it to another request
                conn.close()
                self._open -= 1

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        self._open = 0

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()
