"""A worker process for the drain test: `python sigterm_worker.py SERVER QUEUE AGENT_ID`.

Its one handler announces the task on stdout, works for 2 s, and returns. The worker drains on
SIGTERM like any `worker.run()`.
"""

import asyncio
import logging
import sys

import minion

server, queue, agent_id = sys.argv[1:4]
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
worker = minion.Worker(server, queues=[queue], agent_id=agent_id, claim_wait_ms=5000, drain_grace=20)


@worker.task(kind="work")
async def work(payload: dict, ctx: minion.Context) -> dict:
    print(f"started {ctx.task_id}", flush=True)
    await asyncio.sleep(2)
    print(f"finished {ctx.task_id}", flush=True)
    return {"worked_on": payload}


print("ready", flush=True)
worker.run()
print("exited", flush=True)
