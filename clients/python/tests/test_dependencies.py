"""Dependencies and deadlines from Python: ``depends_on=``, batch members named by idempotency key,
results of dependencies in a worker's task, the failure policy, and ``deadline_in_ms``."""

from __future__ import annotations

import time
from typing import Callable

import pytest

import minion
from conftest import WorkerThreads


def test_fan_in_runs_after_its_dependencies_and_sees_their_results(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    worker = make_worker(concurrency=4)
    seen: dict[str, object] = {}

    @worker.task(kind="search")
    def search(payload: str) -> list[str]:
        return [f"{payload}-1", f"{payload}-2"]

    @worker.task(kind="merge")
    def merge(payload: None, ctx: minion.SyncContext) -> int:
        seen["results"] = ctx.task.dependency_results
        seen["states"] = [d.state for d in ctx.task.depends_on]
        return sum(len(r) for r in ctx.task.dependency_results.values())

    out = client.submit_many(
        [
            minion.TaskSpec(queue=queue, kind="merge", depends_on=["a", "b"]),
            minion.TaskSpec(queue=queue, kind="search", payload="x", idempotency_key="a"),
            minion.TaskSpec(queue=queue, kind="search", payload="y", idempotency_key="b"),
        ]
    )
    merge_id, a, b = (s.id for s in out)
    waiting = client.get(merge_id)
    assert waiting.state is minion.TaskState.WAITING and not waiting.is_final
    assert [d.id for d in waiting.depends_on] == [a, b] and waiting.on_dependency_failure == "cancel"
    workers.start(worker)
    done = client.wait(merge_id, timeout=20)
    assert done.state == "succeeded" and done.result == 4
    assert seen["results"] == {a: ["x-1", "x-2"], b: ["y-1", "y-2"]}
    assert seen["states"] == [minion.TaskState.SUCCEEDED, minion.TaskState.SUCCEEDED]


def test_failure_policy_cancels_or_runs_anyway(client: minion.Client, queue: str) -> None:
    root = client.submit(queue, 1, max_attempts=1)
    cancelled = client.submit(queue, 2, depends_on=[root.id])
    anyway = client.submit(queue, 3, depends_on=[root.id], on_dependency_failure="run_anyway")
    [t] = client.claim("py-agent", [queue])
    assert t.id == root.id
    assert t.lease is not None
    client.fail(t.id, t.lease.token, "no")
    c = client.get(cancelled.id)
    assert c.state == "cancelled" and c.cancel_reason == f"dependency {root.id} is dead"
    [t] = client.claim("py-agent", [queue])
    assert t.id == anyway.id and t.depends_on[0].state == "dead" and t.depends_on[0].last_error == "no"
    assert t.dependency_results == {}
    with pytest.raises(minion.NotFound):
        client.submit(queue, 4, depends_on=[987_654_321])
    with pytest.raises(minion.InvalidRequest):
        client.submit_many([minion.TaskSpec(queue=queue, depends_on=["nobody"])])


def test_deadline_ends_an_unfinished_task(client: minion.Client, queue: str) -> None:
    s = client.submit(queue, None, deadline_in_ms=400)
    t = client.get(s.id)
    assert t.deadline_ms is not None and t.deadline_ms >= t.created_ms + 400
    dead = client.wait(s.id, timeout=10)
    assert dead.state == "dead" and dead.last_error == "deadline"
    with pytest.raises(minion.InvalidRequest):
        client.submit(queue, None, deadline_ms=int(time.time() * 1000) - 1_000)
