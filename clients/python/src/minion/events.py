"""Resumable event streams: ``Client.events()`` and ``AsyncClient.events()`` return these.

A stream reads Server-Sent Events and yields typed :class:`~minion.models.Event` objects. When
the connection drops (or the node shuts down and ends it), it reconnects — to the next node when
its own is gone — sending ``Last-Event-ID`` so nothing after the last event seen is missed, and
drops progress reports a resumed task stream sends again. A task stream ends after the task's
final state (``succeeded``, ``dead``, ``cancelled``, ``rejected``); ``/v1/events`` runs until
closed. Reconnection gives up, raising the last error, once no node has answered for
``reconnect_timeout`` seconds; errors such as :class:`~minion.NotFound` or
:class:`~minion.Forbidden` raise at once.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING, AsyncGenerator, AsyncIterator, Generator, Iterator, Optional

import httpx

from ._transport import Call, backoff
from .errors import ConnectionFailed, MinionError, Unavailable
from .models import Event
from .sse import HEARTBEAT_SILENCE_S, SSEParser, StreamState

if TYPE_CHECKING:
    from .async_client import AsyncClient
    from .client import Client

__all__ = ["EventStream", "AsyncEventStream"]

_RECONNECTABLE = (ConnectionFailed, Unavailable)


def _stream_call(state: StreamState) -> Call:
    return Call("GET", state.path, params=state.params(), headers=state.headers(), idempotent=True)


def stream_timeout(connect: float, write: float) -> httpx.Timeout:
    """Reads wait for three heartbeat periods: a silent connection is a dead one."""
    return httpx.Timeout(connect=connect, read=HEARTBEAT_SILENCE_S * 3, write=write, pool=write)


def _interrupt(resp: httpx.Response) -> None:
    """Wake a thread blocked reading ``resp``: closing the response alone does not."""
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Retry:
    """Reconnection pacing: back off while nothing arrives, give up after ``timeout`` s of failure.

    Failure is counted from the first drop since a node last answered: a successful connection
    and every line read (events, heartbeats, keep-alive comments) reset it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.attempt = 0
        self.failing_since: Optional[float] = None

    def received(self) -> None:
        """Something came through: back to the shortest backoff, no failure under way."""
        self.attempt = 0
        self.failing_since = None

    def connected(self) -> None:
        """A node answered the stream request: no failure under way (the backoff stays where it
        is until something is read, so a node that ends every stream at once is not hammered)."""
        self.failing_since = None

    def failed(self) -> float:
        """Seconds to wait before the next try; raises ``TimeoutError`` when it is time to give up."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        elif now - self.failing_since > self.timeout:
            raise TimeoutError
        delay = backoff(self.attempt)
        self.attempt += 1
        return delay


class EventStream(Iterator[Event]):
    """A blocking iterator of events; close it (or use ``with``) to release the connection.

    ``last_event_id`` is the position reached: pass it as ``last_event_id=`` to a later
    ``events()`` call to resume there.
    """

    def __init__(self, client: "Client", state: StreamState, *, reconnect: bool, reconnect_timeout: float) -> None:
        self._client = client
        self._state = state
        self._reconnect = reconnect
        self._retry = _Retry(reconnect_timeout)
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._resp: Optional[httpx.Response] = None
        self._gen = self._iterate()

    @property
    def connected(self) -> bool:
        """True while a node is streaming to this iterator (the response has arrived)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Block until the stream is connected (while another thread iterates it); False on timeout."""
        return self._connected.wait(timeout)

    @property
    def last_event_id(self) -> Optional[int]:
        """The SSE id of the last event received (a log index), or the one resumed from."""
        v = self._state.last_event_id
        return int(v) if v is not None and v.isdigit() else None

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> Event:
        return next(self._gen)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream; safe to call from another thread while one is blocked reading."""
        self._closed.set()
        resp = self._resp
        if resp is not None:
            _interrupt(resp)
            resp.close()
        try:
            self._gen.close()
        except ValueError:  # being iterated in another thread: it stops at its next read
            pass

    def _iterate(self) -> Generator[Event, None, None]:
        state = self._state
        while not self._closed.is_set() and not state.done:
            try:
                resp = self._client._open_stream(_stream_call(state))
            except _RECONNECTABLE as err:
                self._pause(err)
                continue
            self._resp = resp
            self._connected.set()
            self._retry.connected()
            try:
                parser = SSEParser()
                for line in resp.iter_lines():
                    self._retry.received()  # anything, keep-alive comments too, proves the connection
                    msg = parser.feed(line)
                    if msg is None:
                        continue
                    event = state.accept(msg)
                    if event is not None:
                        yield event
                    if state.done:
                        return
            except (httpx.TransportError, httpx.StreamError) as exc:
                if self._closed.is_set():
                    return
                last: Optional[MinionError] = ConnectionFailed(f"event stream interrupted: {exc}")
            else:
                last = None  # the node ended the stream (it is shutting down)
            finally:
                self._connected.clear()
                resp.close()
                self._resp = None
            if not self._reconnect:
                if last is not None:
                    raise last
                return
            self._pause(last or ConnectionFailed("the event stream ended"))

    def _pause(self, err: MinionError) -> None:
        if not self._reconnect:
            raise err
        try:
            delay = self._retry.failed()
        except TimeoutError:
            raise err from None
        self._closed.wait(delay)


class AsyncEventStream(AsyncIterator[Event]):
    """An async iterator of events; ``await stream.aclose()`` (or ``async with``) releases it."""

    def __init__(
        self, client: "AsyncClient", state: StreamState, *, reconnect: bool, reconnect_timeout: float
    ) -> None:
        self._client = client
        self._state = state
        self._reconnect = reconnect
        self._retry = _Retry(reconnect_timeout)
        self._closed = False
        self._connected = False
        self._gen = self._iterate()

    @property
    def connected(self) -> bool:
        """True while a node is streaming to this iterator (the response has arrived)."""
        return self._connected

    @property
    def last_event_id(self) -> Optional[int]:
        """The SSE id of the last event received (a log index), or the one resumed from."""
        v = self._state.last_event_id
        return int(v) if v is not None and v.isdigit() else None

    def __aiter__(self) -> "AsyncEventStream":
        return self

    async def __anext__(self) -> Event:
        return await self._gen.__anext__()

    async def __aenter__(self) -> "AsyncEventStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and release its connection."""
        self._closed = True
        await self._gen.aclose()

    async def _iterate(self) -> AsyncGenerator[Event, None]:
        state = self._state
        while not self._closed and not state.done:
            try:
                resp = await self._client._open_stream(_stream_call(state))
            except _RECONNECTABLE as err:
                await self._pause(err)
                continue
            self._connected = True
            self._retry.connected()
            try:
                parser = SSEParser()
                async for line in resp.aiter_lines():
                    self._retry.received()  # anything, keep-alive comments too, proves the connection
                    msg = parser.feed(line)
                    if msg is None:
                        continue
                    event = state.accept(msg)
                    if event is not None:
                        yield event
                    if state.done:
                        return
            except (httpx.TransportError, httpx.StreamError) as exc:
                last: Optional[MinionError] = ConnectionFailed(f"event stream interrupted: {exc}")
            else:
                last = None  # the node ended the stream (it is shutting down)
            finally:
                self._connected = False
                await resp.aclose()
            if not self._reconnect:
                if last is not None:
                    raise last
                return
            await self._pause(last or ConnectionFailed("the event stream ended"))

    async def _pause(self, err: MinionError) -> None:
        if not self._reconnect:
            raise err
        try:
            delay = self._retry.failed()
        except TimeoutError:
            raise err from None
        await asyncio.sleep(delay)
