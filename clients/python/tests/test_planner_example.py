"""The multi-agent example runs against the real server, and docs/python.md shows it verbatim."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import minion
from _server import REPO, MinionServer

EXAMPLE = REPO / "clients" / "python" / "examples" / "planner.py"
DOC = REPO / "docs" / "python.md"


def test_planner_fans_out_and_combines(server: MinionServer, client: minion.Client) -> None:
    prefix = f"plan{uuid.uuid4().hex[:6]}"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--server", server.url, "--prefix", prefix, "tidal energy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["topic"] == "tidal energy"
    sections = report["sections"]
    assert [s["specialist"] for s in sections] == ["research", "outline", "review"]
    for s, cap in zip(sections, ["web", "writing", "critique"]):
        assert s["text"].startswith(f"{s['specialist']} of 'tidal energy' by ")
        assert s["text"].endswith(f"(capability {cap})")
    assert len({s["text"].split(" by ")[1] for s in sections}) == 3, "three different specialist agents"

    [plan] = client.list_tasks(queue=f"{prefix}.planner").tasks
    assert plan.state == "succeeded" and plan.result == report
    subtasks = client.list_tasks(queue=f"{prefix}.specialists").tasks
    assert [t.id for t in subtasks] == [s["task_id"] for s in sections]
    assert [t.idempotency_key for t in subtasks] == [f"plan-{plan.id}-{k}" for k in ("research", "outline", "review")]
    assert all(t.state == "succeeded" and len(t.attempts) == 1 for t in subtasks)
    # A retried planner attempt would find its sub-tasks instead of creating new ones.
    again = client.submit_many(
        [{"queue": t.queue, "kind": t.kind, "payload": t.payload, "idempotency_key": t.idempotency_key} for t in subtasks]
    )
    assert [(a.id, a.duplicate) for a in again] == [(t.id, True) for t in subtasks]


def test_docs_show_the_example_verbatim() -> None:
    doc = DOC.read_text()
    match = re.search(r"<!-- examples/planner\.py -->\n```python\n(.*?)```\n", doc, re.S)
    assert match, "docs/python.md includes clients/python/examples/planner.py"
    assert match.group(1) == EXAMPLE.read_text(), "docs/python.md mirrors examples/planner.py exactly"
