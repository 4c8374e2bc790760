"""Event streams against real nodes: task streams, filters, resumption, reconnection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

import minion
from _server import MinionServer
from _streams import Collector


def _lease(client: minion.Client, queue: str) -> minion.Task:
    [task] = client.claim(f"ev-{queue}"[:100], [queue], wait_ms=3000)
    assert task.lease is not None
    return task


def test_task_stream_of_a_finished_task_replays_and_ends(client: minion.Client, queue: str) -> None:
    tid = client.submit(queue, None, kind="done").id
    task = _lease(client, queue)
    token = task.lease.token  # type: ignore[union-attr]
    client.progress(tid, token, 30, "a")
    client.progress(tid, token, None, "b")
    client.complete(tid, token, {"r": 1})
    coll = Collector(client.events(task_id=tid))
    try:
        events = coll.until_end(timeout=5)
    finally:
        coll.close()
    stream = coll.stream
    assert [(e.type, e.seq, e.percent, e.message) for e in events[:2]] == [
        ("progress", 0, 30, "a"),
        ("progress", 1, None, "b"),
    ]
    last = events[-1]
    assert (last.type, last.state, last.result, last.kind, last.attempt) == ("succeeded", "succeeded", {"r": 1}, "done", 1)
    assert last.id is not None and stream.last_event_id == last.id


def test_task_stream_follows_a_live_task(client: minion.Client, queue: str) -> None:
    tid = client.submit(queue, None).id
    coll = Collector(client.events(task_id=tid))
    try:
        first = coll.next_matching(lambda e: True)
        assert first.type == "ready" and first.task_id == tid
        task = _lease(client, queue)
        assert coll.next_matching(lambda e: True).type == "leased"
        client.progress(tid, task.lease.token, 50, "half")  # type: ignore[union-attr]
        ev = coll.next_matching(lambda e: True)
        assert (ev.type, ev.percent, ev.message, ev.seq) == ("progress", 50, "half", 0)
        client.cancel(tid, "enough")
        end = coll.next_matching(lambda e: True)
        assert (end.type, end.error) == ("cancelled", "enough")
        coll.thread.join(5)
        assert not coll.thread.is_alive(), "a task stream ends after a final state"
    finally:
        coll.close()


@pytest.mark.parametrize("final", ["succeeded", "cancelled"])
def test_task_stream_filtered_without_final_events_still_ends(client: minion.Client, queue: str, final: str) -> None:
    tid = client.submit(queue, None).id
    task = _lease(client, queue)
    token = task.lease.token  # type: ignore[union-attr]
    coll = Collector(client.events(task_id=tid, types=["progress"]))
    try:
        assert coll.stream.wait_connected(10)
        client.progress(tid, token, 40, "working")
        if final == "succeeded":
            client.complete(tid, token, "r")
        else:
            client.cancel(tid, "enough")
        events = coll.until_end(timeout=10)
    finally:
        coll.close()
    assert [(e.type, e.percent, e.message) for e in events] == [("progress", 40, "working")]
    assert coll.stream.last_event_id is not None and coll.stream.last_event_id > 0


def test_queue_stream_with_type_filter(client: minion.Client, queue: str) -> None:
    coll = Collector(client.events(queue=queue, types=["submitted", "succeeded"]))
    try:
        assert coll.stream.wait_connected(10)  # live-only without last_event_id: connect first
        client.submit(queue + "-other", None)  # another queue: filtered out
        tid = client.submit(queue, {"x": 1}).id
        ev = coll.next_matching(lambda e: True)
        assert (ev.type, ev.task_id, ev.queue, ev.state) == ("submitted", tid, queue, "ready")
        task = _lease(client, queue)
        client.complete(tid, task.lease.token, 42)  # type: ignore[union-attr]
        ev = coll.next_matching(lambda e: True)
        assert (ev.type, ev.result) == ("succeeded", 42)  # "leased" was filtered out
    finally:
        coll.close()


def test_resume_with_last_event_id(client: minion.Client, queue: str) -> None:
    coll = Collector(client.events(queue=queue))
    try:
        assert coll.stream.wait_connected(10)
        a = client.submit(queue, "a").id
        seen_a = coll.next_matching(lambda e: e.task_id == a)
        assert seen_a.id is not None
        position = coll.stream.last_event_id
        assert position == seen_a.id
    finally:
        coll.close()
    b = client.submit(queue, "b").id
    c = client.submit(queue, "c").id
    resumed = Collector(client.events(queue=queue, last_event_id=position))
    try:
        got = [resumed.next_matching(lambda e: True) for _ in range(2)]
    finally:
        resumed.close()
    assert [e.task_id for e in got] == [b, c], "resuming sends what happened after the position only"
    assert all(e.state == "ready" for e in got)


def test_unknown_task_stream_raises(client: minion.Client) -> None:
    for stream, error in ((client.events(task_id=999_999_999), minion.NotFound),
                          (client.events(types="bogus"), minion.InvalidRequest)):
        coll = Collector(stream)
        try:
            with pytest.raises(error):
                coll.next_matching(lambda e: True, timeout=5)
        finally:
            coll.close()


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[MinionServer]:
    srv = MinionServer(tmp_path / "data").start()
    yield srv
    srv.stop()


def test_streams_reconnect_across_a_node_restart(private_server: MinionServer) -> None:
    """The node shuts down (ending every stream) and comes back: the streams reconnect with
    Last-Event-ID, miss nothing, and repeat nothing."""
    srv = private_server
    q = "restart"
    client = minion.Client(srv.url, retries=8)
    tid_t = client.submit(q, None, kind="long").id
    [task] = client.claim("restarter", [q], wait_ms=2000)
    assert task.lease is not None and task.id == tid_t
    token = task.lease.token
    client.progress(tid_t, token, 10, "p0")
    client.progress(tid_t, token, 20, "p1")

    task_stream = Collector(client.events(task_id=tid_t))
    queue_stream = Collector(client.events(queue=q))
    try:
        assert [task_stream.next_matching(lambda e: e.type == "progress").seq for _ in range(2)] == [0, 1]
        assert queue_stream.stream.wait_connected(10)
        a = client.submit(q, "a").id
        assert queue_stream.next_matching(lambda e: e.task_id == a).type == "submitted"

        mark = len(queue_stream.seen)
        srv.stop()
        srv.start()

        # Live ("submitted") or caught up from the change feed after the reconnection ("ready").
        b = client.submit(q, "b").id
        assert queue_stream.next_matching(lambda e: e.task_id == b, timeout=20).type in ("submitted", "ready")
        client.progress(tid_t, token, 30, "p2")
        client.complete(tid_t, token, "ok")
        rest = []
        while True:
            ev = task_stream.next_matching(lambda e: True, timeout=20)
            rest.append(ev)
            if ev.is_final:
                break
        progress = [(e.seq, e.message) for e in rest if e.type == "progress"]
        assert progress == [(2, "p2")], "progress already seen is not yielded again"
        assert rest[-1].type == "succeeded"
        assert queue_stream.next_matching(lambda e: e.type == "succeeded", timeout=20).task_id == tid_t
        queue_stream.drain()
        after_restart = queue_stream.seen[mark:]
        assert [e.task_id for e in after_restart if e.task_id in (a, b)] == [b], (
            "nothing seen before the restart comes again, nothing after it is missed"
        )
    finally:
        task_stream.close()
        queue_stream.close()
        client.close()


def test_resumed_task_stream_drops_progress_already_seen(server: MinionServer, client: minion.Client, queue: str) -> None:
    """The connection drops while the node stays up and the task moves on; the resumed task
    stream resends the task's progress history, and the SDK yields only what is new."""
    from _proxy import CuttableProxy

    proxy = CuttableProxy(server.port)
    tid = client.submit(queue, None).id
    task = _lease(client, queue)
    token = task.lease.token  # type: ignore[union-attr]
    client.progress(tid, token, 10, "p0")
    via_proxy = minion.Client(proxy.url)
    coll = Collector(via_proxy.events(task_id=tid))
    try:
        assert [(e.type, e.seq) for e in (coll.next_matching(lambda e: True) for _ in range(2))] == [
            ("progress", 0),
            ("leased", None),
        ]
        client.progress(tid, token, 20, "p1")
        assert coll.next_matching(lambda e: True).seq == 1
        position = coll.stream.last_event_id

        proxy.blocked = True
        proxy.cut()
        deadline = time.monotonic() + 5
        while coll.stream.connected:
            assert time.monotonic() < deadline, "the stream noticed the cut"
            time.sleep(0.02)
        client.progress(tid, token, 30, "p2")  # happens while the stream is away
        proxy.blocked = False

        ev = coll.next_matching(lambda e: True, timeout=20)
        assert (ev.type, ev.seq, ev.message) == ("progress", 2, "p2"), f"only the new report, got {ev}"
        assert coll.next_matching(lambda e: True).type == "leased"  # the state, as it is now
        assert coll.stream.last_event_id is not None and coll.stream.last_event_id > (position or 0)
        client.complete(tid, token, None)
        assert coll.next_matching(lambda e: True).type == "succeeded"
    finally:
        coll.close()
        via_proxy.close()
        proxy.close()
