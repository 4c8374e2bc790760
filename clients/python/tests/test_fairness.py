"""Fair queues from Python: ``set_queue_limits(fair=True)``; a worker taking one task at a time
from a queue where one tenant queued a burst first serves the tenants in turn, not the burst
first; the queue's limits show the key served last."""

from __future__ import annotations

import threading
from typing import Callable

import minion
from conftest import WorkerThreads


def test_a_worker_serves_tenants_in_turn_in_a_fair_queue(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    limits = client.set_queue_limits(queue, fair=True)
    assert limits.fair and limits.last_served_key is None
    ids = [client.submit(queue, "bulk", kind="job", concurrency_key="bulk").id for _ in range(6)]
    ids += [client.submit(queue, tenant, kind="job", concurrency_key=tenant).id for tenant in ["a", "b", "a"]]
    order: list[str] = []
    lock = threading.Lock()
    worker = make_worker(concurrency=1)

    @worker.task(kind="job")
    def job(payload: str) -> None:
        with lock:
            order.append(payload)

    workers.start(worker)
    for i in ids:
        assert client.wait(i, timeout=30).state == "succeeded"
    # Oldest first would run the six "bulk" tasks before any other.
    assert order == ["a", "b", "bulk", "a", "bulk", "bulk", "bulk", "bulk", "bulk"], order
    assert client.queue_limits(queue).last_served_key == "bulk"


async def test_the_async_client_turns_fairness_on_and_off(aclient: minion.AsyncClient, queue: str) -> None:
    on = await aclient.set_queue_limits(queue, fair=True, concurrency_per_key=2)
    assert on.fair and on.concurrency_per_key == 2
    off = await aclient.set_queue_limits(queue, concurrency_per_key=2)
    assert not off.fair and off.last_served_key is None
