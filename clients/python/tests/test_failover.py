"""Several node URLs: what moves to the next node, and what is never sent twice.

A real node is always behind the last URL; the failing "nodes" are a closed port (nothing
listens) and a socket that accepts a request and drops the connection without answering, the way
a node that crashes mid-request does.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import minion
from _proxy import FakeNode
from _server import MinionServer, free_port


class DroppingNode:
    """Accepts connections, reads a request, and closes without answering."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.requests = 0
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    if conn.recv(65536):
                        self.requests += 1
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dropping() -> Iterator[DroppingNode]:
    node = DroppingNode()
    yield node
    node.close()


def test_unreachable_node_moves_to_the_next(server: MinionServer, queue: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with minion.Client([dead, server.url]) as c:
        # Not even a non-idempotent submit was delivered to the dead node: safe to send on.
        tid = c.submit(queue, 1).id
        assert c.get(tid).id == tid
    with minion.Client(f"{dead},{server.url}") as c2:
        assert c2.servers == (dead, server.url)
        [stats] = [q for q in c2.queues() if q.queue == queue]
        assert stats.ready == 1


def test_all_nodes_unreachable(queue: str) -> None:
    urls = [f"http://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with minion.Client(urls, retries=3) as c:
        with pytest.raises(minion.ConnectionFailed) as err:
            c.get(1)
    assert err.value.status == 0 and "4 attempt(s)" in err.value.message


def test_reads_move_on_after_a_dropped_connection(server: MinionServer, dropping: DroppingNode, queue: str) -> None:
    with minion.Client([dropping.url, server.url]) as c:
        tid = c.submit(queue, 1, idempotency_key="x").id
        assert c.get(tid).id == tid
    assert dropping.requests >= 1


def test_writes_without_idempotency_key_are_not_repeated(
    server: MinionServer, client: minion.Client, dropping: DroppingNode, queue: str
) -> None:
    with minion.Client([dropping.url, server.url]) as c:
        with pytest.raises(minion.ConnectionFailed) as err:
            c.submit(queue, "maybe delivered")
        assert "not idempotent" in err.value.message
        assert dropping.requests == 1
        assert client.list_tasks(queue=queue).tasks == [], "it was not sent to the next node"
        # The failed node is no longer first: the next call goes to the live one.
        assert c.submit(queue, "second").id


def test_submissions_with_a_key_are_retried_once_only(
    server: MinionServer, client: minion.Client, dropping: DroppingNode, queue: str
) -> None:
    key = f"k-{uuid.uuid4()}"
    with minion.Client([dropping.url, server.url]) as c:
        s = c.submit(queue, "exactly once", idempotency_key=key)
        batch = c.submit_many([{"queue": queue, "payload": i, "idempotency_key": f"{key}-{i}"} for i in range(2)])
    assert dropping.requests == 1
    assert [t.id for t in client.list_tasks(queue=queue).tasks] == [s.id] + [b.id for b in batch]


def test_a_503_unavailable_moves_keyed_writes_on_and_raises_for_unkeyed_ones(
    server: MinionServer, client: minion.Client, queue: str
) -> None:
    fake = FakeNode("unavailable")  # it may have done the request: only what is safe to repeat moves on
    key = f"k-{uuid.uuid4()}"
    try:
        with minion.Client([fake.url, server.url]) as c:
            batch = c.submit_many([{"queue": queue, "payload": i, "idempotency_key": f"{key}-{i}"} for i in range(2)])
        assert fake.requests == [("POST", "/v1/tasks")], "the keyed batch went to the fake node first"
        assert [client.get(b.id).payload for b in batch] == [0, 1], "then to the real one"
        with minion.Client([fake.url, server.url]) as c:
            with pytest.raises(minion.Unavailable) as err:
                c.submit(queue, "unkeyed")
        assert type(err.value) is minion.Unavailable and err.value.node == fake.url
        assert len(fake.requests) == 2
        assert [t.id for t in client.list_tasks(queue=queue).tasks] == [b.id for b in batch], "not sent on"
    finally:
        fake.close()


@pytest.mark.parametrize("code", ["not_leader", "shutting_down"])
def test_a_503_saying_nothing_was_done_moves_every_call_on(
    server: MinionServer, client: minion.Client, queue: str, code: str
) -> None:
    fake = FakeNode(code)
    try:
        with minion.Client([fake.url, server.url]) as c:
            tid = c.submit(queue, "unkeyed").id  # not idempotent, yet safe: nothing was done
        with minion.Client([fake.url, server.url]) as c:
            [task] = c.claim(f"fo-{queue}"[:100], [queue], wait_ms=2000)  # nor is a claim
        assert fake.requests == [("POST", "/v1/tasks"), ("POST", "/v1/claims")]
        assert task.id == tid and client.get(tid).payload == "unkeyed" and client.get(tid).state == "leased"
    finally:
        fake.close()


@pytest.mark.parametrize("status", [502, 504])
def test_a_proxy_error_is_unavailable(server: MinionServer, client: minion.Client, queue: str, status: int) -> None:
    fake = FakeNode(None, status=status)  # a load balancer's error page, no Minion error body
    try:
        with minion.Client([fake.url, server.url]) as c:
            with pytest.raises(minion.Unavailable) as err:
                c.submit(queue, "unkeyed")
            assert err.value.status == status
            assert c.submit(queue, "keyed", idempotency_key=f"k-{uuid.uuid4()}").id  # moved on
        assert [t.payload for t in client.list_tasks(queue=queue).tasks] == ["keyed"]
    finally:
        fake.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a private CA")
def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=test private CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1")
    (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.pem",
        "-days", "2", "-extfile", "ext.cnf")
    srv = MinionServer(tmp_path / "data", tls=True,
                       args=["--tls-cert", str(tmp_path / "node.pem"), "--tls-key", str(tmp_path / "node.key")])
    srv.verify = str(tmp_path / "ca.pem")
    srv.start()
    try:
        with minion.Client(srv.url, verify=tmp_path / "ca.pem") as c:
            tid = c.submit("tls", {"secure": True}).id
            assert c.get(tid).payload == {"secure": True}
        with minion.Client(srv.url, retries=0) as untrusting:  # system CAs do not know our CA
            with pytest.raises(minion.ConnectionFailed):
                untrusting.get(tid)
    finally:
        srv.stop()
