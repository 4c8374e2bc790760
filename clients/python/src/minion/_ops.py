"""Every API call, described once: its request (:class:`Call`) and how its answer is parsed.

``Client`` and ``AsyncClient`` only execute these, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence, Union
from urllib.parse import quote

from ._transport import Call, Op
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
    QueueStats,
    Schedule,
    Submitted,
    Task,
    TaskPage,
    TaskSpec,
    TaskState,
    Token,
    _jsonable,
)

#: Longest ``wait_ms`` the SDK asks for in one request (the server caps it at ``claim_wait_ms_max``,
#: 60 s by default); longer waits loop.
WAIT_CHUNK_MS = 30_000

TaskLike = Union[TaskSpec, Mapping[str, Any]]


def _seg(value: Union[str, int]) -> str:
    return quote(str(value), safe="")


# Calls a worker makes with ``quiet=True`` skip decoding the answer: it is the whole task, with
# its whole retained progress history, so each report would cost as much as the history.


def _task(v: Any) -> Task:
    return Task.model_validate(v)


def submit(
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
) -> Op[Submitted]:
    spec = TaskSpec(
        queue=queue,
        payload=payload,
        kind=kind,
        priority=priority,
        idempotency_key=idempotency_key,
        delay_ms=delay_ms,
        run_at_ms=run_at_ms,
        max_attempts=max_attempts,
        lease_ms=lease_ms,
        capabilities=list(capabilities) if capabilities is not None else None,
        stall_timeout_ms=stall_timeout_ms,
        depends_on=[int(d) for d in depends_on] if depends_on is not None else None,
        on_dependency_failure=on_dependency_failure,
        deadline_ms=deadline_ms,
        deadline_in_ms=deadline_in_ms,
        concurrency_key=concurrency_key,
    )
    headers = {"traceparent": traceparent} if traceparent else None
    call = Call("POST", "/v1/tasks", spec.to_json(), headers=headers, idempotent=idempotency_key is not None)
    return Op(call, Submitted.model_validate)


def submit_many(tasks: Iterable[TaskLike], *, traceparent: Optional[str] = None) -> Op[list[Submitted]]:
    specs = [t if isinstance(t, TaskSpec) else TaskSpec.model_validate(dict(t)) for t in tasks]
    if not specs:
        raise ValueError("submit_many needs at least one task")
    headers = {"traceparent": traceparent} if traceparent else None
    idempotent = all(s.idempotency_key is not None for s in specs)
    call = Call("POST", "/v1/tasks", {"tasks": [s.to_json() for s in specs]}, headers=headers, idempotent=idempotent)
    return Op(call, lambda v: [Submitted.model_validate(x) for x in v["tasks"]])


def get(task_id: int, *, wait_ms: Optional[int] = None) -> Op[Task]:
    params = {"wait_ms": wait_ms} if wait_ms else None
    hold = (wait_ms or 0) / 1000
    return Op(Call("GET", f"/v1/tasks/{int(task_id)}", params=params, idempotent=True, hold=hold), _task)


def list_tasks(
    *,
    queue: Optional[str] = None,
    state: Union[TaskState, str, None] = None,
    kind: Optional[str] = None,
    agent: Optional[str] = None,
    created_from_ms: Optional[int] = None,
    created_before_ms: Optional[int] = None,
    after: Optional[int] = None,
    limit: Optional[int] = None,
) -> Op[TaskPage]:
    params = {
        "queue": queue,
        "state": str(state) if state is not None else None,
        "kind": kind,
        "agent": agent,
        "created_from_ms": created_from_ms,
        "created_before_ms": created_before_ms,
        "after": after,
        "limit": limit,
    }
    return Op(Call("GET", "/v1/tasks", params=params, idempotent=True), TaskPage.model_validate)


def cancel(task_id: int, reason: Optional[str] = None) -> Op[Task]:
    body = {"reason": reason} if reason is not None else {}
    return Op(Call("POST", f"/v1/tasks/{int(task_id)}/cancel", body), _task)


def retry(task_id: int) -> Op[Task]:
    return Op(Call("POST", f"/v1/tasks/{int(task_id)}/retry"), _task)


def whoami() -> Op[Caller]:
    return Op(Call("GET", "/v1/whoami", idempotent=True), Caller.model_validate)


def queues() -> Op[list[QueueStats]]:
    return Op(Call("GET", "/v1/queues", idempotent=True), lambda v: [QueueStats.model_validate(q) for q in v["queues"]])


def queue(name: str) -> Op[Queue]:
    return Op(Call("GET", f"/v1/queues/{_seg(name)}", idempotent=True), Queue.model_validate)


def set_queue(name: str, config: Union[QueueConfig, Mapping[str, Any]]) -> Op[Queue]:
    cfg = config if isinstance(config, QueueConfig) else QueueConfig.model_validate(dict(config))
    body = cfg.model_dump(mode="json", exclude_none=True)
    return Op(Call("PUT", f"/v1/queues/{_seg(name)}", body, idempotent=True), Queue.model_validate)


def queue_limits(name: str) -> Op[QueueLimits]:
    return Op(Call("GET", f"/v1/queues/{_seg(name)}/limits", idempotent=True), QueueLimits.model_validate)


def set_queue_limits(
    name: str,
    *,
    concurrency_per_key: Optional[int] = None,
    key_concurrency: Optional[Mapping[str, int]] = None,
    rate: Optional[Rate] = None,
    rate_per_key: Optional[Rate] = None,
    key_rate: Optional[Mapping[str, Rate]] = None,
    fair: bool = False,
) -> Op[QueueLimits]:
    body: dict[str, Any] = {
        "key_concurrency": {str(k): int(n) for k, n in (key_concurrency or {}).items()},
        "key_rate": {str(k): r.model_dump() for k, r in (key_rate or {}).items()},
        "fair": bool(fair),
    }
    if concurrency_per_key is not None:
        body["concurrency_per_key"] = int(concurrency_per_key)
    if rate is not None:
        body["rate"] = rate.model_dump()
    if rate_per_key is not None:
        body["rate_per_key"] = rate_per_key.model_dump()
    return Op(Call("PUT", f"/v1/queues/{_seg(name)}/limits", body, idempotent=True), QueueLimits.model_validate)


def schedules() -> Op[list[Schedule]]:
    return Op(
        Call("GET", "/v1/schedules", idempotent=True), lambda v: [Schedule.model_validate(s) for s in v["schedules"]]
    )


def schedule(name: str) -> Op[Schedule]:
    return Op(Call("GET", f"/v1/schedules/{_seg(name)}", idempotent=True), Schedule.model_validate)


def set_schedule(
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
) -> Op[Schedule]:
    task: dict[str, Any] = {"queue": queue, "payload": _jsonable(payload)}
    optional = {
        "kind": kind,
        "priority": priority,
        "capabilities": list(capabilities) if capabilities is not None else None,
        "max_attempts": max_attempts,
        "lease_ms": lease_ms,
        "stall_timeout_ms": stall_timeout_ms,
    }
    task.update({k: v for k, v in optional.items() if v is not None})
    body: dict[str, Any] = {"task": task, "missed": "skip" if catch_up is None else "catch_up", "paused": paused}
    when = {"cron": cron, "timezone": timezone, "every_ms": every_ms, "catch_up": catch_up}
    body.update({k: v for k, v in when.items() if v is not None})
    return Op(Call("PUT", f"/v1/schedules/{_seg(name)}", body, idempotent=True), Schedule.model_validate)


def delete_schedule(name: str) -> Op[None]:
    return Op(Call("DELETE", f"/v1/schedules/{_seg(name)}", idempotent=True), lambda v: None)


def spawn_children(task_id: int, lease_token: int, tasks: Iterable[TaskLike]) -> Op[list[Submitted]]:
    specs = [t if isinstance(t, TaskSpec) else TaskSpec.model_validate(dict(t)) for t in tasks]
    body = {"lease_token": int(lease_token), "tasks": [s.to_json() for s in specs]}
    # Safe to repeat only when every child has an idempotency key (ctx.spawn gives each one).
    idempotent = all(s.idempotency_key for s in specs)
    call = Call("POST", f"/v1/tasks/{int(task_id)}/children", body, idempotent=idempotent)
    return Op(call, lambda v: [Submitted.model_validate(t) for t in v["tasks"]])


def wait_children(task_id: int, lease_token: int) -> Op[Task]:
    body = {"lease_token": int(lease_token)}
    return Op(Call("POST", f"/v1/tasks/{int(task_id)}/wait-children", body), _task)


def agents(*, limit: Optional[int] = None, after: Optional[str] = None) -> Op[AgentPage]:
    params = {"limit": limit, "after": after}
    return Op(Call("GET", "/v1/agents", params=params, idempotent=True), AgentPage.model_validate)


def agent(agent_id: str) -> Op[Agent]:
    return Op(Call("GET", f"/v1/agents/{_seg(agent_id)}", idempotent=True), Agent.model_validate)


def register_agent(
    agent_id: str,
    *,
    name: Optional[str] = None,
    capabilities: Optional[Sequence[str]] = None,
    max_concurrency: Optional[int] = None,
    labels: Optional[Mapping[str, str]] = None,
) -> Op[Agent]:
    body: dict[str, Any] = {"id": agent_id}
    if name is not None:
        body["name"] = name
    if capabilities is not None:
        body["capabilities"] = list(capabilities)
    if max_concurrency is not None:
        body["max_concurrency"] = max_concurrency
    if labels is not None:
        body["labels"] = dict(labels)
    # Not idempotent: registering again starts a new incarnation and releases the old one's leases.
    return Op(Call("POST", "/v1/agents", body), Agent.model_validate)


def heartbeat(agent_id: str, incarnation: Optional[int] = None) -> Op[Heartbeat]:
    body = {"incarnation": incarnation} if incarnation is not None else {}
    call = Call("POST", f"/v1/agents/{_seg(agent_id)}/heartbeat", body, idempotent=True)
    return Op(call, Heartbeat.model_validate)


def drain_agent(agent_id: str) -> Op[Agent]:
    return Op(Call("POST", f"/v1/agents/{_seg(agent_id)}/drain", {}, idempotent=True), Agent.model_validate)


def deregister_agent(agent_id: str) -> Op[None]:
    return Op(Call("DELETE", f"/v1/agents/{_seg(agent_id)}", idempotent=True), lambda v: None)


def claim(
    agent_id: str,
    queues: Sequence[str],
    *,
    max: int = 1,
    wait_ms: Optional[int] = None,
    capabilities: Optional[Sequence[str]] = None,
) -> Op[list[Task]]:
    body: dict[str, Any] = {"agent_id": agent_id, "queues": list(queues), "max": max}
    if wait_ms is not None:
        body["wait_ms"] = wait_ms
    if capabilities is not None:
        body["capabilities"] = list(capabilities)
    # Not idempotent: a repeated claim could lease tasks a lost answer already leased.
    call = Call("POST", "/v1/claims", body, hold=(wait_ms or 0) / 1000)
    return Op(call, lambda v: [Task.model_validate(t) for t in v["tasks"]])


def progress(
    task_id: int, lease_token: int, percent: Optional[int] = None, message: Optional[str] = None, *, quiet: bool = False
) -> Op[Task]:
    body: dict[str, Any] = {"lease_token": lease_token}
    if percent is not None:
        body["percent"] = percent
    if message is not None:
        body["message"] = message
    return Op(Call("POST", f"/v1/tasks/{int(task_id)}/progress", body), None if quiet else _task)


def extend(task_id: int, lease_token: int, lease_ms: Optional[int] = None, *, quiet: bool = False) -> Op[Task]:
    body: dict[str, Any] = {"lease_token": lease_token}
    if lease_ms is not None:
        body["lease_ms"] = lease_ms
    # Idempotent: the lease runs lease_ms from the last extension that arrived.
    return Op(Call("POST", f"/v1/tasks/{int(task_id)}/extend", body, idempotent=True), None if quiet else _task)


def complete(task_id: int, lease_token: int, result: Any = None, *, quiet: bool = False) -> Op[Task]:
    body = {"lease_token": lease_token, "result": _jsonable(result)}
    return Op(Call("POST", f"/v1/tasks/{int(task_id)}/complete", body), None if quiet else _task)


def fail(task_id: int, lease_token: int, error: str, *, quiet: bool = False) -> Op[Task]:
    body = {"lease_token": lease_token, "error": error}
    return Op(Call("POST", f"/v1/tasks/{int(task_id)}/fail", body), None if quiet else _task)


def create_token(
    name: str,
    role: str,
    *,
    queues: Optional[Sequence[str]] = None,
    deny: Optional[Sequence[str]] = None,
    agents: Optional[Sequence[str]] = None,
    expires_in_ms: Optional[int] = None,
    rate_per_sec: Optional[int] = None,
) -> Op[Token]:
    body: dict[str, Any] = {"name": name, "role": role}
    for key, value in (("queues", queues), ("deny", deny), ("agents", agents)):
        if value is not None:
            body[key] = list(value)
    if expires_in_ms is not None:
        body["expires_in_ms"] = expires_in_ms
    if rate_per_sec is not None:
        body["rate_per_sec"] = rate_per_sec
    return Op(Call("POST", "/v1/tokens", body), Token.model_validate)


def revoke_token(token_id: str) -> Op[None]:
    return Op(Call("DELETE", f"/v1/tokens/{_seg(token_id)}", idempotent=True), lambda v: None)


def raw(
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Optional[Mapping[str, Any]] = None,
    idempotent: Optional[bool] = None,
) -> Op[Any]:
    method = method.upper()
    if idempotent is None:
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
    call = Call(method, path if path.startswith("/") else "/" + path, params=dict(params) if params else None)
    if json is not None:
        call.body = _jsonable(json)
    call.idempotent = idempotent
    return Op(call, lambda v: v)
