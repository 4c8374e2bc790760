#!/usr/bin/env bash
# Retention benchmark: FINISHED tasks run to completion through the API (bursts of 1,000 with
# idempotency keys: one submit, one claim, one /v1/acks per burst), then LIVE ready tasks; then
# RSS, data directory bytes per task, and the time from a restart to /readyz.
#
#   scripts/retention-10m.sh BIN                   (10,000,000 finished + 100,000 live)
#   FINISHED=1000000 LIVE=10000 scripts/retention-10m.sh BIN
#   KEEP=1 scripts/retention-10m.sh BIN            (keep the data directory, e.g. to profile a restart)
set -euo pipefail
bin=$1
FINISHED=${FINISHED:-10000000}
LIVE=${LIVE:-100000}
DATA=${DATA:-/tmp/retention-data}
PORT=7292
URL=http://127.0.0.1:$PORT
rm -rf "$DATA"
start() {
  "$bin" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT --raft-listen 127.0.0.1:$((PORT + 1)) --log-level warn \
    >>"$DATA.log" 2>&1 &
  pid=$!
}
ready() { # seconds until /readyz answers 200
  local t0; t0=$(date +%s.%N)
  until [ "$(curl -s -o /dev/null -w '%{http_code}' $URL/readyz)" = 200 ]; do sleep 0.05; done
  echo "$(date +%s.%N) - $t0" | bc
}
rss_mib() { echo $(( $(awk '/VmRSS/{print $2}' /proc/$pid/status) / 1024 )); }
peak_mib() { echo $(( $(awk '/VmHWM/{print $2}' /proc/$pid/status) / 1024 )); }
start; ready >/dev/null
t0=$(date +%s)
"$bin" bench --server $URL --mode batch-lifecycle --batch 1000 --clients 4 --tasks-max "$FINISHED" \
  --duration-secs 36000 --fsync-probe-dir "$(dirname "$DATA")" --queue done
"$bin" bench --server $URL --mode batch --batch 1000 --clients 1 --tasks-max "$LIVE" \
  --duration-secs 3600 --fsync-probe-dir "$(dirname "$DATA")" --queue live | tail -1
echo "load_seconds=$(( $(date +%s) - t0 ))"
sleep 10 # let the state writer drain
curl -s $URL/v1/queues | python3 -c 'import json,sys; [print(q["queue"], {k: v for k, v in q.items() if v and k != "queue"}) for q in json.load(sys.stdin)["queues"]]'
echo "rss_mib_after_load=$(rss_mib) peak_rss_mib_during_load=$(peak_mib)"
curl -s $URL/metrics | grep -E '^minion_(state_overlay_bytes|storage_)' || true
kill "$pid"; wait "$pid" || true
bytes=$(du -sb "$DATA" | cut -f1)
echo "data_dir_bytes=$bytes bytes_per_task=$(( bytes / (FINISHED + LIVE) ))"
start
echo "restart_to_ready_seconds=$(ready)"
echo "rss_mib_after_restart=$(rss_mib)"
sleep 5
echo "rss_mib_5s_after_restart=$(rss_mib)"
curl -s $URL/v1/queues | python3 -c 'import json,sys; [print(q["queue"], {k: v for k, v in q.items() if v and k != "queue"}) for q in json.load(sys.stdin)["queues"]]'
kill "$pid"; wait "$pid" || true
[ -n "${KEEP:-}" ] || rm -rf "$DATA" "$DATA.log"
