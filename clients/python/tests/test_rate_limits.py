"""Rate limits from Python: ``set_queue_limits(rate=, rate_per_key=, key_rate=)`` with
:class:`minion.Rate`; a worker with room for many tasks starts the tasks of a rate-limited key no
faster than the key's rate, while a key without one runs at once."""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest

import minion
from conftest import WorkerThreads


def test_a_worker_starts_a_key_no_faster_than_its_rate(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    # Two starts at once, then one every 500 ms.
    limits = client.set_queue_limits(queue, key_rate={"api": minion.Rate(starts=2, period_ms=1_000)})
    assert limits.key_rate == {"api": minion.Rate(starts=2, period_ms=1_000)}
    starts: dict[str, list[float]] = {"api": [], "free": []}
    lock = threading.Lock()
    worker = make_worker(concurrency=8)

    @worker.task(kind="call")
    def call(payload: str) -> None:
        with lock:
            starts[payload].append(time.monotonic())

    ids = [client.submit(queue, key, kind="call", concurrency_key=key).id for key in ["api"] * 6 + ["free"] * 4]
    workers.start(worker)
    for i in ids:
        assert client.wait(i, timeout=30).state == "succeeded"
    api = sorted(starts["api"])
    # Any three starts of "api" span at least one interval (500 ms; 150 ms for delivery jitter),
    # and six span at least four intervals.
    gaps = [round(api[i + 2] - api[i], 3) for i in range(len(api) - 2)]
    assert min(gaps) >= 0.35, gaps
    assert api[-1] - api[0] >= 1.85, api
    free = sorted(starts["free"])
    assert free[0] - api[0] < 1.0, "a key without a rate is not held back by another's"


def test_a_queue_rate_shows_when_it_allows_the_next_start(client: minion.Client, queue: str) -> None:
    client.set_queue_limits(queue, rate=minion.Rate.per_hour(1), rate_per_key=minion.Rate.per_minute(5))
    client.submit(queue, 1)
    client.submit(queue, 2)
    assert len(client.claim("py-agent", [queue], max=5)) == 1
    assert client.claim("py-agent", [queue], max=5) == []
    limits = client.queue_limits(queue)
    assert limits.rate == minion.Rate(starts=1, period_ms=3_600_000)
    assert limits.rate_per_key == minion.Rate(starts=5, period_ms=60_000)
    assert limits.rate_limited_until_ms is not None and limits.rate_limited_until_ms > time.time() * 1000 + 3_500_000
    cleared = client.set_queue_limits(queue)
    assert cleared.rate is None and cleared.rate_limited_until_ms is None
    assert len(client.claim("py-agent", [queue], max=5)) == 1


def test_a_bad_rate_is_refused(client: minion.Client, queue: str) -> None:
    with pytest.raises(minion.InvalidRequest):
        client.set_queue_limits(queue, rate=minion.Rate(starts=0, period_ms=1_000))
    with pytest.raises(minion.InvalidRequest):
        client.set_queue_limits(queue, key_rate={"": minion.Rate.per_second(1)})
    assert client.queue_limits(queue).rate is None


async def test_the_async_client_sets_and_reads_rates(aclient: minion.AsyncClient, queue: str) -> None:
    await aclient.set_queue_limits(queue, rate_per_key=minion.Rate.per_second(3))
    limits = await aclient.queue_limits(queue)
    assert limits.rate_per_key == minion.Rate(starts=3, period_ms=1_000) and limits.keys_rate_limited == 0
