"""A bounded way to read event streams in tests: a stream read in a thread, with timeouts."""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from typing import Callable

import minion


class Collector:
    """Iterates a stream in a thread, handing events over through a queue."""

    def __init__(self, stream: minion.EventStream) -> None:
        self.stream = stream
        self.events: "queue_mod.Queue[object]" = queue_mod.Queue()
        #: Every event taken from the stream so far, matching or skipped.
        self.seen: list[minion.Event] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.stream:
                self.events.put(ev)
        except BaseException as exc:
            self.events.put(exc)
        self.events.put(None)

    def next_matching(self, pred: Callable[[minion.Event], bool], timeout: float = 15.0) -> minion.Event:
        deadline = time.monotonic() + timeout
        while True:
            item = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            if isinstance(item, BaseException):
                raise item
            if item is None:
                raise AssertionError("the stream ended")
            assert isinstance(item, minion.Event)
            self.seen.append(item)
            if pred(item):
                return item

    def until_end(self, timeout: float = 15.0) -> list[minion.Event]:
        """Every event until the stream ends by itself (fails if it does not within ``timeout``)."""
        out: list[minion.Event] = []
        deadline = time.monotonic() + timeout
        while True:
            item = self.events.get(timeout=max(deadline - time.monotonic(), 0.01))
            if isinstance(item, BaseException):
                raise item
            if item is None:
                return out
            assert isinstance(item, minion.Event)
            self.seen.append(item)
            out.append(item)

    def drain(self) -> list[minion.Event]:
        out = []
        while True:
            try:
                item = self.events.get_nowait()
            except queue_mod.Empty:
                return out
            if isinstance(item, minion.Event):
                self.seen.append(item)
                out.append(item)

    def close(self) -> None:
        self.stream.close()
        self.thread.join(10)
