"""Parent and child tasks from Python: ``ctx.spawn`` submits children under the handler's lease,
``ctx.gather`` gives the lease back while they run and, in the run after they finish, returns
their results (the spawns of that run name the same children); a child that did not succeed
raises ``ChildFailed`` or stands in its place; cancelling the parent cancels unfinished children."""

from __future__ import annotations

import time
from typing import Callable

import pytest

import minion
from conftest import WorkerThreads


def test_an_async_planner_fans_out_and_resumes_with_the_results(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    runs: list[int] = []
    worker = make_worker(concurrency=2)

    @worker.task(kind="square")
    def square(n: int) -> int:
        return n * n

    @worker.task(kind="plan")
    async def plan(numbers: list[int], ctx: minion.Context) -> int:
        runs.append(ctx.attempt)
        children = [await ctx.spawn(ctx.queue, n, kind="square") for n in numbers]
        squares = await ctx.gather(children)
        return sum(squares)

    workers.start(worker)
    parent = client.submit(queue, [1, 2, 3], kind="plan").id
    done = client.wait(parent, timeout=30)
    assert done.state == "succeeded" and done.result == 14, done
    assert len(runs) == 2, "ran once, waited, ran again"
    assert [a.outcome.outcome for a in done.attempts if a.outcome] == ["waiting_children", "succeeded"]
    assert len(done.children) == 3 and all(c.state == "succeeded" for c in done.children), "the same three children"
    child = client.get(done.children[0].id)
    assert child.parent_id == parent and child.idempotency_key == f"child:{parent}:1"


def test_a_sync_handler_sees_failed_children_and_a_cancelled_parent_cancels_its_children(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    worker = make_worker(concurrency=2)

    @worker.task(kind="flaky")
    def flaky(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    @worker.task(kind="collect")
    def collect(numbers: list[int], ctx: minion.SyncContext) -> list[str]:
        children = [ctx.spawn(ctx.queue, n, kind="flaky", max_attempts=1) for n in numbers]
        try:
            out = ctx.gather(children, return_exceptions=True)
        except Exception:  # noqa: BLE001 - a waiting handler must get past this
            raise AssertionError("WaitingForChildren is not an Exception")
        with pytest.raises(minion.ChildFailed):
            ctx.gather(children)
        return [f"{type(x).__name__}:{getattr(x, 'state', x)}" for x in out]

    other = f"{queue}-idle"

    @worker.task(kind="wait-forever")
    async def wait_forever(_: None, ctx: minion.Context) -> None:
        await ctx.gather([await ctx.spawn(other, None)])

    workers.start(worker)
    parent = client.submit(queue, [5, -1], kind="collect").id
    done = client.wait(parent, timeout=30)
    assert done.state == "succeeded", done
    assert done.result == ["int:5", "ChildFailed:dead"], done.result

    # A parent waiting for a child nobody runs: cancelling it cancels the child.
    p = client.submit(queue, None, kind="wait-forever").id
    deadline = time.monotonic() + 20
    while client.get(p).state != "waiting_children":
        assert time.monotonic() < deadline, client.get(p)
        time.sleep(0.05)
    child = client.get(p).children[0].id
    assert client.get(child).state == "ready"
    client.cancel(p, reason="not needed")
    got = client.get(child)
    assert got.state == "cancelled" and got.cancel_reason == f"task {p}, which it descends from, was cancelled"
