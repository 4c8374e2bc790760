#!/usr/bin/env bash
# Write tests/fixtures/data-layout2.tar.gz and data-layout2-tasks.json with a release of data
# layout 2 (before packed blocks; e.g. a223bf3): 300 tasks with idempotency keys, 249 succeeded,
# one dead with progress events, 50 ready. Usage: scripts/make-layout2-fixture.sh OLD_BINARY
set -euo pipefail
BIN=${1:?old minion binary}
OUT=$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures
WORK=$(mktemp -d)
PORT=7391
B=http://127.0.0.1:$PORT
"$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:$PORT --raft-listen 127.0.0.1:0 >"$WORK/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
until curl -sf $B/readyz >/dev/null; do sleep 0.2; done
post() { curl -sf "$B$1" -H 'content-type: application/json' -d "$2"; }
for b in 0 1 2; do
  tasks=$(python3 -c "import json;print(json.dumps({'tasks':[{'queue':'fx','kind':'k','payload':{'n':$b*100+i},'idempotency_key':'fx-%d'%($b*100+i),'max_attempts':1} for i in range(100)]}))")
  post /v1/tasks "$tasks" >/dev/null
done
# Claim 250: the first is reported on and failed (dead), the rest complete.
first=1
for round in 0 1 2; do
  max=100; [ $round = 2 ] && max=50
  claims=$(post /v1/claims "{\"agent_id\":\"fx-agent\",\"queues\":[\"fx\"],\"max\":$max}")
  acks=$(CLAIMS="$claims" FIRST=$first python3 -c '
import json, os
c = json.loads(os.environ["CLAIMS"])["tasks"]
first = os.environ["FIRST"] == "1"
acks = []
for i, t in enumerate(c):
    if first and i == 0:
        print(json.dumps({"progress": [t["id"], t["lease"]["token"]]}))
        acks.append({"id": t["id"], "lease_token": t["lease"]["token"], "outcome": "fail", "error": "boom"})
    else:
        acks.append({"id": t["id"], "lease_token": t["lease"]["token"], "outcome": "complete", "result": {"r": t["id"]}})
print(json.dumps({"acks": acks}))')
  if [ $first = 1 ]; then
    read -r id tok < <(echo "$acks" | head -1 | python3 -c 'import json,sys;p=json.load(sys.stdin)["progress"];print(p[0],p[1])')
    post /v1/tasks/$id/progress "{\"lease_token\":$tok,\"percent\":10,\"message\":\"one\"}" >/dev/null
    post /v1/tasks/$id/progress "{\"lease_token\":$tok,\"percent\":60,\"message\":\"two\"}" >/dev/null
    acks=$(echo "$acks" | tail -1)
    first=0
  fi
  post /v1/acks "$acks" >/dev/null
done
curl -sf "$B/v1/tasks?queue=fx&limit=1000" >"$OUT/data-layout2-tasks.json"
kill -TERM $PID; wait $PID || true
tar czf "$OUT/data-layout2.tar.gz" -C "$WORK" data
ls -la "$OUT"/data-layout2*
