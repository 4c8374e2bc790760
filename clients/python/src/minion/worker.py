"""Agents: :class:`Worker` registers, heartbeats, claims with long polls, runs handlers routed by
task kind, keeps their leases, and drains on SIGTERM/SIGINT.

Semantics (docs/python.md has the long form):

* **Concurrency** is the number of tasks in flight; a claim asks for free slots only, and the
  agent registers with ``max_concurrency`` equal to it. ``async def`` handlers run on the event
  loop, plain ``def`` handlers each in a daemon thread of their own.
* **Leases** are extended in the background every ``extend_fraction`` of the task's ``lease_ms``,
  scheduled from the lease's expiry; an extension gets at most half the time left before it, a
  failed one is tried again soon, and a lease no extension renewed in time counts as lost. The
  lease is kept until the outcome has been reported.
* **Lost leases** (extend or progress answered 409/404: the task was cancelled, or the lease
  expired) cancel the handler: an asyncio cancellation for ``async def`` handlers; for ``def``
  handlers ``ctx.cancelled`` turns true and ``ctx.progress``/``ctx.stream`` raise ``LeaseLost``.
  Nothing is reported for a lost lease.
* **Outcomes**: a return value completes the task (pydantic models are dumped to JSON); an
  exception fails the attempt with ``"<ExceptionType>: <message>"``, and the queue's retry policy
  applies. A task whose kind has no handler, or whose payload does not validate into the
  handler's type, fails the same way, with a message saying so.
* **Drain**: the first SIGTERM/SIGINT (or :meth:`Worker.stop`) stops claiming, marks the agent
  draining, lets in-flight tasks finish within ``drain_grace`` seconds, then deregisters (which
  releases any lease still held). A second signal ends the wait at once. ``def`` handlers run in
  daemon threads, which cannot be interrupted: one still running when the worker stops runs on
  (its result dropped) unless it checks ``ctx.cancelled``, but does not keep the process alive.
  An agent drained from outside (``minion agent drain``) notices at its next heartbeat and stops
  the same way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import signal
import socket
import threading
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar, Union

from pydantic import ValidationError

from ._handlers import ERROR_BYTES_MAX, Handler, describe_error, dump_result, truncate_utf8
from ._leases import in_daemon_thread, keep_lease, report
from ._transport import ClientConfig, Servers, Verify
from .async_client import AsyncClient
from .client import Client
from .context import Context, LeaseState, SyncContext
from .errors import (
    Forbidden,
    InvalidRequest,
    LeaseLost,
    WaitingForChildren,
    MinionError,
    NotFound,
    RateLimited,
    StaleIncarnation,
    Unauthorized,
    WrongState,
)
from .models import Task

__all__ = ["Worker"]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("minion.worker")

# Errors that mean the worker is misconfigured: retrying cannot help.
_FATAL = (Unauthorized, Forbidden, InvalidRequest, StaleIncarnation)


def _default_agent_id() -> str:
    return os.environ.get("MINION_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"[:128]


def _env_labels() -> dict[str, str]:
    labels = {}
    for item in (os.environ.get("MINION_WORKER_LABELS") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            labels[key.strip()] = value.strip()
    return labels


class Worker:
    """An agent serving ``queues`` with handlers registered by :meth:`task`.

    Args:
        server: a node URL, several (comma-separated or a list), or a :class:`~minion.Client` /
            :class:`~minion.AsyncClient` whose settings (servers, token, TLS) are reused.
        queues: the queues to claim from.
        capabilities: what this agent offers (tasks may require capabilities).
        concurrency: tasks in flight at most.
        token: bearer token (default: the client's, or ``$MINION_TOKEN``).
        agent_id: the agent id (default: ``$MINION_WORKER_ID``, else host-pid-random).
        name, labels: registration details (``labels`` merged over ``$MINION_WORKER_LABELS``).
        verify, timeout: TLS verification and request timeout, when ``server`` is not a client.
        heartbeat_interval: seconds between heartbeats (the server declares an agent dead after
            15 s of silence by default).
        claim_wait_ms: how long one claim long-polls.
        extend_fraction: leases are extended every this fraction of the task's ``lease_ms``.
        drain_grace: seconds in-flight tasks get to finish once draining starts.
        handle_signals: drain on SIGTERM/SIGINT (only possible in the main thread).
    """

    def __init__(
        self,
        server: Union[Servers, Client, AsyncClient, None] = None,
        *,
        queues: Sequence[str],
        capabilities: Iterable[str] = (),
        concurrency: int = 1,
        token: Optional[str] = None,
        agent_id: Optional[str] = None,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        verify: Verify = True,
        timeout: float = 30.0,
        heartbeat_interval: float = 3.0,
        claim_wait_ms: int = 10_000,
        extend_fraction: float = 1 / 3,
        drain_grace: float = 30.0,
        handle_signals: bool = True,
    ) -> None:
        if isinstance(queues, str):
            queues = [queues]
        if not queues:
            raise ValueError("a worker needs at least one queue")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not 0 < extend_fraction < 1:
            raise ValueError("extend_fraction must be between 0 and 1")
        if isinstance(server, (Client, AsyncClient)):
            config = server.config
            if token is not None:
                config = ClientConfig(config.urls, token, config.verify, config.timeout, config.connect_timeout,
                                      config.retries, config.headers)
        else:
            config = ClientConfig.build(server, token=token, verify=verify, timeout=timeout)
        self.config = config
        self.queues = list(queues)
        self.capabilities = list(capabilities)
        self.concurrency = concurrency
        self.agent_id = agent_id or _default_agent_id()
        self.name = name
        self.labels = {**_env_labels(), **dict(labels or {})}
        self.heartbeat_interval = heartbeat_interval
        self.claim_wait_ms = claim_wait_ms
        self.extend_fraction = extend_fraction
        self.drain_grace = drain_grace
        self.handle_signals = handle_signals
        #: The agent's incarnation once registered.
        self.incarnation: Optional[int] = None
        #: Set once the agent is registered (handy to wait on from another thread).
        self.ready = threading.Event()
        #: Set once :meth:`arun` has returned (drained and deregistered, or failed).
        self.stopped = threading.Event()
        self._handlers: dict[str, Handler] = {}
        self._stop_requested = threading.Event()
        self._signals = 0
        self._grace_override: Optional[float] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._sync_client: Optional[Client] = None
        self._sync_client_lock = threading.Lock()

    # -- handlers ----------------------------------------------------------------------------

    def task(self, kind: Optional[str] = None) -> Callable[[F], F]:
        """Register the decorated function for tasks of ``kind`` (default: the function's name;
        ``"*"``: every kind without a handler of its own). The function takes ``(payload)`` or
        ``(payload, ctx)``; the payload is validated into the first parameter's annotation."""

        def register(func: F) -> F:
            self.add_handler(kind if kind is not None else func.__name__, func)
            return func

        return register

    def add_handler(self, kind: str, func: Callable[..., Any]) -> None:
        """Register ``func`` for tasks of ``kind`` (what :meth:`task` does)."""
        if kind in self._handlers:
            raise ValueError(f"kind {kind!r} already has a handler")
        self._handlers[kind] = Handler.inspect(kind, func)

    @property
    def kinds(self) -> list[str]:
        """The kinds with a handler."""
        return sorted(self._handlers)

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (SIGTERM/SIGINT or :meth:`stop`): blocks, and drains before returning."""
        asyncio.run(self.arun())

    def stop(self, *, grace: Optional[float] = None) -> None:
        """Ask the worker to drain and stop; thread-safe, returns at once (``worker.stopped``
        tells when it is done). ``grace`` overrides ``drain_grace`` (0: stop in-flight tasks now)."""
        if grace is not None:
            self._grace_override = grace
        self._stop_requested.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._request_stop)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _request_stop(self) -> None:
        self._stop_requested.set()
        self._stop.set()
        if self._grace_override == 0:
            self._hurry.set()

    def _on_signal(self, signum: int) -> None:
        # Counted apart from ``_stop``: a heartbeat that sees an outside drain sets that too, and
        # `minion pool` drains an agent before sending it SIGTERM.
        self._signals += 1
        if self._signals > 1:
            log.warning("agent %s: second %s: stopping now", self.agent_id, signal.Signals(signum).name)
            self._hurry.set()
            return
        log.info("agent %s: %s: draining", self.agent_id, signal.Signals(signum).name)
        self._request_stop()

    async def arun(self) -> None:
        """Run on the current event loop until stopped (``await worker.arun()``)."""
        if not self._handlers:
            raise RuntimeError("the worker has no handlers: register some with @worker.task(...)")
        if self._loop is not None:
            raise RuntimeError("this worker is already running (or has run): make a new one")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        if self._stop_requested.is_set():
            self._request_stop()
        self._client = AsyncClient.from_config(self.config)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._leases: dict[int, LeaseState] = {}
        self._handler_tasks: dict[int, asyncio.Task[Any]] = {}
        self._slot_freed = asyncio.Event()
        self._drained = False
        self._register_lock = asyncio.Lock()
        removers = self._install_signals(loop)
        heartbeats: Optional[asyncio.Task[None]] = None
        registered = False
        try:
            await self._register()
            registered = True
            self.ready.set()
            heartbeats = asyncio.create_task(self._heartbeats())
            await self._claim_loop()
            await self._drain()
        finally:
            for remove in removers:
                remove()
            if heartbeats is not None:
                heartbeats.cancel()
            await self._abandon("the worker stopped")
            leftovers = [t for t in self._running.values() if not t.done()]
            for leftover in leftovers:  # e.g. awaiting a handler's thread, which runs on
                leftover.cancel()
            if leftovers:
                await asyncio.wait(leftovers, timeout=1.0)
            if registered:
                try:
                    await self._client.deregister_agent(self.agent_id)
                except MinionError as err:
                    log.warning("agent %s: could not deregister: %s", self.agent_id, err)
            await self._client.aclose()
            if self._sync_client is not None:
                self._sync_client.close()
            log.info("agent %s stopped", self.agent_id)
            self.stopped.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[Callable[[], None]]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        removers: list[Callable[[], None]] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows
                continue
            removers.append(functools.partial(_remove_signal_handler, loop, sig))
        return removers

    async def _register(self) -> None:
        agent = await self._client.register_agent(
            self.agent_id,
            name=self.name,
            capabilities=self.capabilities,
            max_concurrency=self.concurrency,
            labels=self.labels,
        )
        self.incarnation = agent.incarnation
        log.info("agent %s registered (incarnation %s), queues %s", self.agent_id, agent.incarnation, self.queues)

    async def _reregister(self, seen_incarnation: Optional[int]) -> None:
        """The server declared this agent dead (or forgot it): its leases are gone; register anew."""
        async with self._register_lock:
            if self.incarnation != seen_incarnation or self._stop.is_set():
                return
            log.warning("agent %s: the server no longer knows it as alive; registering again", self.agent_id)
            await self._register()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when stopping."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            incarnation = self.incarnation
            # A node that hangs must not hold the next heartbeat back: give up after about an interval.
            limit = min(max(self.heartbeat_interval, 1.0), self.config.timeout)
            try:
                beat = await self._client.heartbeat(self.agent_id, incarnation, timeout=limit)
                if beat.status == "draining" and not self._stop.is_set():
                    # Drained from outside (`minion agent drain`): finish what is held and leave.
                    log.info("agent %s was drained by an operator: stopping", self.agent_id)
                    self._drained = True
                    self._request_stop()
            except (WrongState, NotFound):
                try:
                    await self._reregister(incarnation)
                except MinionError as err:
                    log.warning("agent %s: registering again failed: %s", self.agent_id, err)
            except StaleIncarnation as err:
                log.error("agent %s: another process registered under this id (%s); stopping", self.agent_id, err)
                self._request_stop()
                return
            except MinionError as err:
                log.warning("agent %s: heartbeat failed: %s", self.agent_id, err)

    async def _claim_loop(self) -> None:
        while not self._stop.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await _first(self._slot_freed.wait(), self._stop.wait())
                continue
            incarnation = self.incarnation
            claim = asyncio.create_task(
                self._client.claim(self.agent_id, self.queues, max=min(free, 1000), wait_ms=self.claim_wait_ms)
            )
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait({claim, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not claim.done():
                # Stopping in the middle of a long poll: drain first, so nothing new can be given
                # to this agent, then let an answer already on its way arrive before dropping it.
                await self._send_drain()
                done, _ = await asyncio.wait({claim}, timeout=0.5)
                if not done:
                    claim.cancel()
                    await asyncio.gather(claim, return_exceptions=True)
                    break
            try:
                tasks = claim.result()
            except _FATAL:
                raise
            except (WrongState, NotFound):
                try:
                    await self._reregister(incarnation)
                except _FATAL:
                    raise
                except MinionError as err:  # e.g. no node during a failover: in-flight tasks go on
                    log.warning("agent %s: registering again failed (%s); retrying", self.agent_id, err)
                    await self._sleep(1.0)
                continue
            except RateLimited as err:
                await self._sleep(err.retry_after or 1.0)
                continue
            except MinionError as err:
                log.warning("agent %s: claim failed (%s); retrying", self.agent_id, err)
                await self._sleep(1.0)
                continue
            for task in tasks:
                self._start(task)

    async def _send_drain(self) -> None:
        if self._drained:
            return
        self._drained = True
        try:
            await self._client.drain_agent(self.agent_id)
        except MinionError as err:
            log.warning("agent %s: drain request failed: %s", self.agent_id, err)

    async def _drain(self) -> None:
        """Wait for in-flight tasks, up to the grace period (or a second signal)."""
        await self._send_drain()
        grace = self._grace_override if self._grace_override is not None else self.drain_grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            while not hurry.done():
                pending = {t for t in self._running.values() if not t.done()}
                remaining = deadline - loop.time()
                if not pending or remaining <= 0:
                    break
                log.info("agent %s: draining: %d task(s) in flight, %.1fs left", self.agent_id, len(pending), remaining)
                await asyncio.wait(pending | {hurry}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hurry.cancel()

    async def _abandon(self, reason: str) -> None:
        """Stop what still runs: its results will not be reported (deregistering releases it)."""
        pending = [t for t in self._running.values() if not t.done()]
        if not pending:
            return
        log.warning("agent %s: abandoning %d task(s): %s", self.agent_id, len(pending), reason)
        for lease in list(self._leases.values()):
            lease.lose(reason)
        await asyncio.wait(pending, timeout=5.0)

    # -- one task ----------------------------------------------------------------------------

    def _start(self, task: Task) -> None:
        lease = LeaseState(task, functools.partial(self._on_lost, task.id))
        # The lease started when the claim was answered, at the latest: now.
        claimed_at = asyncio.get_running_loop().time()
        run = asyncio.create_task(self._execute(task, lease, claimed_at), name=f"minion-task-{task.id}")
        self._running[task.id] = run
        self._leases[task.id] = lease

        def finished(_: "asyncio.Task[None]") -> None:
            self._running.pop(task.id, None)
            self._leases.pop(task.id, None)
            self._slot_freed.set()

        run.add_done_callback(finished)

    def _on_lost(self, task_id: int, reason: str) -> None:
        log.info("agent %s: task %s: lease lost (%s); stopping its handler", self.agent_id, task_id, reason)
        inner = self._handler_tasks.get(task_id)
        if inner is not None:
            inner.cancel()

    async def _execute(self, task: Task, lease: LeaseState, claimed_at: float) -> None:
        keeper = asyncio.create_task(self._keep_lease(lease, claimed_at))
        try:
            handler = self._handlers.get(task.kind) or self._handlers.get("*")
            if handler is None:
                known = ", ".join(repr(k) for k in self.kinds)
                outcome: Optional[tuple[str, Any]] = (
                    "fail",
                    f"no handler for kind {task.kind!r} on agent {self.agent_id} (it handles {known})",
                )
            else:
                outcome = await self._call(handler, task, lease)
            if outcome is None or lease.lost:
                log.info("agent %s: task %s: nothing reported (%s)", self.agent_id, task.id, lease.lost_reason)
                return
            # The keeper runs on meanwhile: a report that backs off must not let the lease lapse.
            await self._report(task, lease, *outcome)
        finally:
            keeper.cancel()

    async def _call(self, handler: Handler, task: Task, lease: LeaseState) -> Optional[tuple[str, Any]]:
        try:
            payload = handler.parse(task.payload)
        except ValidationError as err:
            return "fail", truncate_utf8(f"invalid payload for kind {task.kind!r}: {err}", ERROR_BYTES_MAX)
        try:
            if handler.is_async:
                ctx: Any = Context(lease, self._client, self.agent_id)
                inner = asyncio.ensure_future(handler.func(*handler.args(payload, ctx)))
                self._handler_tasks[task.id] = inner
                try:
                    if lease.lost:  # lost before the handler even started
                        inner.cancel()
                    result = await inner
                finally:
                    self._handler_tasks.pop(task.id, None)
            else:
                assert self._loop is not None
                ctx = SyncContext(lease, self._client, self.agent_id, self._loop, self._get_sync_client)
                call = functools.partial(handler.func, *handler.args(payload, ctx))
                result = await in_daemon_thread(self._loop, call, f"minion-task-{task.id}")
            return "complete", dump_result(result)
        except asyncio.CancelledError:
            if lease.lost:
                return None
            raise
        except LeaseLost:
            return None
        except WaitingForChildren as w:
            log.info("agent %s: task %s: %s", self.agent_id, task.id, w)
            return None
        except Exception as err:
            if lease.lost:
                return None
            log.warning("agent %s: task %s (%s) failed: %s", self.agent_id, task.id, task.kind, err, exc_info=True)
            return "fail", describe_error(err)

    def _get_sync_client(self) -> Client:
        with self._sync_client_lock:
            if self._sync_client is None:
                self._sync_client = Client.from_config(self.config)
            return self._sync_client

    async def _keep_lease(self, lease: LeaseState, claimed_at: float) -> None:
        await keep_lease(
            self._client, self.agent_id, lease, claimed_at, extend_fraction=self.extend_fraction, timeout=self.config.timeout
        )

    async def _report(self, task: Task, lease: LeaseState, outcome: str, value: Any) -> None:
        await report(self._client, self.agent_id, task, lease, outcome, value)

    @property
    def in_flight(self) -> int:
        """Tasks running now (0 when not running)."""
        running = getattr(self, "_running", None)
        return len(running) if running else 0


def _remove_signal_handler(loop: asyncio.AbstractEventLoop, sig: int) -> None:
    loop.remove_signal_handler(sig)


async def _first(*aws: Any) -> None:
    """Wait until the first of the awaitables is done; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
