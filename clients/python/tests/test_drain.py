"""SIGTERM drains a worker process: nothing new is claimed, the running task completes, the agent
deregisters and the process exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

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
