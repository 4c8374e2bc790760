"""A worker process for the drain tests: `python sigterm_worker.py SERVER QUEUE AGENT_ID [HEARTBEAT_S]`.

Its handler of kind "work" announces the task on stdout, works for 2 s, and returns; the plain
`def` handler of kind "stuck" announces it and then sleeps for an hour, never looking at its
context. The worker drains on SIGTERM like any `worker.run()`.
"""

import asyncio
import logging
import sys
import time

import minion

server, queue, agent_id = sys.argv[1:4]
heartbeat = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
worker = minion.Worker(
    server, queues=[queue], agent_id=agent_id, claim_wait_ms=5000, drain_grace=20, heartbeat_interval=heartbeat
)


@worker.task(kind="work")
async def work(payload: dict, ctx: minion.Context) -> dict:
    print(f"started {ctx.task_id}", flush=True)
    await asyncio.sleep(2)
    print(f"finished {ctx.task_id}", flush=True)
    return {"worked_on": payload}


@worker.task(kind="stuck")
def stuck(payload: dict, ctx: minion.SyncContext) -> None:
    print(f"stuck {ctx.task_id}", flush=True)
    time.sleep(3600)


print("ready", flush=True)
worker.run()
print("exited", flush=True)
