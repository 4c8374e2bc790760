"""Typed errors.

Every error the server answers is ``{"error": {"code": "...", "message": "..."}}``; the SDK raises
one exception class per code, each a subclass of :class:`MinionError` carrying ``status``,
``code`` and ``message``. Codes the SDK does not know yet raise :class:`MinionError` itself, so
catching ``MinionError`` always works. Transport failures (no node could be reached) raise
:class:`ConnectionFailed`, also a ``MinionError`` (``status`` 0).
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

__all__ = [
    "WaitingForChildren",
    "ChildFailed",
    "MinionError",
    "InvalidJson",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "StaleLease",
    "WrongState",
    "StaleIncarnation",
    "Conflict",
    "Gone",
    "Compacted",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "InternalError",
    "StorageError",
    "Unavailable",
    "NoLeader",
    "NotLeader",
    "CommitTimeout",
    "TooManyConnections",
    "TooManyStreams",
    "ShuttingDown",
    "ConnectionFailed",
    "LeaseLost",
    "WaitTimeout",
    "error_for",
]


class MinionError(Exception):
    """An error answered by a Minion node (or, for :class:`ConnectionFailed`, no answer at all).

    Attributes:
        status: the HTTP status (0 when no node answered).
        code: the server's machine-readable code, e.g. ``"not_found"``.
        message: the server's human-readable message.
        retry_after: seconds from a ``Retry-After`` header, when the server sent one.
        node: the URL of the node that answered, when known.
    """

    #: The code this class stands for (``None``: any code, the base class).
    CODE: ClassVar[str | None] = None

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.node = node

    def __reduce__(self) -> tuple[Any, ...]:  # keep errors picklable (e.g. across processes)
        return (_rebuild, (type(self), self.status, self.code, self.message, self.retry_after, self.node))


def _rebuild(
    cls: type[MinionError], status: int, code: str, message: str, retry_after: float | None, node: str | None
) -> MinionError:
    err = cls.__new__(cls)
    MinionError.__init__(err, status, code, message, retry_after=retry_after, node=node)
    return err


class InvalidJson(MinionError):
    """400 ``invalid_json``: the body was not JSON."""

    CODE = "invalid_json"


class InvalidRequest(MinionError):
    """400 ``invalid_request``: unknown or missing fields, wrong types, values out of range, bad path or query."""

    CODE = "invalid_request"


class Unauthorized(MinionError):
    """401 ``unauthorized``: no bearer token, or one that is not valid, expired or revoked."""

    CODE = "unauthorized"


class Forbidden(MinionError):
    """403 ``forbidden``: the token's role or queue patterns do not allow the call."""

    CODE = "forbidden"


class NotFound(MinionError):
    """404 ``not_found``: unknown task, agent or route."""

    CODE = "not_found"


class MethodNotAllowed(MinionError):
    """405 ``method_not_allowed``."""

    CODE = "method_not_allowed"


class Conflict(MinionError):
    """409: the request conflicts with the current state (base of the other 409 codes).

    Raised as such for ``conflict`` (a cluster membership change that cannot be made).
    """

    CODE = "conflict"


class StaleLease(Conflict):
    """409 ``stale_lease``: the lease token is not the task's current lease (expired, or an earlier holder's)."""

    CODE = "stale_lease"


class WrongState(Conflict):
    """409 ``wrong_state``: e.g. completing twice, cancelling a finished task, a dead agent claiming."""

    CODE = "wrong_state"


class StaleIncarnation(Conflict):
    """409 ``stale_incarnation``: a heartbeat naming an agent's earlier incarnation."""

    CODE = "stale_incarnation"


class Gone(MinionError):
    """410: the resource is gone (base of ``compacted``)."""

    CODE = "gone"


class Compacted(Gone):
    """410 ``compacted``: the change feed no longer holds the position asked for."""

    CODE = "compacted"


class PayloadTooLarge(MinionError):
    """413 ``payload_too_large``: the body is over the node's ``body_bytes_max``."""

    CODE = "payload_too_large"


class UnsupportedMediaType(MinionError):
    """415 ``unsupported_media_type``."""

    CODE = "unsupported_media_type"


class RateLimited(MinionError):
    """429 ``rate_limited``: the token is over its rate on this node; see ``retry_after``."""

    CODE = "rate_limited"


class InternalError(MinionError):
    """500 ``internal``: base of every 500 code."""

    CODE = "internal"


class StorageError(InternalError):
    """500 ``storage``: the node's storage failed (e.g. a disk error) while serving the request."""

    CODE = "storage"


class Unavailable(MinionError):
    """503 ``unavailable``: the node is shutting down, or forwarding to the leader failed.

    Base class of every 503 code, and what a 502 or 504 without a Minion error body (from a
    proxy or load balancer in front of the nodes) raises. The SDK moves to the next node on
    these and retries only requests that are safe to repeat.
    """

    CODE = "unavailable"


class NoLeader(Unavailable):
    """503 ``no_leader``: no leader known within 5 s (an election is under way)."""

    CODE = "no_leader"


class NotLeader(Unavailable):
    """503 ``not_leader``: leadership moved while the request was served."""

    CODE = "not_leader"


class CommitTimeout(Unavailable):
    """503 ``commit_timeout``: a write's outcome is unknown; retry with the same idempotency key."""

    CODE = "commit_timeout"


class TooManyConnections(Unavailable):
    """503 ``too_many_connections``: the node has its maximum of connections open."""

    CODE = "too_many_connections"


class TooManyStreams(Unavailable):
    """503 ``too_many_streams``: the node has its maximum of event streams open."""

    CODE = "too_many_streams"


class ShuttingDown(Unavailable):
    """503 ``shutting_down``: the node is shutting down and refused the request (e.g. a new event
    stream) without doing anything; the SDK sends it to the next node."""

    CODE = "shutting_down"


class ConnectionFailed(MinionError):
    """No node could be reached (or a node dropped the connection and the request was not safe to
    repeat). ``status`` is 0 and ``code`` ``"connection_failed"``; ``__cause__`` is the last
    transport error."""

    CODE = "connection_failed"

    def __init__(self, message: str, *, node: str | None = None) -> None:
        super().__init__(0, "connection_failed", message, node=node)


class LeaseLost(Exception):
    """Raised inside a *synchronous* handler by ``ctx.progress``/``ctx.stream``/``ctx.raise_if_cancelled``
    once the task's lease is gone: the task was cancelled, or its lease expired and it may run
    elsewhere. Whatever the handler does afterwards is not reported. (Asynchronous handlers are
    cancelled with :class:`asyncio.CancelledError` instead.)"""

    def __init__(self, task_id: int, reason: str) -> None:
        super().__init__(f"task {task_id}: lease lost ({reason})")
        self.task_id = task_id
        self.reason = reason


class WaitingForChildren(BaseException):
    """Raised by ``ctx.gather`` when some children are unfinished: the task gave its lease back
    and waits (``waiting_children``); the handler stops here and nothing is reported. Once every
    child has finished the task is claimed again and the handler runs again from the start: its
    ``ctx.spawn`` calls return the children spawned before (same order, same idempotency keys)
    and ``ctx.gather`` returns their results. A ``BaseException``, like
    :class:`asyncio.CancelledError`, so that ``except Exception`` in a handler does not stop it."""

    def __init__(self, task_id: int, unfinished: int) -> None:
        super().__init__(f"task {task_id}: waiting for {unfinished} unfinished child(ren)")
        self.task_id = task_id
        self.unfinished = unfinished


class ChildFailed(Exception):
    """A child that did not succeed, as ``ctx.gather`` reports it (raised, or returned in its place
    with ``return_exceptions=True``): ``child_id``, its ``state`` (``dead``, ``cancelled``, or
    ``None`` once retention removed it) and ``error``."""

    def __init__(self, child_id: int, state: Optional[str], error: Optional[str]) -> None:
        super().__init__(f"child task {child_id} is {state or 'gone'}" + (f": {error}" if error else ""))
        self.child_id = child_id
        self.state = state
        self.error = error


class WaitTimeout(TimeoutError):
    """``wait()`` ran out of time before the task finished; ``task`` is its last known state."""

    def __init__(self, task: Any) -> None:
        super().__init__(f"task {getattr(task, 'id', '?')} is still {getattr(task, 'state', '?')}")
        self.task = task


_BY_CODE: dict[str, type[MinionError]] = {
    cls.CODE: cls
    for cls in (
        InvalidJson,
        InvalidRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        StaleLease,
        WrongState,
        StaleIncarnation,
        Compacted,
        PayloadTooLarge,
        UnsupportedMediaType,
        RateLimited,
        InternalError,
        StorageError,
        Unavailable,
        NoLeader,
        NotLeader,
        CommitTimeout,
        TooManyConnections,
        TooManyStreams,
        ShuttingDown,
    )
    if cls.CODE
}

# Codes the server does not send today, by status, so a new code still gets a sensible class.
_BY_STATUS: dict[int, type[MinionError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    500: InternalError,
    # A proxy or load balancer in front of the nodes: the node behind it is down or did not
    # answer in time. Like a 503, the request may or may not have been carried out.
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for(
    status: int,
    body: Any,
    *,
    retry_after: float | None = None,
    node: str | None = None,
) -> MinionError:
    """Build the typed error for an error response (``body`` is the parsed JSON, or text)."""
    code, message = "", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or "")
        message = str(body["error"].get("message") or "")
    elif isinstance(body, str):
        message = body.strip()[:1000]
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or MinionError
    if not code:
        code = f"http_{status}" if status in (502, 504) or cls.CODE is None else cls.CODE
    return cls(status, code, message or f"HTTP {status}", retry_after=retry_after, node=node)
