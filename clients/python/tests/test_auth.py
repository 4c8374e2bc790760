"""Authentication and authorisation against a node with --auth on."""

from __future__ import annotations

from typing import Iterator

import pytest

import minion
from _server import ADMIN_TOKEN, MinionServer
from _streams import Collector
from conftest import WorkerThreads


@pytest.fixture(scope="module")
def admin(auth_server: MinionServer) -> Iterator[minion.Client]:
    with minion.Client(auth_server.url, token=ADMIN_TOKEN) as c:
        yield c


def first_event(stream: minion.EventStream) -> minion.Event:
    coll = Collector(stream)
    try:
        return coll.next_matching(lambda e: True, timeout=5)
    finally:
        coll.close()


def _token(admin: minion.Client, role: str, **kw: object) -> str:
    tok = admin.create_token(f"{role}-test", role, **kw)  # type: ignore[arg-type]
    assert tok.role == role and tok.token and tok.active
    assert not tok.model_extra, f"Token declares every field the server sends: {tok.model_extra}"
    return tok.token


def test_no_token_or_a_wrong_one_is_unauthorized(auth_server: MinionServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINION_TOKEN", raising=False)
    with minion.Client(auth_server.url) as anonymous:
        with pytest.raises(minion.Unauthorized) as err:
            anonymous.submit("q", 1)
        assert (err.value.status, err.value.code) == (401, "unauthorized")
    with minion.Client(auth_server.url, token="not-a-real-token") as wrong:
        with pytest.raises(minion.Unauthorized):
            wrong.get(1)
        with pytest.raises(minion.Unauthorized):
            first_event(wrong.events(queue="q"))


def test_roles_and_queue_patterns(admin: minion.Client, auth_server: MinionServer) -> None:
    reader = minion.Client(auth_server.url, token=_token(admin, "reader"))
    producer = minion.Client(auth_server.url, token=_token(admin, "producer", queues=["orders.*"]))
    try:
        with pytest.raises(minion.Forbidden) as err:
            reader.submit("orders.eu", {"n": 1})
        assert (err.value.status, err.value.code) == (403, "forbidden")
        me = producer.whoami()
        assert (me.auth, me.role, me.queues, me.deny) == (True, "producer", ["orders.*"], [])
        assert reader.whoami().role == "reader"
        tid = producer.submit("orders.eu", {"n": 1}).id
        assert reader.get(tid).queue == "orders.eu"  # a reader may read
        with pytest.raises(minion.Forbidden):
            producer.submit("billing", {"n": 2})  # outside its queue patterns
        with pytest.raises(minion.Forbidden):
            producer.cancel(tid)  # not a producer's call
        with pytest.raises(minion.Forbidden):
            first_event(producer.events(queue="billing"))
    finally:
        reader.close()
        producer.close()


def test_token_from_the_environment_drives_a_worker(
    admin: minion.Client, auth_server: MinionServer, monkeypatch: pytest.MonkeyPatch, workers: WorkerThreads
) -> None:
    monkeypatch.setenv("MINION_TOKEN", _token(admin, "worker", queues=["jobs"]))
    worker = minion.Worker(auth_server.url, queues=["jobs"], handle_signals=False, claim_wait_ms=1000)
    assert worker.config.token is not None

    @worker.task(kind="square")
    def square(payload: int) -> int:
        return payload * payload

    workers.start(worker)
    producer = minion.Client(auth_server.url, token=_token(admin, "producer", queues=["jobs"]))
    try:
        task = producer.wait(producer.submit("jobs", 7, kind="square").id, timeout=20)
        assert task.state == "succeeded" and task.result == 49
    finally:
        producer.close()


def test_revoked_token_stops_working(admin: minion.Client, auth_server: MinionServer) -> None:
    tok = admin.create_token("short-lived", "reader")
    assert tok.token is not None
    admin.submit("revocation-check", None)
    with minion.Client(auth_server.url, token=tok.token) as c:
        assert "revocation-check" in [q.queue for q in c.queues()], "the token works: it reads the queues"
        admin.revoke_token(tok.id)
        with pytest.raises(minion.Unauthorized):
            c.queues()
