"""What runs beside each task's handler: the lease keeper, the outcome report, and the daemon
threads that run plain ``def`` handlers (see :mod:`minion.worker`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable, Optional

from . import _ops as ops
from ._handlers import ERROR_BYTES_MAX, truncate_utf8
from ._transport import backoff
from .async_client import AsyncClient
from .context import LEASE_GONE, LeaseState
from .errors import ConnectionFailed, InvalidRequest, MinionError, PayloadTooLarge, Unavailable
from .models import Task

log = logging.getLogger("minion.worker")


async def keep_lease(
    client: AsyncClient,
    agent_id: str,
    lease: LeaseState,
    claimed_at: float,
    *,
    extend_fraction: float,
    timeout: float,
) -> None:
    """Extend the lease until cancelled. Scheduled from the lease's expiry as this agent
    knows it (an extension makes the lease run ``lease_ms`` from when it arrived, so from
    when it was sent at the earliest): each extension may take at most half the time left,
    a failed one is tried again after a tenth of the lease (0.5 s at most), and once the
    expiry passes with no extension through, the lease is lost."""
    loop = asyncio.get_running_loop()
    lease_s = max(lease.task.lease_ms / 1000, 0.01)
    lead = lease_s * (1 - extend_fraction)  # extend when this much of the lease is left
    retry_every = max(min(lease_s / 10, 0.5), 0.01)
    expires = claimed_at + lease_s
    next_try = expires - lead
    last_err: Optional[MinionError] = None
    while not lease.lost:
        delay = next_try - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = loop.time()
        if sent >= expires:
            lease.lose(f"the lease ran out: no extension went through in time (last error: {last_err})")
            return
        limit = min(timeout, (expires - sent) / 2)
        try:
            await client._run(ops.extend(lease.task.id, lease.token, quiet=True), limit)
        except LEASE_GONE as err:
            lease.lose(f"lease extension refused: {err.code}: {err.message}")
            return
        except MinionError as err:  # no node, or too slow: try again soon, while there is time
            log.warning("agent %s: task %s: extending the lease failed: %s", agent_id, lease.task.id, err)
            last_err = err
            next_try = min(loop.time() + retry_every, expires)
            continue
        expires = sent + lease_s
        next_try = expires - lead


async def report(client: AsyncClient, agent_id: str, task: Task, lease: LeaseState, outcome: str, value: Any) -> None:
    """Complete or fail; when a node fails mid-way, look at the task before sending again."""
    for attempt in range(6):
        if lease.lost:
            return
        try:
            if outcome == "complete":
                await client._run(ops.complete(task.id, lease.token, value, quiet=True))
            else:
                await client._run(ops.fail(task.id, lease.token, value, quiet=True))
            log.debug("agent %s: task %s: %s", agent_id, task.id, outcome)
            return
        except LEASE_GONE as err:
            log.warning("agent %s: task %s: could not %s, the lease is gone: %s", agent_id, task.id, outcome, err)
            return
        except (InvalidRequest, PayloadTooLarge) as err:
            if outcome != "complete":
                log.error("agent %s: task %s: fail refused: %s", agent_id, task.id, err)
                return
            outcome, value = "fail", truncate_utf8(f"the result was refused: {err.message}", ERROR_BYTES_MAX)
        except (ConnectionFailed, Unavailable) as err:
            log.warning("agent %s: task %s: reporting %s failed: %s", agent_id, task.id, outcome, err)
            await asyncio.sleep(backoff(attempt))
            try:
                current = await client.get(task.id)
            except MinionError:
                continue
            if current.lease is None or current.lease.token != lease.token:
                return  # recorded after all (or the lease is gone): nothing more to send
        except MinionError as err:
            log.error("agent %s: task %s: could not %s: %s", agent_id, task.id, outcome, err)
            return
    log.error("agent %s: task %s: gave up reporting %s", agent_id, task.id, outcome)


def in_daemon_thread(loop: asyncio.AbstractEventLoop, func: Callable[[], Any], name: str) -> "asyncio.Future[Any]":
    """Run ``func`` in a new daemon thread; its outcome settles the returned future. (A thread
    pool's threads are joined at interpreter exit: a handler that never returns would keep a
    stopped worker's process alive.)"""
    future: "asyncio.Future[Any]" = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # cancelled meanwhile: nobody waits for it any more
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            ok, value = True, func()
        except BaseException as exc:  # handed to the awaiting task, like an executor would
            ok, value = False, exc
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is closed: the worker stopped without waiting
            pass

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
