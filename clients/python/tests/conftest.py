"""Fixtures: real `minion serve` nodes (development mode and auth on), clients, workers.

The binary is $MINION_BIN, else <repo>/target/debug/minion. Servers get fresh data directories and
free loopback ports, and are stopped at the end; a failing test's report shows their log tails.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any, Callable, Iterator

import pytest

import minion
from _server import ADMIN_TOKEN, RUNNING, MinionServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinionServer]:
    """A development-mode node (no auth) shared by the session."""
    srv = MinionServer(tmp_path_factory.mktemp("dev") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinionServer]:
    """A node with authentication on and a bootstrap admin token."""
    srv = MinionServer(
        tmp_path_factory.mktemp("auth") / "data", args=["--auth", "on", "--admin-token", ADMIN_TOKEN]
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: MinionServer) -> Iterator[minion.Client]:
    with minion.Client(server.url) as c:
        yield c


@pytest.fixture
async def aclient(server: MinionServer) -> Any:
    async with minion.AsyncClient(server.url) as c:
        yield c


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name no other test uses."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", request.node.name)[:80]
    return f"{name}-{uuid.uuid4().hex[:8]}"


class WorkerThreads:
    """Runs workers in background threads (``worker.run()``) and stops them at teardown."""

    def __init__(self) -> None:
        self.started: list[tuple[minion.Worker, threading.Thread]] = []
        self.errors: list[BaseException] = []

    def start(self, worker: minion.Worker, timeout: float = 10.0) -> minion.Worker:
        def target() -> None:
            try:
                worker.run()
            except BaseException as exc:  # surfaced at teardown
                self.errors.append(exc)

        thread = threading.Thread(target=target, name=f"worker-{worker.agent_id}", daemon=True)
        thread.start()
        self.started.append((worker, thread))
        if not worker.ready.wait(timeout):
            raise AssertionError(f"worker {worker.agent_id} did not register within {timeout}s: {self.errors}")
        return worker

    def stop_all(self) -> None:
        for worker, _ in self.started:
            worker.stop()
        for worker, thread in self.started:
            thread.join(30)
            assert not thread.is_alive(), f"worker {worker.agent_id} did not stop"
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def workers() -> Iterator[WorkerThreads]:
    threads = WorkerThreads()
    yield threads
    threads.stop_all()


@pytest.fixture
def make_worker(server: MinionServer, queue: str, workers: WorkerThreads) -> Callable[..., minion.Worker]:
    """``make_worker(**kwargs)``: a Worker on the dev server and the test's queue (not started)."""

    def make(**kwargs: Any) -> minion.Worker:
        kwargs.setdefault("queues", [queue])
        kwargs.setdefault("handle_signals", False)
        kwargs.setdefault("claim_wait_ms", 2000)
        kwargs.setdefault("drain_grace", 5)
        return minion.Worker(server.url, **kwargs)

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in RUNNING:
            report.sections.append((f"minion serve log ({srv.url}, last lines)", srv.log_tail()))
