"""Multi-agent example: a planner fans a topic out to specialist agents and combines their work.

    python examples/planner.py --server http://127.0.0.1:7070 "solar power"

Three specialist agents (one Worker each) offer different capabilities; every sub-task requires
one, so only the right specialist can claim it. The planner is an agent too: its handler submits
the sub-tasks as one atomic batch whose idempotency keys derive from its own task id (a retried
planner attempt finds the same sub-tasks instead of creating more), waits for them, and returns
the combined report. The script prints that report as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Optional

from pydantic import BaseModel

import minion

# kind of sub-task -> the capability a specialist needs for it
SPECIALISTS = {"research": "web", "outline": "writing", "review": "critique"}


class Topic(BaseModel):
    topic: str


class Section(BaseModel):
    specialist: str
    task_id: int
    text: str


class Report(BaseModel):
    topic: str
    sections: list[Section]


def planner_agent(server: Optional[str], queues: dict[str, str]) -> minion.Worker:
    planner = minion.Worker(server, queues=[queues["planner"]], concurrency=4, handle_signals=False)

    @planner.task(kind="plan")
    async def plan(payload: Topic, ctx: minion.Context) -> Report:
        subtasks = [
            minion.TaskSpec(
                queue=queues["specialists"],
                kind=kind,
                payload={"topic": payload.topic},
                capabilities=[capability],
                idempotency_key=f"plan-{ctx.task_id}-{kind}",
            )
            for kind, capability in SPECIALISTS.items()
        ]
        submitted = await ctx.client.submit_many(subtasks)
        await ctx.progress(10, f"waiting for {len(submitted)} specialists")
        done = await asyncio.gather(*(ctx.client.wait(s.id, timeout=120) for s in submitted))
        sections = []
        for kind, task in zip(SPECIALISTS, done):
            if task.state != minion.TaskState.SUCCEEDED:
                raise RuntimeError(f"{kind} sub-task {task.id} ended {task.state}: {task.last_error}")
            sections.append(Section(specialist=kind, task_id=task.id, text=task.result["text"]))
        return Report(topic=payload.topic, sections=sections)

    return planner


def specialist_agent(server: Optional[str], queue: str, kind: str, capability: str) -> minion.Worker:
    agent = minion.Worker(server, queues=[queue], capabilities=[capability], handle_signals=False)

    @agent.task(kind=kind)
    async def work(payload: Topic, ctx: minion.Context) -> dict:
        await ctx.stream(f"{kind} on {payload.topic}...")
        await asyncio.sleep(0.2)  # stands in for real work: a model call, a web search, ...
        return {"text": f"{kind} of '{payload.topic}' by {ctx.agent_id} (capability {capability})"}

    return agent


async def main(server: Optional[str], topic: str, prefix: str = "example") -> Report:
    queues = {"planner": f"{prefix}.planner", "specialists": f"{prefix}.specialists"}
    agents = [planner_agent(server, queues)] + [
        specialist_agent(server, queues["specialists"], kind, cap) for kind, cap in SPECIALISTS.items()
    ]
    running = [asyncio.create_task(a.arun()) for a in agents]
    try:
        async with minion.AsyncClient(server) as client:
            submitted = await client.submit(queues["planner"], Topic(topic=topic), kind="plan")
            task = await client.wait(submitted.id, timeout=120)
        if task.state != minion.TaskState.SUCCEEDED:
            raise SystemExit(f"the plan ended {task.state}: {task.last_error}")
        return Report.model_validate(task.result)
    finally:
        for agent in agents:
            agent.stop()
        await asyncio.gather(*running)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic")
    parser.add_argument("--server", default=None, help="node URL(s); default $MINION_SERVER or 127.0.0.1:7070")
    parser.add_argument("--prefix", default="example", help="queue name prefix")
    args = parser.parse_args()
    report = asyncio.run(main(args.server, args.topic, args.prefix))
    print(json.dumps(report.model_dump(), indent=2))
