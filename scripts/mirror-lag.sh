#!/usr/bin/env bash
# Mirror lag under load (docs/benchmarks.md): a following exporter, a submit load, and the lag
# (server's applied index − mirror's position) sampled once a second.
# Usage: scripts/mirror-lag.sh [SERVER] [PG_URL] [SECONDS]
set -euo pipefail
SERVER=${1:-http://127.0.0.1:7272}
PG_URL=${2:-postgres://postgres@127.0.0.1:5432/minion_bench}
SECONDS_RUN=${3:-10}
BIN=${MINION_BIN:-./target/release/minion}
"$BIN" export postgres --follow --url "$PG_URL" --server "$SERVER" > /tmp/minion-mirror-lag.log 2>&1 &
EXPORTER=$!
trap 'kill $EXPORTER 2>/dev/null || true' EXIT
sleep 1
"$BIN" bench --server "$SERVER" --mode submit --clients 16 --duration-secs "$SECONDS_RUN" --fsync-probe-dir /tmp &
BENCH=$!
for i in $(seq 1 "$SECONDS_RUN"); do
    sleep 1
    applied=$(curl -s "$SERVER/v1/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['raft']['applied_index'])")
    position=$(psql "$PG_URL" -tAc "select log_index from export_position where name = 'default'")
    echo "t=${i}s applied=$applied position=$position lag=$((applied - position))"
done
wait $BENCH
