"""Schedules from Python: an interval schedule submits tasks from its template that a worker runs,
each with the idempotency key ``schedule:{name}:{due ms}``; cron with a time zone, pause, catch-up
and refusals of bad definitions; listing and deleting (the tasks a schedule created stay)."""

from __future__ import annotations

import time
from typing import Callable

import pytest

import minion
from conftest import WorkerThreads


def _wait_fired(client: minion.Client, name: str, at_least: int, timeout: float = 20.0) -> minion.Schedule:
    deadline = time.monotonic() + timeout
    while True:
        s = client.schedule(name)
        if s.fired >= at_least:
            return s
        assert time.monotonic() < deadline, f"{name} fired {s.fired} < {at_least}: {s}"
        time.sleep(0.1)


def test_an_interval_schedule_submits_tasks_that_a_worker_runs(
    client: minion.Client, queue: str, make_worker: Callable[..., minion.Worker], workers: WorkerThreads
) -> None:
    before = int(time.time() * 1000)
    s = client.set_schedule(queue, queue, {"report": "daily"}, every_ms=1_000, kind="report", priority=3)
    assert s.every_ms == 1_000 and s.cron is None and s.missed == "skip" and not s.paused
    assert s.task.queue == queue and s.task.kind == "report" and s.task.payload == {"report": "daily"}
    assert s.next_ms is not None and s.next_ms >= before + 1_000
    ran: list[dict[str, str]] = []
    worker = make_worker()

    @worker.task(kind="report")
    def report(payload: dict[str, str]) -> str:
        ran.append(payload)
        return "done"

    workers.start(worker)
    fired = _wait_fired(client, queue, 2)
    assert fired.last_run_ms is not None and fired.last_task_id is not None and fired.last_error is None
    task = client.wait(fired.last_task_id, timeout=30)
    assert task.state == "succeeded" and task.result == "done" and task.priority == 3
    assert task.idempotency_key == f"schedule:{queue}:{fired.last_run_ms}"
    # Due times lie on the interval's grid from the time it was set, never before it is due.
    assert (fired.last_run_ms - fired.set_ms) % 1_000 == 0 and task.created_ms >= fired.last_run_ms
    assert ran and all(p == {"report": "daily"} for p in ran)

    client.delete_schedule(queue)
    assert queue not in [x.name for x in client.schedules()]
    with pytest.raises(minion.NotFound):
        client.schedule(queue)
    assert client.get(fired.last_task_id).state == "succeeded"


def test_cron_in_a_time_zone_paused_and_catch_up(client: minion.Client, queue: str) -> None:
    s = client.set_schedule(queue, queue, cron="0 30 9 * * Mon-Fri", timezone="Europe/Berlin", catch_up=5, paused=True)
    assert s.cron == "0 30 9 * * Mon-Fri" and s.timezone == "Europe/Berlin"
    assert s.missed == "catch_up" and s.catch_up == 5 and s.paused and s.next_ms is None
    resumed = client.set_schedule(queue, queue, cron="0 30 9 * * Mon-Fri", timezone="Europe/Berlin")
    assert not resumed.paused and resumed.next_ms is not None and resumed.missed == "skip"
    # 09:30 in Berlin is 07:30 or 08:30 UTC, on a weekday.
    due = time.gmtime(resumed.next_ms / 1000)
    assert (due.tm_hour, due.tm_min, due.tm_sec) in [(7, 30, 0), (8, 30, 0)] and due.tm_wday < 5
    assert queue in [x.name for x in client.schedules()]
    client.delete_schedule(queue)


@pytest.mark.parametrize(
    "fields",
    [
        {"cron": "not a cron"},
        {"cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"cron": "* * * * *", "every_ms": 60_000},
        {},
        {"every_ms": 10},
        {"every_ms": 60_000, "catch_up": 0},
    ],
)
def test_bad_definitions_are_refused_and_change_nothing(client: minion.Client, queue: str, fields: dict) -> None:
    with pytest.raises(minion.InvalidRequest):
        client.set_schedule(queue, queue, **fields)
    with pytest.raises(minion.NotFound):
        client.schedule(queue)


async def test_the_async_client_sets_lists_and_deletes(aclient: minion.AsyncClient, queue: str) -> None:
    s = await aclient.set_schedule(queue, queue, [1, 2], every_ms=3_600_000, capabilities=["gpu"], max_attempts=2)
    assert s.task.capabilities == ["gpu"] and s.task.max_attempts == 2 and s.task.payload == [1, 2]
    assert (await aclient.schedule(queue)).name == queue
    assert queue in [x.name for x in await aclient.schedules()]
    await aclient.delete_schedule(queue)
    with pytest.raises(minion.NotFound):
        await aclient.delete_schedule(queue)
