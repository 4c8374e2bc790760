"""Worker against a real node behind a proxy that makes chosen requests fail: re-registration,
lease extension, completion and progress failures."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import minion
from _proxy import FaultProxy
from _server import MinionServer
from conftest import WorkerThreads


@pytest.fixture
def proxy(server: MinionServer) -> Iterator[FaultProxy]:
    p = FaultProxy(server.url)
    yield p
    p.close()


def _wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _worker(url: str, queue: str, **kwargs: Any) -> minion.Worker:
    kwargs.setdefault("claim_wait_ms", 500)
    kwargs.setdefault("drain_grace", 5)
    return minion.Worker(url, queues=[queue], handle_signals=False, **kwargs)


@pytest.fixture
def quick_death(tmp_path: Path) -> Iterator[MinionServer]:
    """A private node that declares agents dead after 1 s of silence."""
    srv = MinionServer(tmp_path / "data", args=["--agent-heartbeat-timeout-ms", "1000"]).start()
    yield srv
    srv.stop()


def test_a_failed_reregistration_after_a_refused_claim_is_retried(
    quick_death: MinionServer, workers: WorkerThreads
) -> None:
    proxy = FaultProxy(quick_death.url)
    client = minion.Client(quick_death.url)
    try:
        # No heartbeat in the test's time: only the claim loop finds out that the agent is dead.
        worker = _worker(proxy.url, "q", heartbeat_interval=60, claim_wait_ms=300)

        @worker.task(kind="echo")
        async def echo(payload: Any, ctx: minion.Context) -> Any:
            return payload

        workers.start(worker)
        first = worker.incarnation
        proxy.fail("POST", r"^/v1/claims$", code="no_leader")  # the agent falls silent
        _wait_until(lambda: client.agent(worker.agent_id).status == "dead", 10, "the node declares it dead")
        proxy.clear()
        proxy.fail("POST", r"^/v1/agents$", drop=True, times=1)  # the node "crashes" mid-registration
        _wait_until(lambda: proxy.count("POST", r"^/v1/agents$") == 2, 10, "the worker registers again, at the second try")
        assert proxy.refused.count(("POST", "/v1/agents")) == 1, "the first try failed"
        _wait_until(lambda: worker.incarnation != first, 5, "the new incarnation is recorded")
        assert client.agent(worker.agent_id).status == "active"
        tid = client.submit("q", "still serving", kind="echo").id
        assert client.wait(tid, timeout=15).result == "still serving"
        assert not worker.stopped.is_set() and workers.errors == []
    finally:
        client.close()
        proxy.close()


@pytest.mark.parametrize("style", ["async", "sync"])
def test_a_lease_that_cannot_be_extended_is_lost_and_its_result_dropped(
    style: str,
    client: minion.Client,
    queue: str,
    proxy: FaultProxy,
    make_worker: Callable[..., minion.Worker],
    workers: WorkerThreads,
) -> None:
    client.set_queue(queue, retry_base_ms=50, retry_max_ms=100)
    proxy.fail("POST", r"/extend$")  # every extension of agent A: 503 unavailable
    a = _worker(proxy.url, queue)
    lost, release = threading.Event(), threading.Event()
    reasons: list[str] = []

    if style == "async":

        @a.task(kind="job")
        async def job_a(payload: Any, ctx: minion.Context) -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                reasons.append(f"{ctx.cancelled}: {ctx.cancel_reason}")
                lost.set()
                raise
            return "stale from A"

    else:

        @a.task(kind="job")
        def job_a_sync(payload: Any, ctx: minion.SyncContext) -> str:
            ctx.cancelled_event.wait(30)
            reasons.append(f"{ctx.cancelled}: {ctx.cancel_reason}")
            lost.set()
            release.wait(30)
            return "stale from A"  # a thread may ignore the loss: its result must still be dropped

    workers.start(a)
    tid = client.submit(queue, None, kind="job", lease_ms=1000, max_attempts=3).id
    _wait_until(lambda: client.get(tid).state == "leased", 10, "A claims the task")
    proxy.fail("POST", r"^/v1/claims$", code="no_leader")  # A takes nothing more
    assert lost.wait(10), "A's handler learns that its lease is gone"
    assert reasons[0].startswith("True: the lease ran out"), reasons

    b = make_worker()

    @b.task(kind="job")
    async def job_b(payload: Any, ctx: minion.Context) -> str:
        return "fresh from B"

    workers.start(b)
    task = client.wait(tid, timeout=20)
    release.set()
    _wait_until(lambda: a.in_flight == 0, 10, "A's handler has returned")
    time.sleep(0.2)
    assert proxy.count("POST", r"/complete$") == 0 and proxy.count("POST", r"/fail$") == 0, "A reported nothing"
    task = client.get(tid)
    assert task.state == "succeeded" and task.result == "fresh from B"
    assert [at.agent_id for at in task.attempts] == [a.agent_id, b.agent_id]
    first = task.attempts[0].outcome
    assert first is not None and first.outcome != "succeeded"


def test_the_lease_is_kept_while_a_completion_is_retried(
    client: minion.Client, queue: str, proxy: FaultProxy, workers: WorkerThreads
) -> None:
    # Four refused completions back off 1.5 s in all, longer than the lease.
    proxy.fail("POST", r"/complete$", times=4)
    worker = _worker(proxy.url, queue)

    @worker.task(kind="quick")
    async def quick(payload: Any, ctx: minion.Context) -> str:
        return "done once"

    workers.start(worker)
    tid = client.submit(queue, None, kind="quick", lease_ms=1000, max_attempts=3).id
    task = client.wait(tid, timeout=20)
    assert task.state == "succeeded" and task.result == "done once"
    assert len(task.attempts) == 1, f"the lease never lapsed while reporting: {task.attempts}"
    assert proxy.refused.count(("POST", f"/v1/tasks/{tid}/complete")) == 4
    assert proxy.count("POST", rf"^/v1/tasks/{tid}/extend$") >= 1, "extended while the completion was retried"


@pytest.mark.parametrize("style", ["async", "sync"])
def test_progress_is_best_effort(
    style: str, client: minion.Client, queue: str, proxy: FaultProxy, workers: WorkerThreads
) -> None:
    proxy.fail("POST", r"/progress$", times=1)  # the first report: 503 unavailable
    worker = _worker(proxy.url, queue)
    if style == "async":

        @worker.task(kind="report")
        async def report(payload: Any, ctx: minion.Context) -> str:
            await ctx.progress(10, "dropped")
            await ctx.stream("kept")
            return f"cancelled={ctx.cancelled}"

    else:

        @worker.task(kind="report")
        def report_sync(payload: Any, ctx: minion.SyncContext) -> str:
            ctx.progress(10, "dropped")
            ctx.stream("kept")
            return f"cancelled={ctx.cancelled}"

    workers.start(worker)
    task = client.wait(client.submit(queue, None, kind="report", max_attempts=1).id, timeout=20)
    assert task.state == "succeeded" and task.result == "cancelled=False", task.last_error
    assert [(p.percent, p.message) for p in task.progress] == [(None, "kept")]
