"""Concurrency keys from Python: ``concurrency_key=`` on submit, ``set_queue_limits`` and
``queue_limits``; a worker with room for many tasks never runs more of one key at once than the
queue allows, while other keys run beside it."""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest

import minion
from conftest import WorkerThreads


def test_a_worker_runs_at_most_the_limit_of_one_key_at_once(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    limits = client.set_queue_limits(queue, concurrency_per_key=1, key_concurrency={"wide": 3})
    assert (limits.concurrency_per_key, limits.key_concurrency) == (1, {"wide": 3})
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    lock = threading.Lock()
    worker = make_worker(concurrency=8)

    @worker.task(kind="call")
    def call(payload: str) -> None:
        with lock:
            running[payload] = running.get(payload, 0) + 1
            most[payload] = max(most.get(payload, 0), running[payload])
        time.sleep(0.15)
        with lock:
            running[payload] -= 1

    ids = [client.submit(queue, key, kind="call", concurrency_key=key).id for key in ["narrow"] * 4 + ["wide"] * 6]
    assert client.get(ids[0]).concurrency_key == "narrow"
    workers.start(worker)
    for i in ids:
        assert client.wait(i, timeout=30).state == "succeeded"
    assert most == {"narrow": 1, "wide": 3}, most


def test_limits_show_leases_per_key_and_clear(client: minion.Client, queue: str) -> None:
    client.set_queue_limits(queue, concurrency_per_key=1)
    client.submit(queue, 1, concurrency_key="k")
    client.submit(queue, 2, concurrency_key="k")
    [t] = client.claim("py-agent", [queue], max=5)
    assert t.concurrency_key == "k"
    limits = client.queue_limits(queue)
    assert (limits.leased_by_key, limits.keys_at_limit) == ({"k": 1}, 1)
    assert client.claim("py-agent", [queue], max=5) == []
    cleared = client.set_queue_limits(queue)
    assert cleared.concurrency_per_key is None and cleared.key_concurrency == {}
    assert len(client.claim("py-agent", [queue], max=5)) == 1


def test_a_bad_key_or_limit_is_refused(client: minion.Client, queue: str) -> None:
    with pytest.raises(minion.InvalidRequest):
        client.submit(queue, 1, concurrency_key="")
    with pytest.raises(minion.InvalidRequest):
        client.set_queue_limits(queue, concurrency_per_key=10_000_000)


async def test_the_async_client_sets_and_reads_limits(aclient: minion.AsyncClient, queue: str) -> None:
    await aclient.set_queue_limits(queue, key_concurrency={"a": 2})
    await aclient.submit(queue, 1, concurrency_key="a")
    limits = await aclient.queue_limits(queue)
    assert limits.key_concurrency == {"a": 2} and limits.keys_at_limit == 0
