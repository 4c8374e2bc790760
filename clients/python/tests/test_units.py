"""Pure pieces that need no server (fake transports at most): SSE parsing, error mapping,
message splitting, models, reconnection pacing."""

from __future__ import annotations

import pickle
import time
from typing import Iterator, Optional

import httpx
import pytest

import minion
from minion._handlers import describe_error, split_utf8, truncate_utf8
from minion._transport import resolve_servers
from minion.errors import error_for
from minion.sse import SSEParser, StreamState


def test_sse_parser_follows_the_spec() -> None:
    p = SSEParser()
    lines = [
        ": a comment",
        "event: progress",
        'data: {"task_id": 1,',
        'data:  "seq": 0}',
        "",
        "",  # a blank line with nothing pending dispatches nothing
        "event: heartbeat",
        "id: 33",
        "data: {}",
        "",
        "id: 34",
        "",  # an id alone dispatches nothing but moves last_id
        "data: plain",
        "retry: 100",
        "",
    ]
    msgs = p.feed_all(lines)
    assert [(m.event, m.data, m.id) for m in msgs] == [
        ("progress", '{"task_id": 1,\n "seq": 0}', None),
        ("heartbeat", "{}", "33"),
        ("message", "plain", None),
    ]
    assert p.last_id == "34"


def test_stream_state_tracks_position_and_drops_repeated_progress() -> None:
    st = StreamState(task_id=5, types=["progress", "succeeded"], last_event_id=10)
    # A task stream always asks for the final events: the server ends it only on one it sends.
    assert st.path == "/v1/tasks/5/events" and st.params() == {"types": "progress,succeeded,dead,cancelled,rejected"}
    assert StreamState(queue="q", types="succeeded").params() == {"queue": "q", "types": "succeeded"}
    assert st.headers()["last-event-id"] == "10"
    p = SSEParser()

    def feed(*lines: str) -> minion.Event | None:
        [msg] = p.feed_all([*lines, ""])
        return st.accept(msg)

    ev = feed("event: progress", 'data: {"task_id":5,"queue":"q","kind":"k","at_ms":1,"attempt":1,"seq":0,"percent":5}')
    assert ev is not None and ev.seq == 0 and ev.percent == 5
    assert feed("event: progress", 'data: {"task_id":5,"queue":"q","kind":"k","at_ms":1,"attempt":1,"seq":0}') is None
    assert feed("event: heartbeat", "id: 12", "data: {}") is None and st.last_event_id == "12"
    assert not st.done
    end = feed("event: succeeded", "id: 13", 'data: {"task_id":5,"queue":"q","kind":"k","at_ms":2,"attempt":1,"state":"succeeded","result":[1]}')
    assert end is not None and end.is_final and end.id == 13 and end.state is minion.TaskState.SUCCEEDED
    assert st.done and st.headers()["last-event-id"] == "13"
    # A final event left out of ``types`` ends the stream without being yielded.
    only_progress = StreamState(task_id=5, types="progress")
    [msg] = SSEParser().feed_all(["event: dead", "id: 20", 'data: {"task_id":5,"queue":"q","kind":"k","at_ms":2,"attempt":1}', ""])
    assert only_progress.accept(msg) is None and only_progress.done and only_progress.last_event_id == "20"
    with pytest.raises(ValueError):
        StreamState(task_id=1, queue="q")


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (400, "invalid_json", minion.InvalidJson),
        (400, "invalid_request", minion.InvalidRequest),
        (401, "unauthorized", minion.Unauthorized),
        (403, "forbidden", minion.Forbidden),
        (404, "not_found", minion.NotFound),
        (405, "method_not_allowed", minion.MethodNotAllowed),
        (409, "stale_lease", minion.StaleLease),
        (409, "wrong_state", minion.WrongState),
        (409, "stale_incarnation", minion.StaleIncarnation),
        (409, "conflict", minion.Conflict),
        (410, "compacted", minion.Compacted),
        (413, "payload_too_large", minion.PayloadTooLarge),
        (415, "unsupported_media_type", minion.UnsupportedMediaType),
        (429, "rate_limited", minion.RateLimited),
        (500, "internal", minion.InternalError),
        (500, "storage", minion.StorageError),
        (503, "shutting_down", minion.ShuttingDown),
        (503, "no_leader", minion.NoLeader),
        (503, "not_leader", minion.NotLeader),
        (503, "commit_timeout", minion.CommitTimeout),
        (503, "too_many_connections", minion.TooManyConnections),
        (503, "too_many_streams", minion.TooManyStreams),
        (503, "unavailable", minion.Unavailable),
        (409, "some_new_code", minion.Conflict),  # unknown codes fall back on the status
        (418, "teapot", minion.MinionError),
    ],
)
def test_one_exception_class_per_code(status: int, code: str, cls: type) -> None:
    err = error_for(status, {"error": {"code": code, "message": "m"}}, retry_after=2.0)
    assert type(err) is cls and isinstance(err, minion.MinionError)
    assert (err.status, err.code, err.message, err.retry_after) == (status, code, "m", 2.0)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and (again.status, again.code, again.message) == (status, code, "m")


def test_errors_without_a_json_body() -> None:
    err = error_for(502, "Bad Gateway\n")
    # A proxy's 502/504: the node may or may not have done it, like a 503 ``unavailable``.
    assert type(err) is minion.Unavailable and err.status == 502 and err.message == "Bad Gateway"
    assert err.code == "http_502"
    timeout = error_for(504, None)
    assert type(timeout) is minion.Unavailable and timeout.code == "http_504"
    assert type(error_for(503, None)) is minion.Unavailable
    assert issubclass(minion.StorageError, minion.InternalError) and issubclass(minion.ShuttingDown, minion.Unavailable)


def test_shutting_down_is_sent_to_the_next_node_whatever_the_call() -> None:
    """``shutting_down`` means nothing was done, like ``not_leader``: even a claim moves on."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        if request.url.host == "down":
            return httpx.Response(503, json={"error": {"code": "shutting_down", "message": "bye"}})
        return httpx.Response(200, json={"tasks": []})

    with minion.Client(["http://down", "http://up"], transport=httpx.MockTransport(handler)) as c:
        assert c.claim("a", ["q"]) == []
    assert calls == ["down", "up"]


class _Lines(httpx.SyncByteStream):
    """A response body that yields ``chunks`` (sleeping at ``None``), then fails like a dropped
    connection unless ``end`` is set."""

    def __init__(self, chunks: list[Optional[bytes]], end: bool = False) -> None:
        self.chunks, self.end = chunks, end

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            if chunk is None:
                time.sleep(0.3)
            else:
                yield chunk
        if not self.end:
            raise httpx.ReadError("connection dropped")


def test_reconnect_timeout_counts_from_the_last_sign_of_life() -> None:
    """A stream that reconnected and then stays quiet but for keep-alive comments (longer than
    ``reconnect_timeout``) is not given up at its next drop: the timer restarts on every
    successful connection and every line read."""
    final = b'event: succeeded\nid: 9\ndata: {"task_id":1,"queue":"q","kind":"k","at_ms":2,"attempt":1}\n\n'
    bodies = [
        _Lines([b'event: ready\nid: 5\ndata: {"task_id":1,"queue":"q","kind":"k","at_ms":1,"attempt":0}\n\n']),
        _Lines([b":\n", None, b":\n", None, b":\n", None]),  # 0.9 s of keep-alives, then a drop
        _Lines([final], end=True),
    ]
    seen_ids: list[Optional[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_ids.append(request.headers.get("last-event-id"))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=bodies.pop(0))

    with minion.Client("http://node", transport=httpx.MockTransport(handler)) as c:
        events = list(c.events(task_id=1, reconnect_timeout=0.5))
    assert [(e.type, e.id) for e in events] == [("ready", 5), ("succeeded", 9)]
    assert seen_ids == [None, "5", "5"] and not bodies


def test_utf8_splitting() -> None:
    assert split_utf8("", 10) == [] and split_utf8("abc", 10) == ["abc"]
    text = "aé" * 3000 + "€" * 1000
    pieces = split_utf8(text, 4096)
    assert "".join(pieces) == text and all(len(p.encode()) <= 4096 for p in pieces)
    assert len(truncate_utf8("x" * 20000, 16384).encode()) <= 16384
    assert describe_error(KeyError()) == "KeyError" and describe_error(ValueError("v")) == "ValueError: v"


def test_server_lists() -> None:
    assert resolve_servers("a:1, http://b:2/ ,https://c") == ("http://a:1", "http://b:2", "https://c")
    assert resolve_servers(["http://x:1"]) == ("http://x:1",)
    with pytest.raises(ValueError):
        resolve_servers(" , ")


def test_models_keep_unknown_fields() -> None:
    t = minion.Task.model_validate(
        {"id": 1, "queue": "q", "state": "ready", "max_attempts": 3, "attempt_limit": 3, "lease_ms": 1,
         "created_ms": 1, "updated_ms": 1, "run_at_ms": 1, "brand_new_field": 7}
    )
    assert t.model_extra == {"brand_new_field": 7} and t.attempt == 0
    spec = minion.TaskSpec(queue="q", payload=None, kind="k")
    assert spec.to_json() == {"queue": "q", "kind": "k", "payload": None}
    with pytest.raises(ValueError):
        minion.TaskSpec(queue="q", typo=1)  # type: ignore[call-arg]
