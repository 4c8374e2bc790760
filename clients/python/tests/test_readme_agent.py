"""The README's ten-line Python agent runs as written and drains on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import minion
from _server import REPO, MinionServer

README = REPO / "README.md"


def readme_agent() -> str:
    blocks = re.findall(r"```python\n(.*?)```\n", README.read_text(), re.S)
    agents = [b for b in blocks if "minion.Worker(" in b]
    assert len(agents) == 1, "the README shows one Python agent"
    return agents[0]


def test_the_readme_agent_serves_a_task(server: MinionServer, client: minion.Client, tmp_path) -> None:
    source = readme_agent()
    assert len(source.strip().splitlines()) <= 12, "ten lines, give or take the blank ones"
    assert "http://127.0.0.1:7070" in source
    script = tmp_path / "agent.py"
    script.write_text(source.replace("http://127.0.0.1:7070", server.url))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        task = client.submit("images", {"w": 256}, kind="resize")
        done = client.wait(task.id, timeout=30)
        assert done.state == "succeeded", done
        assert done.result == {"url": "s3://b/cat-256.png"}
        assert [(p.percent, p.message) for p in done.progress] == [(50, "downloaded")]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
