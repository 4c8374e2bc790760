"""What a task handler gets as ``ctx``: the task, progress and partial output, cancellation.

``async def`` handlers get a :class:`Context` (awaitable methods); plain ``def`` handlers, which
run in threads of their own, get a :class:`SyncContext` (blocking methods). Both share the read-only
attributes of :class:`BaseContext`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from . import _ops as ops
from ._handlers import MESSAGE_BYTES_MAX, split_utf8
from .errors import (
    ChildFailed,
    ConnectionFailed,
    LeaseLost,
    NotFound,
    RateLimited,
    StaleLease,
    Unavailable,
    WaitingForChildren,
    WrongState,
)
from .models import Task, TaskSpec, TaskState

if TYPE_CHECKING:
    from .async_client import AsyncClient
    from .client import Client

__all__ = ["BaseContext", "Context", "SyncContext", "LeaseState"]

# Answers to progress/extend that mean the lease is gone: cancelled, finished, or leased again.
LEASE_GONE = (StaleLease, WrongState, NotFound)

# Failures of a progress report that say nothing about the lease: no node answered, or the one
# that did could not serve it now. Progress is best-effort: the report is dropped, not retried.
TRANSIENT = (ConnectionFailed, Unavailable, RateLimited)

log = logging.getLogger("minion.worker")


class LeaseState:
    """The lease of one running task, shared by the worker, the lease keeper and the context."""

    def __init__(self, task: Task, on_lost: Callable[[str], None]) -> None:
        assert task.lease is not None, "a claimed task has a lease"
        self.task = task
        self.token = task.lease.token
        self.lost_reason: Optional[str] = None
        self.lost_flag = threading.Event()
        #: Given back on purpose (the task waits for its children): not lost.
        self.given_back = False
        self._on_lost = on_lost

    @property
    def lost(self) -> bool:
        return self.lost_flag.is_set()

    def lose(self, reason: str) -> None:
        """Record that the lease is gone (once) and let the worker stop the handler."""
        if self.lost_flag.is_set() or self.given_back:
            return
        self.lost_reason = reason
        self.lost_flag.set()
        self._on_lost(reason)


class BaseContext:
    """The task being run and its lease.

    Attributes:
        task: the task as claimed (payload, attempts, lease, ...).
        agent_id: the id of the agent running it.
    """

    def __init__(self, lease: LeaseState, client: "AsyncClient", agent_id: str) -> None:
        self._lease = lease
        self._client = client
        self.task: Task = lease.task
        self.agent_id = agent_id
        self._spawned = 0

    @property
    def task_id(self) -> int:
        """The task's id."""
        return self.task.id

    @property
    def kind(self) -> str:
        """The task's kind (the handler's route)."""
        return self.task.kind

    @property
    def queue(self) -> str:
        """The task's queue."""
        return self.task.queue

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self.task.attempt

    @property
    def max_attempts(self) -> int:
        """Attempts the task may have in all (``attempt == max_attempts``: the last one)."""
        return self.task.attempt_limit

    @property
    def payload(self) -> Any:
        """The payload as submitted (JSON), before validation into the handler's type."""
        return self.task.payload

    @property
    def lease_token(self) -> int:
        """The token of this attempt's lease."""
        return self._lease.token

    @property
    def cancelled(self) -> bool:
        """True once the lease is gone: the task was cancelled, or its lease expired. Nothing
        the handler does afterwards is reported."""
        return self._lease.lost

    @property
    def cancel_reason(self) -> Optional[str]:
        """Why the lease was lost, once it is."""
        return self._lease.lost_reason

    def _child_spec(self, queue: str, payload: Any, fields: dict[str, Any]) -> TaskSpec:
        """The n-th child of this run, with the idempotency key ``child:{task id}:{n}`` unless one
        is given: the same spawn in the run after a resume names the same child."""
        self._spawned += 1
        fields.setdefault("idempotency_key", f"child:{self.task.id}:{self._spawned}")
        return TaskSpec(queue=queue, payload=payload, **fields)

    async def _spawn(self, specs: list[TaskSpec]) -> list[int]:
        if self._lease.lost:
            raise LeaseLost(self.task.id, self._lease.lost_reason or "lost")
        out = await self._client._run(ops.spawn_children(self.task.id, self._lease.token, specs))
        return [s.id for s in out]

    async def _gather(self, children: Sequence[int], return_exceptions: bool) -> list[Any]:
        if self._lease.lost:
            raise LeaseLost(self.task.id, self._lease.lost_reason or "lost")
        t = await self._client._run(ops.wait_children(self.task.id, self._lease.token))
        if t.state == TaskState.WAITING_CHILDREN:
            # The lease is given back: the lease keeper must not count its refusals as a loss.
            self._lease.given_back = True
            raise WaitingForChildren(self.task.id, sum(1 for c in t.children if not (c.state and c.state.is_final)))
        by_id = {c.id: c for c in t.children}
        out: list[Any] = []
        for cid in children:
            c = by_id.get(int(cid))
            if c is None:
                raise ValueError(f"task {cid} is not a child of task {self.task.id}")
            if c.state == TaskState.SUCCEEDED:
                out.append(c.result)
                continue
            failed = ChildFailed(c.id, c.state.value if c.state else None, c.last_error)
            if not return_exceptions:
                raise failed
            out.append(failed)
        return out

    async def _report(self, percent: Optional[int], message: Optional[str]) -> bool:
        """Send progress (split into ≤ 4,096-byte messages); False when the lease is gone."""
        if self._lease.lost:
            return False
        if percent is not None:
            percent = int(round(percent))
            if not 0 <= percent <= 100:
                raise ValueError(f"percent must be within 0..100, not {percent}")
        pieces: list[Optional[str]] = list(split_utf8(message, MESSAGE_BYTES_MAX)) if message else [message]
        for i, piece in enumerate(pieces):
            try:
                op = ops.progress(self.task.id, self._lease.token, percent if i == 0 else None, piece, quiet=True)
                await self._client._run(op)
            except LEASE_GONE as err:
                self._lease.lose(f"progress refused: {err.code}: {err.message}")
                return False
            except TRANSIENT as err:
                # Not repeated (it could be recorded twice) and not the handler's problem: the
                # rest of this report is dropped; the lease keeper finds out whether the lease lives.
                log.warning(
                    "agent %s: task %s: progress report dropped (%d of %d piece(s) sent): %s",
                    self.agent_id, self.task.id, i, len(pieces), err,
                )
                return not self._lease.lost
        return True


class Context(BaseContext):
    """The context of an ``async def`` handler.

    When the lease is lost (the task was cancelled, or its lease expired) the handler's asyncio
    task is cancelled: it sees :class:`asyncio.CancelledError` at its next ``await``. ``client``
    is an :class:`~minion.AsyncClient` for work such as submitting sub-tasks.
    """

    @property
    def client(self) -> "AsyncClient":
        """The worker's asyncio client (same servers and token)."""
        return self._client

    async def progress(self, percent: Optional[float] = None, message: Optional[str] = None) -> None:
        """Report progress (``percent`` 0–100 and/or a message; a long message is split).

        Best-effort: when no node can take the report (:class:`~minion.ConnectionFailed`, a 503,
        429) it is dropped with a warning in the log and the handler goes on. Raises
        :class:`asyncio.CancelledError` when the server says the lease is gone.
        """
        if not await self._report(None if percent is None else int(round(percent)), message):
            raise asyncio.CancelledError(f"task {self.task_id}: lease lost ({self.cancel_reason})")

    async def stream(self, text: str) -> None:
        """Send a piece of partial output (e.g. LLM tokens) as progress messages; text over
        4,096 bytes goes as several messages. Watch it with ``client.events(task_id=...)``.
        Best-effort like :meth:`progress`: output no node can take is dropped."""
        if text:
            await self.progress(None, text)

    async def spawn(self, queue: str, payload: Any = None, **fields: Any) -> int:
        """Submit a child task under this task's lease (any :class:`~minion.TaskSpec` field as a
        keyword: ``kind``, ``priority``, ``depends_on``, ...); returns its id. Unless given one,
        the child's idempotency key is ``child:{task id}:{n}`` for the n-th spawn of this run, so
        the run after a resume (see :meth:`gather`) gets the same children back."""
        return (await self._spawn([self._child_spec(queue, payload, dict(fields))]))[0]

    async def gather(self, children: Sequence[int], *, return_exceptions: bool = False) -> list[Any]:
        """The results of ``children``, in order, once all of this task's children have finished.

        If some are unfinished the task gives its lease back and waits (``waiting_children``):
        this raises :class:`~minion.WaitingForChildren`, the handler stops, and it runs again
        from the start when the last child finishes (its spawns then return the same children,
        and ``gather`` their results). A child that did not succeed raises
        :class:`~minion.ChildFailed`, or with ``return_exceptions=True`` stands in its place."""
        return await self._gather(children, return_exceptions)


class SyncContext(BaseContext):
    """The context of a plain ``def`` handler (run in a thread of its own).

    Its methods block. A thread cannot be interrupted, so a handler learns that its lease is gone
    (cancelled, or expired) from ``ctx.cancelled`` / ``ctx.cancelled_event``, or from
    :class:`~minion.LeaseLost` raised by :meth:`progress`, :meth:`stream` and
    :meth:`raise_if_cancelled`; long-running handlers should check one of them regularly.
    ``client`` is a blocking :class:`~minion.Client`.
    """

    def __init__(
        self,
        lease: LeaseState,
        client: "AsyncClient",
        agent_id: str,
        loop: asyncio.AbstractEventLoop,
        sync_client: Callable[[], "Client"],
    ) -> None:
        super().__init__(lease, client, agent_id)
        self._loop = loop
        self._sync_client = sync_client

    @property
    def client(self) -> "Client":
        """A blocking client (same servers and token), shared by the worker's threads."""
        return self._sync_client()

    @property
    def cancelled_event(self) -> threading.Event:
        """Set once the lease is gone; ``ctx.cancelled_event.wait(t)`` is an interruptible sleep."""
        return self._lease.lost_flag

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~minion.LeaseLost` if the lease is gone."""
        if self._lease.lost:
            raise LeaseLost(self.task_id, self._lease.lost_reason or "lost")

    def sleep(self, seconds: float) -> None:
        """Sleep, but raise :class:`~minion.LeaseLost` as soon as the lease is gone."""
        if self._lease.lost_flag.wait(seconds):
            self.raise_if_cancelled()

    def progress(self, percent: Optional[float] = None, message: Optional[str] = None) -> None:
        """Report progress; best-effort like :meth:`Context.progress` (a report no node can take is
        dropped and logged); raises :class:`~minion.LeaseLost` when the lease is gone."""
        self.raise_if_cancelled()  # also once the worker has stopped (and its loop is gone)
        p = None if percent is None else int(round(percent))
        ok = asyncio.run_coroutine_threadsafe(self._report(p, message), self._loop).result()
        if not ok:
            self.raise_if_cancelled()

    def stream(self, text: str) -> None:
        """Send partial output as progress messages (split at 4,096 bytes)."""
        if text:
            self.progress(None, text)

    def spawn(self, queue: str, payload: Any = None, **fields: Any) -> int:
        """Submit a child task under this task's lease; see :meth:`Context.spawn`."""
        spec = self._child_spec(queue, payload, dict(fields))
        return asyncio.run_coroutine_threadsafe(self._spawn([spec]), self._loop).result()[0]

    def gather(self, children: Sequence[int], *, return_exceptions: bool = False) -> list[Any]:
        """The children's results once all have finished; see :meth:`Context.gather`."""
        return asyncio.run_coroutine_threadsafe(self._gather(children, return_exceptions), self._loop).result()
