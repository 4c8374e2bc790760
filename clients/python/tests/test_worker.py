"""Worker against a real node: concurrency, leases, retries, cancellation, routing, outcomes."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import pytest
from pydantic import BaseModel

import minion
from _streams import Collector
from conftest import WorkerThreads


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


@pytest.mark.parametrize("style", ["async", "sync"])
def test_concurrency_runs_tasks_at_once(
    style: str, client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    intervals: list[tuple[float, float]] = []
    lock = threading.Lock()
    worker = make_worker(concurrency=8)

    if style == "async":

        @worker.task(kind="nap")
        async def nap(payload: int, ctx: minion.Context) -> int:
            start = time.monotonic()
            await asyncio.sleep(0.5)
            with lock:
                intervals.append((start, time.monotonic()))
            return payload

    else:

        @worker.task(kind="nap")
        def nap_sync(payload: int, ctx: minion.SyncContext) -> int:
            start = time.monotonic()
            time.sleep(0.5)
            with lock:
                intervals.append((start, time.monotonic()))
            return payload

    workers.start(worker)
    ids = [s.id for s in client.submit_many([{"queue": queue, "kind": "nap", "payload": i} for i in range(16)])]
    results = [client.wait(i, timeout=30) for i in ids]
    assert [t.state for t in results] == ["succeeded"] * 16
    assert [t.result for t in results] == list(range(16))
    assert len(intervals) == 16
    assert max_overlap(intervals) == 8, f"8 in flight at once, never more: {max_overlap(intervals)}"
    assert all(len(t.attempts) == 1 and t.attempts[0].agent_id == worker.agent_id for t in results)


@pytest.mark.parametrize("style", ["async", "sync"])
def test_lease_is_extended_while_a_task_outlives_it(
    style: str, client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    worker = make_worker()
    if style == "async":

        @worker.task(kind="slow")
        async def slow(payload: Any, ctx: minion.Context) -> str:
            await asyncio.sleep(3)
            return "done"

    else:

        @worker.task(kind="slow")
        def slow_sync(payload: Any, ctx: minion.SyncContext) -> str:
            time.sleep(3)
            return "done"

    workers.start(worker)
    tid = client.submit(queue, None, kind="slow", lease_ms=1000).id
    task = client.wait(tid, timeout=20)
    assert task.state == "succeeded" and task.result == "done"
    assert len(task.attempts) == 1, f"one attempt: the lease never expired ({task.attempts})"
    a = task.attempts[0]
    assert a.outcome is not None and a.outcome.outcome == "succeeded"
    assert a.ended_ms is not None and a.ended_ms - a.started_ms >= 2900


def test_failed_attempt_is_retried(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    client.set_queue(queue, retry_base_ms=50, retry_max_ms=100)
    worker = make_worker()
    attempts_seen: list[int] = []

    @worker.task(kind="flaky")
    async def flaky(payload: dict, ctx: minion.Context) -> dict:
        attempts_seen.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"attempt": ctx.attempt, "max": ctx.max_attempts}

    workers.start(worker)
    tid = client.submit(queue, {}, kind="flaky", max_attempts=2).id
    task = client.wait(tid, timeout=20)
    assert attempts_seen == [1, 2]
    assert task.state == "succeeded" and task.result == {"attempt": 2, "max": 2}
    first, second = task.attempts
    assert first.outcome is not None and first.outcome.outcome == "failed"
    assert first.outcome.error == "RuntimeError: first attempt fails"
    assert second.outcome is not None and second.outcome.outcome == "succeeded"


def test_last_failure_makes_the_task_dead(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    worker = make_worker()

    @worker.task(kind="boom")
    def boom(payload: Any) -> None:
        raise ValueError("bad input: 42")

    workers.start(worker)
    task = client.wait(client.submit(queue, None, kind="boom", max_attempts=1).id, timeout=20)
    assert task.state == "dead" and task.last_error == "ValueError: bad input: 42"


def test_cancellation_reaches_an_async_handler(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    started, cancelled, finished = threading.Event(), threading.Event(), threading.Event()
    worker = make_worker()

    @worker.task(kind="long")
    async def long(payload: Any, ctx: minion.Context) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finished.set()
        return "should not happen"

    workers.start(worker)
    tid = client.submit(queue, None, kind="long", lease_ms=1500).id
    assert started.wait(10)
    client.cancel(tid, reason="user gave up")
    assert cancelled.wait(5), "the handler's asyncio task was cancelled"
    assert not finished.is_set()
    task = client.get(tid)
    assert task.state == "cancelled" and task.cancel_reason == "user gave up"
    assert task.attempts[0].outcome is not None and task.attempts[0].outcome.outcome == "cancelled"
    # The slot is free again: the worker takes the next task.
    started.clear()
    tid2 = client.submit(queue, None, kind="long", lease_ms=1500).id
    assert started.wait(10)
    client.cancel(tid2)


def test_cancellation_reaches_a_sync_handler_through_progress(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    started = threading.Event()
    outcome: list[str] = []
    worker = make_worker()

    @worker.task(kind="poll")
    def poll(payload: Any, ctx: minion.SyncContext) -> str:
        started.set()
        try:
            for i in range(300):
                ctx.progress(min(i, 100), f"step {i}")  # raises LeaseLost once cancelled
                time.sleep(0.05)
        except minion.LeaseLost as err:
            outcome.append(f"lost: {err.reason}; flag={ctx.cancelled}")
            raise
        outcome.append("finished")
        return "no"

    workers.start(worker)
    tid = client.submit(queue, None, kind="poll", lease_ms=60_000).id  # the keeper would take 20 s
    assert started.wait(10)
    time.sleep(0.2)
    client.cancel(tid, "stop polling")
    deadline = time.monotonic() + 5
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outcome and outcome[0].startswith("lost: progress refused") and outcome[0].endswith("flag=True")
    assert client.get(tid).state == "cancelled"


def test_cancellation_sets_the_flag_of_a_sync_handler(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    started, noticed = threading.Event(), threading.Event()
    worker = make_worker()

    @worker.task(kind="loop")
    def loop(payload: Any, ctx: minion.SyncContext) -> None:
        started.set()
        if ctx.cancelled_event.wait(30):
            noticed.set()

    workers.start(worker)
    tid = client.submit(queue, None, kind="loop", lease_ms=900).id
    assert started.wait(10)
    client.cancel(tid)
    assert noticed.wait(5), "the lease keeper's refused extension set ctx.cancelled"


class SummarizeIn(BaseModel):
    text: str
    max_words: int = 3


class SummaryOut(BaseModel):
    summary: str
    words: int


def test_payload_and_result_models(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    worker = make_worker()
    seen: list[object] = []

    @worker.task(kind="summarize")
    async def summarize(payload: SummarizeIn, ctx: minion.Context) -> SummaryOut:
        seen.append(payload)
        words = payload.text.split()[: payload.max_words]
        return SummaryOut(summary=" ".join(words), words=len(words))

    workers.start(worker)
    ok = client.wait(client.submit(queue, {"text": "one two three four five"}, kind="summarize").id, timeout=20)
    assert ok.state == "succeeded" and ok.result == {"summary": "one two three", "words": 3}
    assert isinstance(seen[0], SummarizeIn)
    bad = client.wait(client.submit(queue, {"txt": 1}, kind="summarize", max_attempts=1).id, timeout=20)
    assert bad.state == "dead"
    assert bad.last_error is not None and bad.last_error.startswith("invalid payload for kind 'summarize'")
    assert "text" in bad.last_error and len(seen) == 1


def test_unknown_kind_fails_clearly_and_routing_by_kind(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    worker = make_worker(concurrency=2)

    @worker.task(kind="upper")
    def upper(payload: str) -> str:
        return payload.upper()

    @worker.task()
    def reverse(payload: str) -> str:  # kind defaults to the function's name
        return payload[::-1]

    workers.start(worker)
    up = client.submit(queue, "abc", kind="upper").id
    rev = client.submit(queue, "abc", kind="reverse").id
    unknown = client.submit(queue, "abc", kind="translate", max_attempts=1).id
    assert client.wait(up, timeout=20).result == "ABC"
    assert client.wait(rev, timeout=20).result == "cba"
    dead = client.wait(unknown, timeout=20)
    assert dead.state == "dead"
    assert dead.last_error == f"no handler for kind 'translate' on agent {worker.agent_id} (it handles 'reverse', 'upper')"


def test_stream_splits_partial_output(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    text = "token " * 900 + "é" * 2500  # 5,400 + 5,000 bytes
    worker = make_worker()

    @worker.task(kind="llm")
    async def llm(payload: Any, ctx: minion.Context) -> int:
        await ctx.progress(5, "thinking")
        await ctx.stream(text)
        await ctx.stream("")  # nothing to send
        return len(text)

    workers.start(worker)
    tid = client.submit(queue, None, kind="llm").id
    task = client.wait(tid, timeout=20)
    assert task.state == "succeeded"
    assert (task.progress[0].percent, task.progress[0].message) == (5, "thinking")
    pieces = [p.message or "" for p in task.progress[1:]]
    assert len(pieces) == 3 and all(len(p.encode()) <= 4096 for p in pieces)
    assert "".join(pieces) == text
    coll = Collector(client.events(task_id=tid))
    try:
        events = coll.until_end(timeout=10)
    finally:
        coll.close()
    streamed = "".join(e.message or "" for e in events if e.type == "progress" and e.percent is None)
    assert streamed == text


def test_worker_stop_drains_and_deregisters(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    started = threading.Event()
    worker = make_worker(drain_grace=10)

    @worker.task(kind="work")
    async def work(payload: Any, ctx: minion.Context) -> str:
        started.set()
        await asyncio.sleep(1.0)
        return "finished during drain"

    workers.start(worker)
    tid = client.submit(queue, None, kind="work").id
    assert started.wait(10)
    worker.stop()
    deadline = time.monotonic() + 5
    while client.agent(worker.agent_id).status != "draining":
        assert time.monotonic() < deadline, "the agent is marked draining"
        time.sleep(0.05)
    later = client.submit(queue, None, kind="work").id
    assert worker.stopped.wait(15)
    assert client.get(tid).state == "succeeded" and client.get(tid).result == "finished during drain"
    assert client.get(later).state == "ready", "a draining worker takes nothing new"
    with pytest.raises(minion.NotFound):
        client.agent(worker.agent_id)
    client.cancel(later)


def test_worker_in_an_asyncio_app(client: minion.Client, queue: str, server: Any) -> None:
    async def main() -> minion.Task:
        worker = minion.Worker(server.url, queues=[queue], claim_wait_ms=1000)

        @worker.task(kind="add")
        async def add(payload: list[int], ctx: minion.Context) -> int:
            return sum(payload)

        running = asyncio.create_task(worker.arun())
        async with minion.AsyncClient(server.url) as ac:
            tid = (await ac.submit(queue, [1, 2, 3], kind="add")).id
            task = await ac.wait(tid, timeout=20)
        worker.stop()
        await asyncio.wait_for(running, 10)
        assert worker.stopped.is_set()
        return task

    task = asyncio.run(main())
    assert task.state == "succeeded" and task.result == 6


def test_worker_reuses_a_client_and_checks_its_arguments(client: minion.Client, queue: str) -> None:
    worker = minion.Worker(client, queues=[queue])
    assert worker.config.urls == client.config.urls
    with pytest.raises(ValueError):
        minion.Worker(client, queues=[])
    with pytest.raises(ValueError):
        minion.Worker(client, queues=[queue], concurrency=0)
    with pytest.raises(RuntimeError, match="no handlers"):
        asyncio.run(worker.arun())

    @worker.task(kind="x")
    def x(payload: Any) -> None: ...

    with pytest.raises(ValueError, match="already has a handler"):
        worker.add_handler("x", x)


def test_drained_from_outside_the_worker_finishes_and_stops(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    started = threading.Event()
    worker = make_worker(heartbeat_interval=0.2)

    @worker.task(kind="work")
    async def work(payload: Any, ctx: minion.Context) -> str:
        started.set()
        await asyncio.sleep(0.8)
        return "kept"

    workers.start(worker)
    tid = client.submit(queue, None, kind="work").id
    assert started.wait(10)
    client.drain_agent(worker.agent_id)  # what `minion agent drain ID` does
    assert worker.stopped.wait(10), "the worker notices at its next heartbeat and stops"
    task = client.get(tid)
    assert task.state == "succeeded" and task.result == "kept"
    with pytest.raises(minion.NotFound):
        client.agent(worker.agent_id)
