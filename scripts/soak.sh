#!/usr/bin/env bash
# Soak: a fixed-rate churn (submit → claim → complete) against one node for a long time, sampling
# the data directory's size and the server's RSS every 10 s, with retention on so that finished
# tasks are purged. Writes DIR/soak.csv and docs/soak.png (the plot needs python3 with matplotlib).
#
#   scripts/soak.sh [MINUTES] [LIFECYCLES_PER_S] [DIR]      # defaults: 30, 500, a temporary dir
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
RATE=${2:-500}
DIR=${3:-$(mktemp -d)}
cargo build --release --locked -q
BIN=target/release/minion
mkdir -p "$DIR"
PORT=7480
# Retention 60 s: finished tasks leave the ledger a minute after finishing; dedup keys after 120 s.
$BIN serve --data-dir "$DIR/data" --listen 127.0.0.1:$PORT --raft-listen 127.0.0.1:$((PORT + 1)) \
  --retention-ms 60000 --dedup-ttl-ms 120000 >"$DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER $SAMPLER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "seconds,data_dir_bytes,rss_bytes,tasks_in_ledger" >"$DIR/soak.csv"
(
  start=$(date +%s)
  while kill -0 $SERVER 2>/dev/null; do
    now=$(( $(date +%s) - start ))
    bytes=$(du -sb "$DIR/data" | cut -f1)
    rss=$(( $(awk '/VmRSS/ {print $2}' /proc/$SERVER/status) * 1024 ))
    tasks=$(curl -fsS "http://127.0.0.1:$PORT/v1/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"])' 2>/dev/null || echo "")
    echo "$now,$bytes,$rss,$tasks" >>"$DIR/soak.csv"
    sleep 10
  done
) &
SAMPLER=$!
$BIN bench --server "http://127.0.0.1:$PORT" --mode lifecycle --clients 16 --rate "$RATE" \
  --duration-secs $((MINUTES * 60)) --fsync-probe-dir "$DIR" | tee "$DIR/bench.txt"
sleep 11
kill $SAMPLER 2>/dev/null || true
python3 scripts/plot_soak.py "$DIR/soak.csv" docs/soak.png "$MINUTES min at $RATE lifecycles/s, retention 60 s"
echo "samples: $DIR/soak.csv"
