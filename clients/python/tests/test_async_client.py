"""The asyncio client against a real node: the same calls as the blocking one, awaited."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import minion


async def test_submit_get_list(aclient: minion.AsyncClient, queue: str) -> None:
    me = await aclient.whoami()
    assert (me.auth, me.role, me.name) == (False, "admin", "anonymous"), "a dev-mode node: everyone is an admin"
    s = await aclient.submit(queue, {"a": 1}, kind="k", priority=2, idempotency_key="ak", lease_ms=5000)
    again = await aclient.submit(queue, {"a": 2}, kind="k", idempotency_key="ak")
    assert again.id == s.id and again.duplicate
    t = await aclient.get(s.id)
    assert (t.kind, t.priority, t.payload, t.lease_ms) == ("k", 2, {"a": 1}, 5000)
    batch = await aclient.submit_many([{"queue": queue, "payload": i} for i in range(3)])
    ids = [s.id] + [b.id for b in batch]
    assert [t.id async for t in aclient.iter_tasks(queue=queue, limit=2)] == ids
    page = await aclient.list_tasks(queue=queue, limit=1)
    assert page.tasks[0].id == s.id and page.next is not None


async def test_cancel_retry_and_errors(aclient: minion.AsyncClient, queue: str) -> None:
    tid = (await aclient.submit(queue, None)).id
    assert (await aclient.cancel(tid, "why not")).cancel_reason == "why not"
    with pytest.raises(minion.WrongState):
        await aclient.cancel(tid)
    assert (await aclient.retry(tid)).state == "ready"
    with pytest.raises(minion.NotFound):
        await aclient.get(123_456_789)
    with pytest.raises(minion.InvalidRequest):
        await aclient.submit(queue, 1, max_attempts=0)
    assert await aclient.ready()
    assert isinstance(await aclient.request("GET", "/v1/queues"), dict)


async def test_queues_and_agents(aclient: minion.AsyncClient, queue: str) -> None:
    await aclient.submit(queue, 1)
    q = await aclient.set_queue(queue, retry_base_ms=20)
    assert q.overrides.retry_base_ms == 20
    assert (await aclient.queue(queue)).stats.ready == 1
    assert queue in [s.queue for s in await aclient.queues()]
    agent_id = f"async-{uuid.uuid4().hex[:6]}"
    agent = await aclient.register_agent(agent_id, max_concurrency=3)
    assert (await aclient.heartbeat(agent_id)).id == agent_id
    assert (await aclient.agent(agent_id)).max_concurrency == 3
    assert agent_id in [a.id async for a in aclient.iter_agents()]
    assert (await aclient.agents()).agents
    [task] = await aclient.claim(agent_id, [queue], max=3, wait_ms=2000)
    assert task.lease is not None and task.lease.incarnation == agent.incarnation
    await aclient.progress(task.id, task.lease.token, 50)
    await aclient.extend(task.id, task.lease.token)
    failed = await aclient.fail(task.id, task.lease.token, "try again")
    assert failed.state in ("failed", "ready") and failed.last_error == "try again"
    assert (await aclient.drain_agent(agent_id)).status == "draining"
    await aclient.deregister_agent(agent_id)
    with pytest.raises(minion.NotFound):
        await aclient.agent(agent_id)


async def test_wait_and_timeout(aclient: minion.AsyncClient, queue: str) -> None:
    tid = (await aclient.submit(queue, None)).id
    started = time.monotonic()
    with pytest.raises(minion.WaitTimeout) as err:
        await aclient.wait(tid, timeout=0.8)
    assert time.monotonic() - started >= 0.7 and err.value.task.state == "ready"
    [task] = await aclient.claim("async-waiter", [queue], wait_ms=2000)
    assert task.lease is not None

    async def finish() -> None:
        await asyncio.sleep(0.3)
        await aclient.complete(tid, task.lease.token, [1, 2])  # type: ignore[union-attr]

    finisher = asyncio.create_task(finish())
    done = await aclient.wait(tid, timeout=20)
    await finisher
    assert done.state == "succeeded" and done.result == [1, 2]


async def test_task_event_stream(aclient: minion.AsyncClient, queue: str) -> None:
    tid = (await aclient.submit(queue, {"q": 1}, kind="ev")).id
    [task] = await aclient.claim("async-events", [queue], wait_ms=2000)
    assert task.lease is not None
    await aclient.progress(tid, task.lease.token, 10, "one")
    await aclient.progress(tid, task.lease.token, 20, "two")
    seen: list[minion.Event] = []

    async def finish() -> None:
        await asyncio.sleep(0.3)
        await aclient.complete(tid, task.lease.token, "fine")  # type: ignore[union-attr]

    finisher = asyncio.create_task(finish())
    async with aclient.events(task_id=tid) as stream:
        async for ev in stream:
            seen.append(ev)
    await finisher
    assert [(e.type, e.seq, e.message) for e in seen if e.type == "progress"] == [
        ("progress", 0, "one"),
        ("progress", 1, "two"),
    ]
    assert seen[-1].type == "succeeded" and seen[-1].result == "fine" and seen[-1].is_final
    assert all(e.task_id == tid for e in seen)
