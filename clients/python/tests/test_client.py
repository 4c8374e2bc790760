"""The blocking Client against a real node: every call, and its typed errors."""

from __future__ import annotations

import time
import uuid

import pytest
from pydantic import BaseModel

import minion


class Doc(BaseModel):
    url: str
    words: int


def test_submit_sets_every_field(client: minion.Client, queue: str) -> None:
    s = client.submit(
        queue,
        Doc(url="https://example.com", words=3),
        kind="summarize",
        priority=7,
        max_attempts=5,
        lease_ms=4000,
        capabilities=["web"],
        stall_timeout_ms=9000,
    )
    assert isinstance(s, minion.Submitted) and s.duplicate is False
    t = client.get(s.id)
    assert isinstance(t, minion.Task)
    assert (t.id, t.queue, t.kind, t.priority) == (s.id, queue, "summarize", 7)
    assert t.payload == {"url": "https://example.com", "words": 3}
    assert (t.max_attempts, t.lease_ms, t.capabilities, t.stall_timeout_ms) == (5, 4000, ["web"], 9000)
    assert t.state is minion.TaskState.READY and not t.is_final
    assert t.attempts == [] and t.attempt == 0 and t.lease is None


def test_submit_delay_and_run_at(client: minion.Client, queue: str) -> None:
    delayed = client.get(client.submit(queue, 1, delay_ms=60_000).id)
    assert delayed.state == "delayed"
    assert delayed.run_at_ms >= delayed.created_ms + 59_000
    run_at = int(time.time() * 1000) + 120_000
    scheduled = client.get(client.submit(queue, 2, run_at_ms=run_at).id)
    assert scheduled.state == "delayed" and scheduled.run_at_ms == run_at


def test_idempotency_key_deduplicates(client: minion.Client, queue: str) -> None:
    key = f"k-{uuid.uuid4()}"
    first = client.submit(queue, {"n": 1}, idempotency_key=key)
    again = client.submit(queue, {"n": 2}, idempotency_key=key)
    assert again.id == first.id and again.duplicate is True and first.duplicate is False
    assert client.get(first.id).payload == {"n": 1}


def test_submit_many_is_atomic(client: minion.Client, queue: str) -> None:
    out = client.submit_many(
        [
            minion.TaskSpec(queue=queue, kind="a", payload=1, idempotency_key="m-1"),
            {"queue": queue, "kind": "b", "payload": 2, "priority": 3},
        ]
    )
    assert [o.duplicate for o in out] == [False, False]
    assert [client.get(o.id).kind for o in out] == ["a", "b"]
    # One bad task refuses the whole batch: nothing of it is created.
    other = queue + "-bad"
    with pytest.raises(minion.InvalidRequest):
        client.submit_many([{"queue": other, "payload": 1}, {"queue": other, "payload": 2, "max_attempts": 0}])
    assert client.list_tasks(queue=other).tasks == []
    # Keys still live answer their original ids.
    again = client.submit_many([minion.TaskSpec(queue=queue, kind="a", payload=9, idempotency_key="m-1")])
    assert again[0].id == out[0].id and again[0].duplicate is True


def test_list_tasks_filters_and_pages(client: minion.Client, queue: str) -> None:
    ids = [s.id for s in client.submit_many([{"queue": queue, "kind": f"k{i % 2}", "payload": i} for i in range(5)])]
    page = client.list_tasks(queue=queue, limit=2)
    assert [t.id for t in page.tasks] == ids[:2] and page.next is not None
    assert [t.id for t in client.iter_tasks(queue=queue, limit=2)] == ids
    assert [t.id for t in client.list_tasks(queue=queue, kind="k1").tasks] == [ids[1], ids[3]]
    assert [t.id for t in client.list_tasks(queue=queue, state=minion.TaskState.READY).tasks] == ids
    assert client.list_tasks(queue=queue, state="succeeded").tasks == []


def test_cancel_and_retry(client: minion.Client, queue: str) -> None:
    tid = client.submit(queue, None).id
    cancelled = client.cancel(tid, reason="not needed")
    assert cancelled.state == "cancelled" and cancelled.cancel_reason == "not needed" and cancelled.is_final
    with pytest.raises(minion.WrongState) as err:
        client.cancel(tid)
    assert err.value.status == 409 and err.value.code == "wrong_state" and "cancelled" in err.value.message
    retried = client.retry(tid)
    assert retried.state == "ready" and retried.cancel_reason is None
    with pytest.raises(minion.WrongState):
        client.retry(tid)  # only dead, cancelled or failed tasks
    assert client.cancel(client.submit(queue, None).id).cancel_reason is None


def test_queue_config_and_stats(client: minion.Client, queue: str) -> None:
    client.submit(queue, 1)
    q = client.set_queue(queue, retry_base_ms=50, retry_max_ms=100, max_attempts=4)
    assert isinstance(q, minion.Queue)
    assert (q.overrides.retry_base_ms, q.overrides.retry_max_ms, q.overrides.max_attempts) == (50, 100, 4)
    assert q.config.retry_base_ms == 50 and q.config.lease_ms > 0 and q.overrides.lease_ms is None
    assert client.queue(queue).stats.ready == 1
    assert client.submit(queue, 2).id and client.get(client.list_tasks(queue=queue).tasks[-1].id).max_attempts == 4
    stats = {s.queue: s for s in client.queues()}
    assert stats[queue].ready == 2
    # PUT replaces the overrides: fields left out go back to the defaults.
    assert client.set_queue(queue, minion.QueueConfig(strategy="least_loaded")).overrides.retry_base_ms is None


def test_agent_protocol_by_hand(client: minion.Client, queue: str) -> None:
    agent_id = f"hand-{uuid.uuid4().hex[:8]}"
    agent = client.register_agent(agent_id, name="by hand", capabilities=["web"], max_concurrency=2, labels={"a": "b"})
    assert (agent.id, agent.name, agent.capabilities, agent.max_concurrency) == (agent_id, "by hand", ["web"], 2)
    assert agent.status == "active" and agent.labels == {"a": "b"}
    hb = client.heartbeat(agent_id, agent.incarnation)
    assert hb.status == "active" and hb.incarnation == agent.incarnation
    with pytest.raises(minion.StaleIncarnation):
        client.heartbeat(agent_id, agent.incarnation + 1000)
    assert agent_id in [a.id for a in client.iter_agents()]
    assert client.agents(limit=1000).agents

    tid = client.submit(queue, {"x": 1}, capabilities=["web"]).id
    [task] = client.claim(agent_id, [queue], max=2, wait_ms=2000)
    assert task.id == tid and task.state == "leased" and task.lease is not None
    token = task.lease.token
    assert task.lease.agent_id == agent_id and task.attempt == 1
    with pytest.raises(minion.StaleLease) as err:
        client.progress(tid, token + 1, 10)
    assert err.value.status == 409 and isinstance(err.value, minion.Conflict)
    t = client.progress(tid, token, 40, "fetched")
    assert [(p.percent, p.message) for p in t.progress] == [(40, "fetched")]
    before = t.lease.expires_ms if t.lease else 0
    extended = client.extend(tid, token, lease_ms=60_000)
    assert extended.lease is not None and extended.lease.expires_ms > before
    done = client.complete(tid, token, {"summary": "ok"})
    assert done.state == "succeeded" and done.result == {"summary": "ok"}
    assert done.attempts[0].outcome is not None and done.attempts[0].outcome.outcome == "succeeded"
    with pytest.raises(minion.WrongState):
        client.complete(tid, token, None)
    assert client.agent(agent_id).stats.overall.completed == 1

    tid2 = client.submit(queue, None, max_attempts=1).id
    [task2] = client.claim(agent_id, [queue], wait_ms=2000)
    assert task2.lease is not None
    dead = client.fail(tid2, task2.lease.token, "broke")
    assert dead.state == "dead" and dead.last_error == "broke"

    assert client.drain_agent(agent_id).status == "draining"
    client.deregister_agent(agent_id)
    with pytest.raises(minion.NotFound):
        client.agent(agent_id)


def test_wait_returns_the_finished_task(client: minion.Client, queue: str) -> None:
    tid = client.submit(queue, 5).id
    agent_id = f"w-{uuid.uuid4().hex[:6]}"
    [task] = client.claim(agent_id, [queue], wait_ms=2000)
    assert task.lease is not None
    import threading

    def finish() -> None:
        time.sleep(0.5)
        client.complete(tid, task.lease.token, {"double": 10})  # type: ignore[union-attr]

    threading.Thread(target=finish).start()
    started = time.monotonic()
    done = client.wait(tid, timeout=20)
    assert done.state == "succeeded" and done.result == {"double": 10}
    assert time.monotonic() - started >= 0.4  # it really waited for the completion


def test_wait_times_out_on_an_unfinished_task(client: minion.Client, queue: str) -> None:
    tid = client.submit(queue, None).id
    started = time.monotonic()
    with pytest.raises(minion.WaitTimeout) as err:
        client.wait(tid, timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5
    assert isinstance(err.value, TimeoutError)
    assert err.value.task.id == tid and err.value.task.state == "ready"


def test_typed_errors(client: minion.Client, server: object) -> None:
    with pytest.raises(minion.NotFound) as nf:
        client.get(987_654_321)
    assert (nf.value.status, nf.value.code) == (404, "not_found") and "987654321" in nf.value.message
    assert isinstance(nf.value, minion.MinionError) and nf.value.node is not None
    with pytest.raises(minion.InvalidRequest) as bad:
        client.submit("not a valid queue name!", 1)
    assert (bad.value.status, bad.value.code) == (400, "invalid_request")
    with pytest.raises(minion.InvalidRequest):
        client.list_tasks(state="bogus")
    with pytest.raises(minion.InvalidRequest):
        client.request("POST", "/v1/tasks", json={"queue": "q", "unknown_field": 1})
    with pytest.raises(minion.MethodNotAllowed):
        client.request("DELETE", "/v1/queues")
    with pytest.raises(minion.NotFound):
        client.cancel(987_654_321)


def test_raw_request_and_ready(client: minion.Client) -> None:
    stats = client.request("GET", "/v1/stats")
    assert isinstance(stats, dict) and stats
    assert client.ready() is True


def _no_extras(model: object, path: str = "") -> list[str]:
    """Fields the server sent that the model does not declare, recursively."""
    from pydantic import BaseModel

    out: list[str] = []
    if isinstance(model, BaseModel):
        out += [f"{path}.{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            out += _no_extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, (list, tuple)):
        for i, item in enumerate(model):
            out += _no_extras(item, f"{path}[{i}]")
    elif isinstance(model, dict):
        for k, item in model.items():
            out += _no_extras(item, f"{path}[{k}]")
    return out


def test_models_declare_every_field_the_server_sends(client: minion.Client, queue: str) -> None:
    agent_id = f"m-{uuid.uuid4().hex[:6]}"
    client.register_agent(agent_id, capabilities=["x"], labels={"k": "v"})
    tid = client.submit(queue, {"p": 1}, kind="k", idempotency_key=f"m-{uuid.uuid4()}", stall_timeout_ms=5000,
                        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").id
    [task] = client.claim(agent_id, [queue], wait_ms=2000)
    assert task.lease is not None and task.trace_parent is not None
    client.progress(tid, task.lease.token, 50, "m")
    done = client.complete(tid, task.lease.token, {"r": 1})
    with client.events(task_id=tid) as stream:
        events = list(stream)
    objects: dict[str, object] = {
        "claimed": task,
        "task": done,
        "page": client.list_tasks(queue=queue),
        "agent": client.agent(agent_id),
        "agents": client.agents(),
        "heartbeat": client.heartbeat(agent_id),
        "queue": client.queue(queue),
        "queues": client.queues(),
        "events": events,
        "submitted": client.submit(queue, None),
    }
    assert {k: _no_extras(v) for k, v in objects.items()} == {k: [] for k in objects}
    client.deregister_agent(agent_id)
