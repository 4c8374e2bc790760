"""Proxies and fake nodes for the tests: a TCP proxy in front of a real node, to cut connections
while the node stays up; an HTTP proxy that makes chosen requests fail; a fake node that answers
every request with an error."""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import httpx


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``. ``cut()`` drops every open connection;
    ``blocked = True`` makes new connections close at once (the node seems unreachable)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.blocked = False
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.blocked:
                conn.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._open += [conn, up]
            threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


class _Rule:
    """Requests matching ``method`` and ``pattern`` get ``status``/``code`` (or a dropped
    connection), ``times`` times (``None``: until cleared)."""

    def __init__(self, method: str, pattern: str, status: int, code: str, drop: bool, times: Optional[int]) -> None:
        self.method = method
        self.pattern = re.compile(pattern)
        self.status = status
        self.code = code
        self.drop = drop
        self.times = times

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self.pattern.search(path) is not None and self.times != 0


class FaultProxy:
    """An HTTP proxy in front of a real node that makes chosen requests fail.

    ``fail(method, path_regex, ...)`` answers matching requests with an error (503
    ``unavailable`` by default) or, with ``drop=True``, closes the connection without answering
    (a node crashing mid-request). Everything else is forwarded (whole bodies: no event streams).
    ``count(method, path_regex)`` tells how many matching requests reached the node.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[_Rule] = []
        self.forwarded: list[tuple[str, str, int]] = []
        self.refused: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=120.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail(
        self,
        method: str,
        pattern: str,
        *,
        status: int = 503,
        code: str = "unavailable",
        drop: bool = False,
        times: Optional[int] = None,
    ) -> None:
        with self._lock:
            self.rules.append(_Rule(method, pattern, status, code, drop, times))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def count(self, method: str, pattern: str) -> int:
        """Matching requests forwarded to the node (whatever it answered)."""
        rx = re.compile(pattern)
        with self._lock:
            return sum(1 for m, p, _ in self.forwarded if m == method and rx.search(p))

    def _rule_for(self, method: str, path: str) -> Optional[_Rule]:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    if rule.times is not None:
                        rule.times -= 1
                    self.refused.append((method, path))
                    return rule
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        rule = self._rule_for(h.command, path)
        if rule is not None and rule.drop:
            h.close_connection = True  # no answer at all
            return
        if rule is not None:
            data = json.dumps({"error": {"code": rule.code, "message": "injected by the test proxy"}}).encode()
            self._answer(h, rule.status, {"content-type": "application/json"}, data)
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        resp = self._http.request(h.command, self.upstream + h.path, headers=headers, content=body)
        with self._lock:
            self.forwarded.append((h.command, path, resp.status_code))
        keep = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS}
        self._answer(h, resp.status_code, keep, resp.content)

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


_HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive")


class FakeNode:
    """Not a node at all: answers every request with ``status`` and, when ``code`` is given, a
    Minion error body (else a plain-text body, like a proxy's error page)."""

    def __init__(self, code: Optional[str], status: int = 503) -> None:
        self.requests: list[tuple[str, str]] = []
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                node.requests.append((self.command, self.path))
                if code is not None:
                    data = json.dumps({"error": {"code": code, "message": "fake node"}}).encode()
                    ctype = "application/json"
                else:
                    data, ctype = f"{status} from a proxy\n".encode(), "text/plain"
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
