#!/usr/bin/env bash
# Soak: a fixed-rate churn (submit with an idempotency key → claim → complete) for a long time,
# sampling every node's data directory size, RSS, ledger size, dedup keys and bloom filter size
# every 10 s, with retention on so that finished tasks (and their keys) are purged. One node, or a
# three-node cluster on loopback (scripts/cluster-local.sh). Writes DIR/soak.csv and a plot (the
# plot needs python3 with matplotlib).
#
#   scripts/soak.sh [MINUTES] [LIFECYCLES_PER_S] [DIR] [NODES] [PLOT]
#   # defaults: 30, 500, a temporary dir, 1, docs/soak.png (NODES=3: docs/soak-cluster.png)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
RATE=${2:-500}
DIR=${3:-$(mktemp -d)}
NODES=${4:-1}
PLOT=${5:-$([ "$NODES" = 3 ] && echo docs/soak-cluster.png || echo docs/soak.png)}
cargo build --release --locked -q
BIN=target/release/minion
mkdir -p "$DIR"
# Retention 60 s: finished tasks leave the ledger a minute after finishing; dedup keys after 120 s.
export MINION_RETENTION_MS=60000 MINION_DEDUP_TTL_MS=120000
PIDS=()
BASES=()
DATA=()
if [ "$NODES" = 1 ]; then
  PORT=7480
  $BIN serve --data-dir "$DIR/data" --listen 127.0.0.1:$PORT --raft-listen 127.0.0.1:$((PORT + 1)) \
    >"$DIR/server.log" 2>&1 &
  PIDS=($!)
  BASES=("http://127.0.0.1:$PORT")
  DATA=("$DIR/data")
  for _ in $(seq 1 100); do curl -fsS "${BASES[0]}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
elif [ "$NODES" = 3 ]; then
  MINION_BIN=$BIN scripts/cluster-local.sh "$DIR/cluster" >"$DIR/cluster-start.log" 2>&1
  for id in 1 2 3; do
    PIDS+=("$(cat "$DIR/cluster/n$id.pid")")
    BASES+=("http://127.0.0.1:70${id}0")
    DATA+=("$DIR/cluster/n$id")
  done
else
  echo "NODES is 1 or 3" >&2
  exit 2
fi
trap 'kill ${PIDS[*]} $SAMPLER 2>/dev/null || true' EXIT
echo "seconds,node,data_dir_bytes,rss_bytes,tasks_in_ledger,dedup_keys,bloom_items,bloom_capacity" >"$DIR/soak.csv"
gauge() { # metrics text, name
  awk -v n="$2" '$1 == n {printf "%d", $2}' <<<"$1"
}
(
  start=$(date +%s)
  while kill -0 "${PIDS[0]}" 2>/dev/null; do
    now=$(( $(date +%s) - start ))
    for i in "${!PIDS[@]}"; do
      pid=${PIDS[$i]}
      # du exits 1 when a file goes away while it walks (a checkpoint's temporary file); its
      # total is still printed, and the sampler must not stop on it (set -e, pipefail).
      bytes=$( (du -sb "${DATA[$i]}" 2>/dev/null || true) | cut -f1)
      rss=$(( $(awk '/VmRSS/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0) * 1024 ))
      m=$(curl -fsS "${BASES[$i]}/metrics" 2>/dev/null || true)
      echo "$now,$((i + 1)),$bytes,$rss,$(gauge "$m" minion_ledger_tasks),$(gauge "$m" minion_dedup_keys),$(gauge "$m" minion_dedup_bloom_items),$(gauge "$m" minion_dedup_bloom_capacity)" >>"$DIR/soak.csv"
    done
    sleep 10
  done
) &
SAMPLER=$!
$BIN bench --server "${BASES[0]}" --mode lifecycle --idempotency-keys --clients 16 --rate "$RATE" \
  --duration-secs $((MINUTES * 60)) --fsync-probe-dir "$DIR" | tee "$DIR/bench.txt"
sleep 11
kill $SAMPLER 2>/dev/null || true
python3 scripts/plot_soak.py "$DIR/soak.csv" "$PLOT" \
  "$NODES node(s), $MINUTES min at $RATE lifecycles/s with idempotency keys, retention 60 s"
echo "samples: $DIR/soak.csv"
