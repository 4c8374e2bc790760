"""Typed models of what the server sends and accepts (pydantic v2).

Response models accept fields they do not know (``extra="allow"``), so a newer server does not
break an older SDK; request models (:class:`TaskSpec`, :class:`QueueConfig`) refuse unknown fields,
as the server does.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TaskState",
    "FINAL_STATES",
    "AttemptOutcome",
    "Attempt",
    "Lease",
    "ProgressEvent",
    "Dependency",
    "DependencyPolicy",
    "Task",
    "TaskPage",
    "Submitted",
    "TaskSpec",
    "QueueConfig",
    "QueueStats",
    "Queue",
    "OutcomeStats",
    "AgentStats",
    "Agent",
    "AgentPage",
    "Heartbeat",
    "Event",
    "EventType",
    "Token",
    "ScheduledTask",
    "Schedule",
]


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TaskState(str, Enum):
    """A task's state. ``failed`` is not final: the task waits for its retry."""

    READY = "ready"
    DELAYED = "delayed"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    WAITING = "waiting"
    WAITING_CHILDREN = "waiting_children"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """True for ``succeeded``, ``dead``, ``cancelled`` and ``rejected``."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED, TaskState.REJECTED})


class AttemptOutcome(_Response):
    """How an attempt ended."""

    outcome: Literal[
        "succeeded",
        "failed",
        "lease_expired",
        "cancelled",
        "agent_dead",
        "agent_restarted",
        "stalled",
        "released",
        "deadline_exceeded",
    ] | str
    error: Optional[str] = None


class Attempt(_Response):
    """One lease of a task by an agent (numbered from 1)."""

    number: int
    agent_id: str
    lease_token: int
    started_ms: int
    ended_ms: Optional[int] = None
    outcome: Optional[AttemptOutcome] = None


class Lease(_Response):
    """The current lease of a leased task; ``token`` authorises progress, extend, complete and fail."""

    token: int
    agent_id: str
    incarnation: int = 0
    expires_ms: int
    stall_deadline_ms: Optional[int] = None


class ProgressEvent(_Response):
    """One progress report kept in a task's history (``Task.progress``)."""

    at_ms: int
    attempt: int
    percent: Optional[int] = None
    message: Optional[str] = None


DependencyPolicy = Literal["cancel", "run_anyway"]
"""What a dependency that ends dead, cancelled or rejected does to the task waiting on it."""


class Dependency(_Response):
    """A task another one depends on (``Task.depends_on``) or a child (``Task.children``), as it
    is now; ``state`` is ``None`` once retention removed it."""

    id: int
    state: Optional[TaskState] = None
    result: Any = None
    last_error: Optional[str] = None


class Task(_Response):
    """A task as the ledger holds it, with its attempts and retained progress history."""

    id: int
    queue: str
    kind: str = ""
    state: TaskState
    payload: Any = None
    result: Any = None
    capabilities: list[str] = Field(default_factory=list)
    priority: int = 0
    idempotency_key: Optional[str] = None
    max_attempts: int
    attempt_limit: int
    lease_ms: int
    stall_timeout_ms: Optional[int] = None
    lease: Optional[Lease] = None
    created_ms: int
    updated_ms: int
    run_at_ms: int
    finished_ms: Optional[int] = None
    last_error: Optional[str] = None
    cancel_reason: Optional[str] = None
    attempts: list[Attempt] = Field(default_factory=list)
    progress: list[ProgressEvent] = Field(default_factory=list)
    progress_dropped: int = 0
    trace_parent: Optional[str] = None
    depends_on: list[Dependency] = Field(default_factory=list)
    on_dependency_failure: Optional[DependencyPolicy] = None
    deadline_ms: Optional[int] = None
    concurrency_key: Optional[str] = None
    #: The task that submitted it under its lease (``ctx.spawn``).
    parent_id: Optional[int] = None
    #: Its children, in the order submitted, as they are now.
    children: list[Dependency] = Field(default_factory=list)

    @property
    def is_final(self) -> bool:
        """True once the task will not change any more (unless retried by hand)."""
        return self.state.is_final

    @property
    def attempt(self) -> int:
        """The number of the latest attempt (0 before the first claim)."""
        return self.attempts[-1].number if self.attempts else 0

    @property
    def dependency_results(self) -> dict[int, Any]:
        """The results of the tasks it depends on that succeeded, by id."""
        return {d.id: d.result for d in self.depends_on if d.state == TaskState.SUCCEEDED}


class TaskPage(_Response):
    """One page of ``GET /v1/tasks``; pass ``next`` as ``after`` for the next page."""

    tasks: list[Task]
    next: Optional[int] = None


class Submitted(_Response):
    """The answer to a submission: the task id, and whether the idempotency key was already live."""

    id: int
    duplicate: bool


class TaskSpec(BaseModel):
    """A task to submit (``TaskIn``): used by ``submit_many``; ``submit`` takes the same fields as
    keyword arguments. ``None`` fields are left out of the request (server defaults apply)."""

    model_config = ConfigDict(extra="forbid")

    queue: str
    payload: Any = None
    kind: Optional[str] = None
    priority: Optional[int] = None
    idempotency_key: Optional[str] = None
    delay_ms: Optional[int] = None
    run_at_ms: Optional[int] = None
    max_attempts: Optional[int] = None
    lease_ms: Optional[int] = None
    capabilities: Optional[list[str]] = None
    stall_timeout_ms: Optional[int] = None
    #: Task ids, or the idempotency keys of other tasks in the same ``submit_many`` batch.
    depends_on: Optional[list[int | str]] = None
    on_dependency_failure: Optional[DependencyPolicy] = None
    deadline_ms: Optional[int] = None
    deadline_in_ms: Optional[int] = None
    #: Tasks of one queue with the same key share its per-key concurrency limit.
    concurrency_key: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        """The request body: JSON-ready, unset fields left out (the payload is always sent)."""
        body = self.model_dump(mode="json", exclude_none=True, exclude={"payload"})
        body["payload"] = _jsonable(self.payload)
        return body


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


class QueueConfig(BaseModel):
    """A queue's settings. As the ``overrides`` of ``PUT /v1/queues/{name}``, fields left ``None``
    use the engine defaults."""

    model_config = ConfigDict(extra="allow")

    max_attempts: Optional[int] = None
    lease_ms: Optional[int] = None
    dedup_ttl_ms: Optional[int] = None
    retry_base_ms: Optional[int] = None
    retry_max_ms: Optional[int] = None
    retention_ms: Optional[int] = None
    payload_bytes_max: Optional[int] = None
    stall_timeout_ms: Optional[int] = None
    strategy: Optional[
        Literal["round_robin", "least_loaded", "random", "capability_best", "latency_based", "weighted_round_robin"]
    ] = None


class QueueStats(_Response):
    """A queue's counts by state and the age of its oldest ready task."""

    queue: str
    ready: int = 0
    delayed: int = 0
    leased: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0
    rejected: int = 0
    waiting: int = 0
    waiting_children: int = 0
    oldest_ready_age_ms: int = 0


class Queue(_Response):
    """A queue: effective ``config``, the ``overrides`` set on it, and ``stats``."""

    name: str
    config: QueueConfig
    overrides: QueueConfig
    stats: QueueStats


class Rate(BaseModel):
    """``starts`` task starts per ``period_ms`` (bursts of up to ``starts``), e.g.
    ``Rate.per_minute(100)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    starts: int
    period_ms: int

    @classmethod
    def per_second(cls, starts: int) -> "Rate":
        return cls(starts=starts, period_ms=1_000)

    @classmethod
    def per_minute(cls, starts: int) -> "Rate":
        return cls(starts=starts, period_ms=60_000)

    @classmethod
    def per_hour(cls, starts: int) -> "Rate":
        return cls(starts=starts, period_ms=3_600_000)


class QueueLimits(_Response):
    """A queue's concurrency and rate limits (``GET /v1/queues/{name}/limits``) and where its
    keys stand: leased tasks per key, how many keys with ready tasks are at their limit (or out of
    starts), how many keys have used up their rate, and when the queue's own rate allows its next
    start (epoch ms) if it allows none now. In a ``fair`` queue keys take turns within a
    priority; ``last_served_key`` is the key served last (``""``: a task without a key)."""

    queue: str
    concurrency_per_key: Optional[int] = None
    key_concurrency: dict[str, int] = Field(default_factory=dict)
    rate: Optional[Rate] = None
    rate_per_key: Optional[Rate] = None
    key_rate: dict[str, Rate] = Field(default_factory=dict)
    leased_by_key: dict[str, int] = Field(default_factory=dict)
    keys_at_limit: int = 0
    keys_rate_limited: int = 0
    rate_limited_until_ms: Optional[int] = None
    fair: bool = False
    last_served_key: Optional[str] = None


class ScheduledTask(_Response):
    """The template of the tasks a schedule creates (each with the idempotency key
    ``schedule:{name}:{due time in epoch ms}``)."""

    queue: str
    kind: str = ""
    payload: Any = None
    capabilities: list[str] = Field(default_factory=list)
    priority: int = 0
    max_attempts: Optional[int] = None
    lease_ms: Optional[int] = None
    stall_timeout_ms: Optional[int] = None


class Schedule(_Response):
    """A schedule (``GET /v1/schedules/{name}``): a ``cron`` expression in ``timezone`` or a fixed
    interval ``every_ms``, what to do with runs missed while no leader could fire them
    (``missed``: ``skip`` or ``catch_up`` at most ``catch_up``), and where it stands: the next due
    time, the last run fired and the task it created, counts, and the last submit error."""

    name: str
    cron: Optional[str] = None
    timezone: Optional[str] = None
    every_ms: Optional[int] = None
    task: ScheduledTask
    missed: Literal["skip", "catch_up"] = "skip"
    catch_up: Optional[int] = None
    paused: bool = False
    set_ms: int = 0
    next_ms: Optional[int] = None
    last_run_ms: Optional[int] = None
    last_task_id: Optional[int] = None
    fired: int = 0
    skipped: int = 0
    last_error: Optional[str] = None


class OutcomeStats(_Response):
    """Completions, failures and the completion-latency EWMA of an agent."""

    completed: int = 0
    failed: int = 0
    latency_ewma_ms: int = 0


class AgentStats(_Response):
    """An agent's statistics: in flight, overall and per required capability (``*``: none)."""

    in_flight: int = 0
    overall: OutcomeStats = Field(default_factory=OutcomeStats)
    by_capability: dict[str, OutcomeStats] = Field(default_factory=dict)


class Agent(_Response):
    """A registered agent as the leader sees it."""

    id: str
    name: str = ""
    capabilities: list[str] = Field(default_factory=list)
    max_concurrency: int = 1
    labels: dict[str, str] = Field(default_factory=dict)
    status: Literal["active", "draining", "dead"] | str
    incarnation: int
    registered_ms: int = 0
    updated_ms: int = 0
    last_seen_ms_ago: Optional[int] = None
    stats: AgentStats = Field(default_factory=AgentStats)


class AgentPage(_Response):
    """One page of ``GET /v1/agents``; pass ``next`` as ``after`` for the next page."""

    agents: list[Agent]
    next: Optional[str] = None


class Heartbeat(_Response):
    """The answer to an agent heartbeat (and to a drain, which answers the agent)."""

    id: str
    incarnation: int
    status: str


EventType = Literal[
    "submitted",
    "ready",
    "delayed",
    "leased",
    "progress",
    "succeeded",
    "failed",
    "dead",
    "cancelled",
    "rejected",
    "heartbeat",
    "compacted",
]


class Event(_Response):
    """One Server-Sent Event of a task stream or of ``/v1/events``.

    ``type`` is the SSE event name and ``id`` its SSE id (the log index of the entry that caused
    it; ``None`` for the events of one entry but the last). The other fields are the ``Event`` JSON
    the server sends: which are set depends on ``type`` (see docs/api.md, "Event streams").
    ``heartbeat`` events carry nothing but ``id``; ``compacted`` ones ``missed_from``, ``missed_to``
    and ``message``.
    """

    type: EventType | str
    id: Optional[int] = None
    task_id: Optional[int] = None
    queue: Optional[str] = None
    kind: Optional[str] = None
    at_ms: Optional[int] = None
    attempt: Optional[int] = None
    state: Optional[TaskState] = None
    agent_id: Optional[str] = None
    result: Any = None
    error: Optional[str] = None
    seq: Optional[int] = None
    percent: Optional[int] = None
    message: Optional[str] = None
    missed_from: Optional[int] = None
    missed_to: Optional[int] = None

    @property
    def is_final(self) -> bool:
        """True for ``succeeded``, ``dead``, ``cancelled`` and ``rejected``: the task's last event."""
        return self.type in ("succeeded", "dead", "cancelled", "rejected")


class Token(_Response):
    """An API token as ``POST /v1/tokens`` answers it; ``token`` (the bearer value) is shown once."""

    id: str
    name: str
    role: str
    queues: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list)
    active: bool = True
    token: Optional[str] = None
    created_ms: Optional[int] = None
    expires_ms: Optional[int] = None
    revoked_ms: Optional[int] = None
    rate_per_sec: Optional[int] = None
    created_by: Optional[str] = None


class Caller(_Response):
    """Who the client's token is (``GET /v1/whoami``): its role and the queue patterns it may touch."""

    auth: bool
    """False on a node with authentication off, where every caller is an admin."""
    role: str
    name: str
    queues: list[str] = Field(default_factory=list)
    """Queue patterns it may touch; empty: all."""
    deny: list[str] = Field(default_factory=list)
