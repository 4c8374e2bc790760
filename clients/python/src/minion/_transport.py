"""What the sync and async clients share: configuration, node rotation and the retry policy.

The policy, in one place:

* A request that never reached a node (connection refused, connect timeout) is tried on the next
  node, whatever it is: nothing was delivered.
* A 503 whose code says nothing was done (``no_leader``, ``not_leader``, ``too_many_connections``,
  ``too_many_streams``, ``shutting_down``) is tried on the next node, whatever it is.
* A request that may have been delivered (the connection dropped mid-way, a read timeout, a 503
  ``unavailable`` or ``commit_timeout``, a 502/504 from a proxy) is tried again only when it is
  safe to repeat: a read, or a write marked idempotent (a submission carrying an idempotency key,
  a lease extension, a heartbeat, ...). Anything else raises at once; the caller decides.
* Every other answer (success or error) is final: errors raise their typed exception.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Mapping, Optional, Sequence, TypeVar, Union

import httpx

from ._version import __version__
from .errors import ConnectionFailed, MinionError, error_for

T = TypeVar("T")

#: What ``verify=`` accepts: ``True`` (system CAs), ``False`` (no verification: tests only), a
#: path to a PEM CA bundle (a private CA), or an :class:`ssl.SSLContext`.
Verify = Union[bool, str, "os.PathLike[str]", ssl.SSLContext]

#: What a ``server`` argument accepts: one URL, several separated by commas, or a list.
Servers = Union[str, Sequence[str]]

DEFAULT_SERVER = "http://127.0.0.1:7070"

# 503 codes that mean the request was not carried out: safe to send elsewhere, whatever it is.
_NOT_EXECUTED = frozenset({"no_leader", "not_leader", "too_many_connections", "too_many_streams", "shutting_down"})


def resolve_servers(server: Optional[Servers]) -> tuple[str, ...]:
    """Normalise ``server`` (or ``$MINION_SERVER``, or the default) to a tuple of base URLs."""
    if server is None:
        server = os.environ.get("MINION_SERVER") or DEFAULT_SERVER
    items = server.split(",") if isinstance(server, str) else list(server)
    urls = []
    for item in items:
        url = str(item).strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = "http://" + url
        urls.append(url)
    if not urls:
        raise ValueError("no server URL given")
    return tuple(urls)


def make_ssl_context(verify: Verify) -> Union[bool, ssl.SSLContext]:
    """httpx wants ``True``/``False`` or an ``SSLContext``; turn a CA path into a context."""
    if isinstance(verify, (bool, ssl.SSLContext)):
        return verify
    return ssl.create_default_context(cafile=os.fspath(verify))


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to build a client; a :class:`~minion.Worker` builds its own clients from it."""

    urls: tuple[str, ...]
    token: Optional[str] = None
    verify: Verify = True
    timeout: float = 30.0
    connect_timeout: float = 5.0
    retries: int = 4
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        server: Optional[Servers] = None,
        *,
        token: Optional[str] = None,
        verify: Verify = True,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retries: int = 4,
        headers: Optional[Mapping[str, str]] = None,
    ) -> "ClientConfig":
        if token is None:
            token = os.environ.get("MINION_TOKEN") or None
        if retries < 0:
            raise ValueError("retries must be >= 0")
        return cls(resolve_servers(server), token, verify, timeout, connect_timeout, retries, dict(headers or {}))

    def default_headers(self) -> dict[str, str]:
        h = {"user-agent": f"minion-client-python/{__version__}", "accept": "application/json"}
        h.update(self.headers)
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        return h

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)


_NO_BODY: Any = object()


@dataclass
class Call:
    """One API request, independent of sync or async execution."""

    method: str
    path: str
    body: Any = _NO_BODY
    params: Optional[dict[str, Any]] = None
    headers: Optional[dict[str, str]] = None
    #: Safe to send again when it may have been delivered (see the module docs).
    idempotent: bool = False
    #: Extra seconds the server may legitimately hold the request (long polls).
    hold: float = 0.0

    def request_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.body is not _NO_BODY:
            kw["json"] = self.body
        if self.params:
            kw["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.headers:
            kw["headers"] = self.headers
        return kw


@dataclass(frozen=True)
class Op(Generic[T]):
    """A :class:`Call` and how to turn its JSON answer into a result (``parse=None``: the answer
    is not even decoded and the result is ``None``; e.g. a progress report, whose answer is the
    whole task with its whole progress history)."""

    call: Call
    parse: Optional[Callable[[Any], T]]

    def result(self, resp: httpx.Response) -> T:
        if self.parse is None:
            return None  # type: ignore[return-value]
        return self.parse(parse_body(resp))


class Rotation:
    """The node list and which node is in use; a failure moves to the next node for everyone."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = tuple(urls)
        self._current = 0
        self._lock = threading.Lock()

    def order(self) -> list[tuple[int, str]]:
        """The nodes to try, starting with the current one."""
        start = self._current
        n = len(self.urls)
        return [((start + i) % n, self.urls[(start + i) % n]) for i in range(n)]

    def failed(self, index: int) -> None:
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self.urls)


def backoff(round_no: int, retry_after: Optional[float] = None) -> float:
    """Seconds to sleep after every node failed ``round_no`` (from 0) times."""
    if retry_after is not None:
        return min(max(float(retry_after), 0.0), 10.0)
    return float(min(0.1 * (2**round_no), 2.0))


def transport_error_delivered(exc: httpx.TransportError) -> bool:
    """False when the request certainly never reached the node."""
    return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def retry_after_of(resp: httpx.Response) -> Optional[float]:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_body(resp: httpx.Response) -> Any:
    """The JSON of a response, or its text when it is not JSON, or ``None`` when empty."""
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


def error_of(resp: httpx.Response, node: str) -> MinionError:
    return error_for(resp.status_code, parse_body(resp), retry_after=retry_after_of(resp), node=node)


def should_failover(resp: httpx.Response) -> bool:
    """A 502/503/504: this node cannot serve the request now; try the next one."""
    return resp.status_code in (502, 503, 504)


def retry_safe_after(resp: httpx.Response, call: Call) -> bool:
    """After a failover-worthy answer, may ``call`` be sent to another node?"""
    if call.idempotent:
        return True
    if resp.status_code != 503:
        return False
    body = parse_body(resp)
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return code in _NOT_EXECUTED


def connection_failed(call: Call, exc: Optional[BaseException], tried: int) -> ConnectionFailed:
    what = f"{call.method} {call.path}"
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else "no answer"
    err = ConnectionFailed(f"{what} failed after {tried} attempt(s): {detail}")
    err.__cause__ = exc
    return err


def not_repeated(call: Call, exc: BaseException, node: str) -> ConnectionFailed:
    err = ConnectionFailed(
        f"{call.method} {call.path}: the connection to {node} failed after the request may have been "
        f"delivered ({type(exc).__name__}: {exc}); not repeated because it is not idempotent",
        node=node,
    )
    err.__cause__ = exc
    return err


def read_timeout(config: ClientConfig, call: Call) -> httpx.Timeout:
    return httpx.Timeout(config.timeout + call.hold, connect=config.connect_timeout)


def deadline_of(limit: Optional[float]) -> Optional[float]:
    """The ``time.monotonic()`` by which a call given ``limit`` seconds must be over."""
    return None if limit is None else time.monotonic() + max(float(limit), 0.0)


def capped(timeout: httpx.Timeout, deadline: Optional[float]) -> httpx.Timeout:
    """``timeout`` with each phase cut to the time left before ``deadline`` (when there is one)."""
    if deadline is None:
        return timeout
    left = max(deadline - time.monotonic(), 0.001)

    def cap(value: Optional[float]) -> float:
        return left if value is None else min(value, left)

    return httpx.Timeout(
        connect=cap(timeout.connect), read=cap(timeout.read), write=cap(timeout.write), pool=cap(timeout.pool)
    )


def time_left(deadline: Optional[float]) -> Optional[float]:
    """Seconds left before ``deadline`` (``None``: no deadline)."""
    return None if deadline is None else deadline - time.monotonic()


def out_of_time(
    call: Call, limit: Optional[float], last_exc: Optional[BaseException], last_err: Optional[MinionError]
) -> MinionError:
    """What a call whose own ``timeout`` ran out raises: the last node's error answer, else
    :class:`ConnectionFailed` (caused by the last transport error)."""
    if last_err is not None:
        return last_err
    detail = f" (last: {type(last_exc).__name__}: {last_exc})" if last_exc is not None else ""
    err = ConnectionFailed(f"{call.method} {call.path}: no answer within its timeout of {limit:g}s{detail}")
    err.__cause__ = last_exc
    return err
