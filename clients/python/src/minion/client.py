"""The blocking client, :class:`Client` (thread-safe; one per process is plenty)."""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

import httpx

from . import _ops as ops
from ._transport import (
    Call,
    ClientConfig,
    Op,
    Rotation,
    Servers,
    Verify,
    backoff,
    capped,
    connection_failed,
    deadline_of,
    error_of,
    make_ssl_context,
    not_repeated,
    out_of_time,
    parse_body,
    read_timeout,
    retry_after_of,
    retry_safe_after,
    should_failover,
    time_left,
    transport_error_delivered,
)
from .errors import MinionError, WaitTimeout
from .events import EventStream, stream_timeout
from .models import (
    Agent,
    Caller,
    AgentPage,
    DependencyPolicy,
    Heartbeat,
    Queue,
    QueueConfig,
    QueueLimits,
    Rate,
    Schedule,
    QueueStats,
    Submitted,
    Task,
    TaskPage,
    TaskState,
    Token,
)
from .sse import StreamState

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A blocking client of one Minion cluster.

    Args:
        server: a node URL, several separated by commas, or a list (default: ``$MINION_SERVER``,
            else ``http://127.0.0.1:7070``). Requests go to one node and move to the next when it
            cannot be reached or answers 503; see the retry policy in the docs.
        token: bearer token (default: ``$MINION_TOKEN``); not needed in development mode.
        verify: TLS verification: ``True``, a path to a PEM CA bundle (private CA), an
            ``ssl.SSLContext``, or ``False`` (never in production).
        timeout: seconds for a request, on top of any long-poll wait it asks the server for.
        connect_timeout: seconds to connect to a node before moving to the next.
        retries: further attempts after the first, across nodes, for requests safe to repeat.
        headers: extra headers sent with every request.
        transport: an httpx transport (advanced: proxies, tests).
    """

    def __init__(
        self,
        server: Optional[Servers] = None,
        *,
        token: Optional[str] = None,
        verify: Verify = True,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retries: int = 4,
        headers: Optional[Mapping[str, str]] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        config = ClientConfig.build(
            server,
            token=token,
            verify=verify,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            headers=headers,
        )
        self._init(config, transport)

    @classmethod
    def from_config(cls, config: ClientConfig, *, transport: Optional[httpx.BaseTransport] = None) -> "Client":
        """A client with the settings of ``config`` (e.g. ``other_client.config``)."""
        self = cls.__new__(cls)
        self._init(config, transport)
        return self

    def _init(self, config: ClientConfig, transport: Optional[httpx.BaseTransport]) -> None:
        self.config = config
        self._rotation = Rotation(config.urls)
        self._http = httpx.Client(
            verify=make_ssl_context(config.verify),
            timeout=config.httpx_timeout(),
            headers=config.default_headers(),
            transport=transport,
        )

    @property
    def servers(self) -> tuple[str, ...]:
        """The node URLs, in the order given."""
        return self.config.urls

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({list(self.config.urls)!r})"

    # -- transport ---------------------------------------------------------------------------

    def _send(
        self,
        call: Call,
        *,
        stream: bool = False,
        timeout: Optional[httpx.Timeout] = None,
        limit: Optional[float] = None,
    ) -> tuple[httpx.Response, str]:
        """Send ``call`` following the failover policy; the response may be an error answer.

        ``timeout`` is each attempt's httpx timeout; ``limit`` (seconds) bounds the whole call,
        retries and backoff included."""
        deadline = deadline_of(limit)
        if timeout is None:
            timeout = read_timeout(self.config, call) if call.hold else self.config.httpx_timeout()
        attempts, round_no = 0, 0
        last_exc: Optional[BaseException] = None
        last_err: Optional[MinionError] = None
        while True:
            retry_after = None
            for index, base in self._rotation.order():
                if attempts and deadline is not None and time.monotonic() >= deadline:
                    raise out_of_time(call, limit, last_exc, last_err)
                attempts += 1
                request = self._http.build_request(
                    call.method, base + call.path, timeout=capped(timeout, deadline), **call.request_kwargs()
                )
                try:
                    resp = self._http.send(request, stream=stream)
                except httpx.TransportError as exc:
                    self._rotation.failed(index)
                    if transport_error_delivered(exc) and not call.idempotent:
                        raise not_repeated(call, exc, base) from exc
                    last_exc, last_err = exc, None
                else:
                    if not should_failover(resp):
                        return resp, base
                    self._rotation.failed(index)
                    if stream:
                        resp.read()
                        resp.close()
                    err = error_of(resp, base)
                    if not retry_safe_after(resp, call):
                        raise err
                    last_exc, last_err, retry_after = None, err, retry_after_of(resp)
                if attempts > self.config.retries:
                    if last_err is not None:
                        raise last_err
                    raise connection_failed(call, last_exc, attempts)
            pause = backoff(round_no, retry_after)
            left = time_left(deadline)
            if left is not None and left <= pause:
                raise out_of_time(call, limit, last_exc, last_err)
            time.sleep(pause)
            round_no += 1

    def _run(self, op: Op[T], timeout: Optional[float] = None) -> T:
        """Execute ``op``; ``timeout`` (seconds) bounds the whole call, retries included."""
        resp, node = self._send(op.call, limit=timeout)
        if resp.is_success:
            return op.result(resp)
        raise error_of(resp, node)

    def _open_stream(self, call: Call) -> httpx.Response:
        timeout = stream_timeout(self.config.connect_timeout, self.config.timeout)
        resp, node = self._send(call, stream=True, timeout=timeout)
        if resp.is_success:
            return resp
        resp.read()
        resp.close()
        raise error_of(resp, node)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        idempotent: Optional[bool] = None,
    ) -> Any:
        """Call any route (e.g. ``client.request("GET", "/v1/stats")``) and return its JSON.

        ``idempotent`` (default: true for GET, PUT and DELETE) says whether the request may be
        sent again when a node fails after it may have been delivered. Errors raise typed
        exceptions like every other call.
        """
        return self._run(ops.raw(method, path, json=json, params=params, idempotent=idempotent))

    # -- producers ---------------------------------------------------------------------------

    def submit(
        self,
        queue: str,
        payload: Any = None,
        *,
        kind: Optional[str] = None,
        priority: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        delay_ms: Optional[int] = None,
        run_at_ms: Optional[int] = None,
        max_attempts: Optional[int] = None,
        lease_ms: Optional[int] = None,
        capabilities: Optional[Sequence[str]] = None,
        stall_timeout_ms: Optional[int] = None,
        depends_on: Optional[Sequence[int]] = None,
        on_dependency_failure: Optional[DependencyPolicy] = None,
        deadline_ms: Optional[int] = None,
        deadline_in_ms: Optional[int] = None,
        concurrency_key: Optional[str] = None,
        traceparent: Optional[str] = None,
    ) -> Submitted:
        """Submit one task; ``payload`` is any JSON value or a pydantic model.

        With an ``idempotency_key`` the submission is retried on another node when one fails,
        and a key still live answers the original id with ``duplicate=True``. Without one it is
        never sent twice: a failure after it may have been delivered raises
        :class:`~minion.ConnectionFailed`.

        ``depends_on`` names tasks (by id) this one waits for: it is ``waiting`` until all have
        finished, and its claim shows their results (``task.dependency_results``). When one ends
        dead, cancelled or rejected it is cancelled, or runs anyway with
        ``on_dependency_failure="run_anyway"``. ``deadline_ms`` (absolute) or ``deadline_in_ms``
        ends it ``dead`` with the error ``deadline`` if it has not finished by then.
        ``concurrency_key`` puts it under the queue's per-key concurrency limit
        (:meth:`set_queue_limits`): claims skip a key while that many of its tasks are leased.
        """
        return self._run(
            ops.submit(
                queue,
                payload,
                kind=kind,
                priority=priority,
                idempotency_key=idempotency_key,
                delay_ms=delay_ms,
                run_at_ms=run_at_ms,
                max_attempts=max_attempts,
                lease_ms=lease_ms,
                capabilities=capabilities,
                stall_timeout_ms=stall_timeout_ms,
                depends_on=depends_on,
                on_dependency_failure=on_dependency_failure,
                deadline_ms=deadline_ms,
                deadline_in_ms=deadline_in_ms,
                concurrency_key=concurrency_key,
                traceparent=traceparent,
            )
        )

    def submit_many(self, tasks: Iterable[ops.TaskLike], *, traceparent: Optional[str] = None) -> list[Submitted]:
        """Submit tasks (:class:`~minion.TaskSpec` or dicts of its fields) as one atomic batch:
        all are created or none. Retried across nodes only when every task has an idempotency key."""
        return self._run(ops.submit_many(tasks, traceparent=traceparent))

    def get(self, task_id: int) -> Task:
        """A task with its attempts and progress history."""
        return self._run(ops.get(task_id))

    def wait(self, task_id: int, timeout: Optional[float] = None) -> Task:
        """Wait until the task is final (succeeded, dead, cancelled or rejected) and return it.

        Long-polls ``GET /v1/tasks/{id}?wait_ms=`` in chunks of at most 30 s. With ``timeout``
        (seconds), raises :class:`~minion.WaitTimeout` (a ``TimeoutError`` holding the last
        state seen as ``.task``) when the task is still unfinished then.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                wait_ms = ops.WAIT_CHUNK_MS
            else:
                wait_ms = min(ops.WAIT_CHUNK_MS, int((deadline - time.monotonic()) * 1000))
            started = time.monotonic()
            task = self._run(ops.get(task_id, wait_ms=max(wait_ms, 0)))
            if task.is_final:
                return task
            if deadline is not None and time.monotonic() >= deadline - 0.001:
                raise WaitTimeout(task)
            if time.monotonic() - started < 0.05:  # the node did not hold the request: don't spin
                time.sleep(0.05)

    def events(
        self,
        task_id: Optional[int] = None,
        queue: Optional[str] = None,
        types: Union[str, Iterable[str], None] = None,
        last_event_id: Union[int, str, None] = None,
        *,
        heartbeats: bool = False,
        reconnect: bool = True,
        reconnect_timeout: float = 60.0,
    ) -> EventStream:
        """Stream events: of one task (``task_id``; ends after its final state), or of every task
        on the node or of one ``queue``. ``types`` keeps only those event names; ``last_event_id``
        resumes after that position. The stream reconnects with ``Last-Event-ID`` when the
        connection drops. ``heartbeats=True`` also yields the server's ``heartbeat`` events.
        Use it as a context manager, or ``close()`` it, to release the connection."""
        state = StreamState(
            task_id=task_id, queue=queue, types=types, last_event_id=last_event_id, heartbeats=heartbeats
        )
        return EventStream(self, state, reconnect=reconnect, reconnect_timeout=reconnect_timeout)

    def cancel(self, task_id: int, reason: Optional[str] = None) -> Task:
        """Cancel an unfinished task; a running one loses its lease (its agent sees 409)."""
        return self._run(ops.cancel(task_id, reason))

    def retry(self, task_id: int) -> Task:
        """Make a dead, cancelled or failed task ready now."""
        return self._run(ops.retry(task_id))

    def list_tasks(
        self,
        *,
        queue: Optional[str] = None,
        state: Union[TaskState, str, None] = None,
        kind: Optional[str] = None,
        agent: Optional[str] = None,
        created_from_ms: Optional[int] = None,
        created_before_ms: Optional[int] = None,
        after: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> TaskPage:
        """One page of the ledger in ascending id order; ``page.next`` is the next ``after``."""
        return self._run(
            ops.list_tasks(
                queue=queue,
                state=state,
                kind=kind,
                agent=agent,
                created_from_ms=created_from_ms,
                created_before_ms=created_before_ms,
                after=after,
                limit=limit,
            )
        )

    def iter_tasks(self, **filters: Any) -> Iterator[Task]:
        """Every task matching the filters of :meth:`list_tasks`, following the pages."""
        after = filters.pop("after", None)
        while True:
            page = self.list_tasks(after=after, **filters)
            yield from page.tasks
            if page.next is None or not page.tasks:
                return
            after = page.next

    # -- queues and agents -------------------------------------------------------------------

    def whoami(self) -> Caller:
        """Who this client's token is: its role and queue patterns (any role may ask)."""
        return self._run(ops.whoami())

    def queues(self) -> list[QueueStats]:
        """Every queue's counts by state."""
        return self._run(ops.queues())

    def queue(self, name: str) -> Queue:
        """A queue's effective configuration, overrides and stats."""
        return self._run(ops.queue(name))

    def set_queue(self, name: str, config: Union[QueueConfig, Mapping[str, Any], None] = None, **fields: Any) -> Queue:
        """Replace a queue's overrides (fields not given use the engine defaults), e.g.
        ``set_queue("q", retry_base_ms=100, max_attempts=5)``."""
        merged = dict(config.model_dump(exclude_none=True) if isinstance(config, QueueConfig) else config or {})
        merged.update(fields)
        return self._run(ops.set_queue(name, merged))

    def queue_limits(self, name: str) -> QueueLimits:
        """A queue's concurrency and rate limits, leased tasks per key and keys at their limit."""
        return self._run(ops.queue_limits(name))

    def set_queue_limits(
        self,
        name: str,
        *,
        concurrency_per_key: Optional[int] = None,
        key_concurrency: Optional[Mapping[str, int]] = None,
        rate: Optional[Rate] = None,
        rate_per_key: Optional[Rate] = None,
        key_rate: Optional[Mapping[str, Rate]] = None,
        fair: bool = False,
    ) -> QueueLimits:
        """Replace a queue's limits: ``concurrency_per_key`` for every key without one of its own,
        ``key_concurrency`` for single keys (0 holds a key back); task starts per period in the
        whole queue (``rate``), per key (``rate_per_key``) and for single keys (``key_rate``);
        ``fair``: claims serve the keys round robin within a priority (tasks without a key as one
        more key) instead of oldest first. Called with none, it removes them."""
        return self._run(
            ops.set_queue_limits(
                name,
                concurrency_per_key=concurrency_per_key,
                key_concurrency=key_concurrency,
                rate=rate,
                rate_per_key=rate_per_key,
                key_rate=key_rate,
                fair=fair,
            )
        )

    def schedules(self) -> list[Schedule]:
        """Every schedule, by name, with its next due time, last run and counts."""
        return self._run(ops.schedules())

    def schedule(self, name: str) -> Schedule:
        """One schedule (:class:`NotFound` if there is none by that name)."""
        return self._run(ops.schedule(name))

    def set_schedule(
        self,
        name: str,
        queue: str,
        payload: Any = None,
        *,
        cron: Optional[str] = None,
        timezone: Optional[str] = None,
        every_ms: Optional[int] = None,
        kind: Optional[str] = None,
        priority: Optional[int] = None,
        capabilities: Optional[Sequence[str]] = None,
        max_attempts: Optional[int] = None,
        lease_ms: Optional[int] = None,
        stall_timeout_ms: Optional[int] = None,
        catch_up: Optional[int] = None,
        paused: bool = False,
    ) -> Schedule:
        """Create or replace a schedule that submits a task to ``queue`` with ``payload`` (and the
        task fields given) on ``cron`` (5 fields, or 6 with seconds first; in ``timezone``, an IANA
        name, default UTC) or every ``every_ms`` from now. Runs missed while no leader could fire
        them are skipped, or with ``catch_up=N`` at most N of them are fired. Each run's task has
        the idempotency key ``schedule:{name}:{due ms}``, so a failover never fires one twice.
        A replaced schedule keeps its counts; ``paused`` fires nothing until set again."""
        return self._run(
            ops.set_schedule(
                name,
                queue,
                payload,
                cron=cron,
                timezone=timezone,
                every_ms=every_ms,
                kind=kind,
                priority=priority,
                capabilities=capabilities,
                max_attempts=max_attempts,
                lease_ms=lease_ms,
                stall_timeout_ms=stall_timeout_ms,
                catch_up=catch_up,
                paused=paused,
            )
        )

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the tasks it created stay."""
        self._run(ops.delete_schedule(name))

    def agents(self, *, limit: Optional[int] = None, after: Optional[str] = None) -> AgentPage:
        """One page of registered agents in id order."""
        return self._run(ops.agents(limit=limit, after=after))

    def iter_agents(self) -> Iterator[Agent]:
        """Every registered agent, following the pages."""
        after = None
        while True:
            page = self.agents(after=after)
            yield from page.agents
            if page.next is None or not page.agents:
                return
            after = page.next

    def agent(self, agent_id: str) -> Agent:
        """One agent."""
        return self._run(ops.agent(agent_id))

    # -- the agent protocol (what Worker does for you) ---------------------------------------

    def register_agent(
        self,
        agent_id: str,
        *,
        name: Optional[str] = None,
        capabilities: Optional[Sequence[str]] = None,
        max_concurrency: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Agent:
        """Register (again: a new incarnation, whose predecessor's leases are released)."""
        return self._run(
            ops.register_agent(
                agent_id, name=name, capabilities=capabilities, max_concurrency=max_concurrency, labels=labels
            )
        )

    def heartbeat(self, agent_id: str, incarnation: Optional[int] = None, *, timeout: Optional[float] = None) -> Heartbeat:
        """Tell the leader the agent is alive.

        ``timeout`` here and on the other agent-protocol calls bounds the whole call in seconds,
        retries across nodes included (default: none beyond the client's per-request timeout);
        when it runs out the call raises the last node's error, or :class:`~minion.ConnectionFailed`.
        """
        return self._run(ops.heartbeat(agent_id, incarnation), timeout)

    def drain_agent(self, agent_id: str, *, timeout: Optional[float] = None) -> Agent:
        """Give the agent nothing new; it keeps its in-flight tasks."""
        return self._run(ops.drain_agent(agent_id), timeout)

    def deregister_agent(self, agent_id: str, *, timeout: Optional[float] = None) -> None:
        """Forget the agent, releasing its leases at once."""
        self._run(ops.deregister_agent(agent_id), timeout)

    def claim(
        self,
        agent_id: str,
        queues: Sequence[str],
        *,
        max: int = 1,
        wait_ms: Optional[int] = None,
        capabilities: Optional[Sequence[str]] = None,
    ) -> list[Task]:
        """Lease up to ``max`` ready tasks, long-polling up to ``wait_ms``; each has a ``lease``."""
        return self._run(ops.claim(agent_id, queues, max=max, wait_ms=wait_ms, capabilities=capabilities))

    def progress(
        self,
        task_id: int,
        lease_token: int,
        percent: Optional[int] = None,
        message: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
    ) -> Task:
        """Report progress (``message`` at most 4,096 bytes)."""
        return self._run(ops.progress(task_id, lease_token, percent, message), timeout)

    def extend(
        self, task_id: int, lease_token: int, lease_ms: Optional[int] = None, *, timeout: Optional[float] = None
    ) -> Task:
        """Make the lease run ``lease_ms`` (default: the task's) from now."""
        return self._run(ops.extend(task_id, lease_token, lease_ms), timeout)

    def complete(self, task_id: int, lease_token: int, result: Any = None, *, timeout: Optional[float] = None) -> Task:
        """Complete a leased task with ``result`` (JSON or a pydantic model)."""
        return self._run(ops.complete(task_id, lease_token, result), timeout)

    def fail(self, task_id: int, lease_token: int, error: str, *, timeout: Optional[float] = None) -> Task:
        """Fail the attempt: retried after the queue's backoff, or dead after the last attempt."""
        return self._run(ops.fail(task_id, lease_token, error), timeout)

    # -- administration ----------------------------------------------------------------------

    def create_token(
        self,
        name: str,
        role: str,
        *,
        queues: Optional[Sequence[str]] = None,
        deny: Optional[Sequence[str]] = None,
        agents: Optional[Sequence[str]] = None,
        expires_in_ms: Optional[int] = None,
        rate_per_sec: Optional[int] = None,
    ) -> Token:
        """Create an API token (admin); ``token.token`` is the bearer value, shown this once."""
        return self._run(
            ops.create_token(
                name, role, queues=queues, deny=deny, agents=agents, expires_in_ms=expires_in_ms, rate_per_sec=rate_per_sec
            )
        )

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token (admin)."""
        self._run(ops.revoke_token(token_id))

    def ready(self) -> bool:
        """True when the node in use answers ``/readyz`` with 200 (a leader is known)."""
        try:
            resp, _ = self._send(Call("GET", "/readyz", idempotent=True))
        except MinionError:
            return False
        return resp.status_code == 200
