"""Server-Sent Events: an incremental parser and the bookkeeping of a resumable Minion stream.

The parser follows the WHATWG rules that matter here: ``field: value`` lines, ``:`` comments,
``data`` lines joined with newlines, a blank line ending an event, an event without data
dispatching nothing, and ``id`` persisting as the stream's last event id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Optional, Union

from .models import Event

__all__ = ["SSEMessage", "SSEParser", "StreamState", "HEARTBEAT_SILENCE_S"]

#: The server sends a ``heartbeat`` event after this long without anything else.
HEARTBEAT_SILENCE_S = 15.0

# The events that end a task's stream, and those the server sends whatever the filter.
_FINAL_EVENTS = ("succeeded", "dead", "cancelled", "rejected")
_ALWAYS_SENT = frozenset({"heartbeat", "compacted"})


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched Server-Sent Event."""

    event: str
    data: str
    id: Optional[str]


class SSEParser:
    """Feed it lines (without their line terminator); it returns an :class:`SSEMessage` at each
    blank line that ends an event with data."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: Optional[str] = None
        self.last_id: Optional[str] = None

    def feed(self, line: str) -> Optional[SSEMessage]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_id = value
        # "retry" and unknown fields are ignored.
        return None

    def feed_all(self, lines: Iterable[str]) -> list[SSEMessage]:
        out = []
        for line in lines:
            msg = self.feed(line)
            if msg is not None:
                out.append(msg)
        return out

    def _dispatch(self) -> Optional[SSEMessage]:
        event, data, ident = self._event, self._data, self._id
        self._event, self._data, self._id = "", [], None
        if not data:
            return None
        return SSEMessage(event or "message", "\n".join(data), ident)


class StreamState:
    """What a resumable stream remembers across reconnections: where it is (``last_event_id``),
    the progress numbers already seen per task (a resumed task stream resends its history), and
    whether a task stream has reached a final state.

    A task stream filtered by ``types`` still asks the server for the final events (the server
    ends a task stream only on a final event that passes its filter) and drops those left out of
    ``types`` itself, after noting that the stream is done."""

    def __init__(
        self,
        *,
        task_id: Optional[int] = None,
        queue: Optional[str] = None,
        types: Union[str, Iterable[str], None] = None,
        last_event_id: Union[int, str, None] = None,
        heartbeats: bool = False,
    ) -> None:
        if task_id is not None and queue is not None:
            raise ValueError("give task_id or queue, not both")
        self.task_id = task_id
        self.queue = queue
        self.types = types if isinstance(types, str) or types is None else ",".join(types)
        #: The names the caller asked for, when the SDK filters some itself (task streams).
        self._wanted: Optional[frozenset[str]] = None
        self._server_types = self.types
        if self.types and task_id is not None:
            names = [t.strip() for t in self.types.split(",") if t.strip()]
            self._wanted = frozenset(names)
            self._server_types = ",".join(names + [f for f in _FINAL_EVENTS if f not in self._wanted])
        self.last_event_id: Optional[str] = str(last_event_id) if last_event_id is not None else None
        self.heartbeats = heartbeats
        self.done = False
        self._seen_seq: dict[int, int] = {}

    @property
    def path(self) -> str:
        return f"/v1/tasks/{int(self.task_id)}/events" if self.task_id is not None else "/v1/events"

    def params(self) -> dict[str, str]:
        params = {}
        if self.queue is not None:
            params["queue"] = self.queue
        if self._server_types:
            params["types"] = self._server_types
        return params

    def headers(self) -> dict[str, str]:
        h = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if self.last_event_id is not None:
            h["last-event-id"] = self.last_event_id
        return h

    def accept(self, msg: SSEMessage) -> Optional[Event]:
        """Turn a message into an :class:`Event`, or ``None`` when it is to be skipped (a
        heartbeat unless asked for, or progress already seen)."""
        if msg.id is not None:
            self.last_event_id = msg.id
        try:
            data = json.loads(msg.data) if msg.data else {}
        except ValueError:
            data = {"message": msg.data}
        if not isinstance(data, dict):
            data = {"message": msg.data}
        data.pop("type", None)
        data.pop("id", None)
        event = Event.model_validate({**data, "type": msg.event, "id": _int_or_none(msg.id)})
        if event.type == "heartbeat" and not self.heartbeats:
            return None
        if event.type == "progress" and event.seq is not None and event.task_id is not None:
            seen = self._seen_seq.get(event.task_id)
            if seen is not None and event.seq <= seen:
                return None
            if self.task_id is not None:
                # Only a task stream resends history; on /v1/events the map would grow unbounded.
                self._seen_seq[event.task_id] = event.seq
        if self.task_id is not None and event.is_final:
            self.done = True
        if self._wanted is not None and event.type not in self._wanted and event.type not in _ALWAYS_SENT:
            return None  # asked for only to know when the task stream ends
        return event


def _int_or_none(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
