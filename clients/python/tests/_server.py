"""Start and stop real `minion serve` processes for the tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

import httpx

REPO = Path(__file__).resolve().parents[3]
ADMIN_TOKEN = "test-admin-token-0123456789"

#: Every server started in this session, so a failing test can show their logs.
RUNNING: list["MinionServer"] = []


def _die_with_parent() -> None:
    """Linux: the server gets SIGKILL if the test process dies without stopping it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def minion_bin() -> Path:
    path = Path(os.environ.get("MINION_BIN") or REPO / "target" / "debug" / "minion")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"no minion binary at {path}: build it (cargo build) or set MINION_BIN to a `minion` executable"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MinionServer:
    """One `minion serve` node on a free loopback port with its own data directory."""

    def __init__(self, data_dir: Path, *, args: Sequence[str] = (), port: Optional[int] = None, tls: bool = False) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.port = port or free_port()
        self.scheme = "https" if tls else "http"
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.verify: object = True

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "MinionServer":
        cmd = [
            str(minion_bin()),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--raft-listen",
            "127.0.0.1:0",
            *self.args,
        ]
        log = open(self.log_path, "ab")
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        log.close()
        if self not in RUNNING:
            RUNNING.append(self)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        verify = ssl.create_default_context(cafile=self.verify) if isinstance(self.verify, str) else True
        with httpx.Client(verify=verify, timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"minion serve exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if (
                        http.get(self.url + "/healthz").status_code == 200
                        and http.get(self.url + "/readyz").status_code == 200
                    ):
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"minion serve not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
