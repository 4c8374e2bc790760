"""SIGTERM drains a worker process: nothing new is claimed, the running task completes, the agent
deregisters and the process exits 0. A second signal stops it at once, even with a handler thread
that never returns."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import minion
from _server import MinionServer

APP = Path(__file__).parent / "apps" / "sigterm_worker.py"


def _wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _agent_or_none(client: minion.Client, agent_id: str) -> minion.Agent | None:
    try:
        return client.agent(agent_id)
    except minion.NotFound:
        return None


def test_sigterm_drains_then_deregisters(server: MinionServer, client: minion.Client, queue: str) -> None:
    agent_id = f"drain-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, str(APP), server.url, queue, agent_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        _wait_for(lambda: _agent_or_none(client, agent_id) is not None, 10, "the worker registers")
        tid = client.submit(queue, {"n": 1}, kind="work").id
        assert proc.stdout.readline().strip() == f"started {tid}"
        assert client.get(tid).state == "leased"

        proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: (a := _agent_or_none(client, agent_id)) is not None and a.status == "draining", 5,
                  "the agent is draining while its task runs")
        assert client.get(tid).state == "leased", "the running task is not abandoned"
        later = client.submit(queue, {"n": 2}, kind="work").id

        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert out.split() == ["finished", str(tid), "exited"]
        done = client.get(tid)
        assert done.state == "succeeded" and done.result == {"worked_on": {"n": 1}}
        assert len(done.attempts) == 1 and done.attempts[0].agent_id == agent_id
        assert client.get(later).state == "ready", "nothing new was claimed while draining"
        assert _agent_or_none(client, agent_id) is None, "the agent deregistered"
        client.cancel(later)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def app(server: MinionServer, queue: str) -> Iterator[tuple[str, "subprocess.Popen[str]"]]:
    """The worker process with heartbeats every 0.2 s; yields its agent id and the process."""
    agent_id = f"drain-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [sys.executable, str(APP), server.url, queue, agent_id, "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield agent_id, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_after_an_outside_drain_still_drains(
    client: minion.Client, queue: str, app: tuple[str, "subprocess.Popen[str]"]
) -> None:
    """`minion pool` drains an agent, then sends SIGTERM: that is the first signal, not a second."""
    agent_id, proc = app
    _wait_for(lambda: _agent_or_none(client, agent_id) is not None, 10, "the worker registers")
    tid = client.submit(queue, {"n": 1}, kind="work").id
    assert proc.stdout is not None and proc.stdout.readline().strip() == f"started {tid}"
    client.drain_agent(agent_id)
    time.sleep(0.8)  # a few heartbeats: the worker has noticed the drain
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.split() == ["finished", str(tid), "exited"], err
    assert client.get(tid).state == "succeeded"


def test_a_second_sigterm_stops_at_once_despite_a_stuck_thread(
    client: minion.Client, queue: str, app: tuple[str, "subprocess.Popen[str]"]
) -> None:
    agent_id, proc = app
    _wait_for(lambda: _agent_or_none(client, agent_id) is not None, 10, "the worker registers")
    tid = client.submit(queue, {}, kind="stuck", max_attempts=2).id
    assert proc.stdout is not None and proc.stdout.readline().strip() == f"stuck {tid}"
    proc.send_signal(signal.SIGTERM)
    _wait_for(lambda: (a := _agent_or_none(client, agent_id)) is not None and a.status == "draining", 5,
              "the first signal drains")
    proc.send_signal(signal.SIGTERM)
    # The handler's thread sleeps for an hour: the process must not wait for it.
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out.split() == ["exited"], err
    assert _agent_or_none(client, agent_id) is None, "the agent deregistered"
    task = client.get(tid)
    assert task.state in ("failed", "ready") and task.lease is None, "its lease was released"
    assert [a.outcome.outcome for a in task.attempts if a.outcome] == ["agent_dead"]
    client.cancel(tid)
