#!/usr/bin/env bash
# Reproduces the three-node figures in docs/benchmarks.md: throughput and latency through the
# leader and through a follower, then failover time (kill -9 the leader while one client writes).
#
#   scripts/cluster-bench.sh [DIR]     # default DIR: a fresh temporary directory
#
# All three nodes run on this machine (co-located: they share its cores and its disk).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
BIN=target/release/minion
DIR=${1:-$(mktemp -d)}
trap 'kill $(cat "$DIR"/*.pid 2>/dev/null) 2>/dev/null || true' EXIT
MINION_BIN=$BIN scripts/cluster-local.sh "$DIR"
L=http://127.0.0.1:7010 F=http://127.0.0.1:7020
echo "## through the leader"
$BIN bench --server $L --mode batch --batch 100 --clients 1,4,16 --duration-secs 10 --fsync-probe-dir "$DIR"
$BIN bench --server $L --mode submit --clients 1,16,64 --duration-secs 10 --fsync-probe-dir "$DIR"
$BIN bench --server $L --mode lifecycle --clients 16,64 --duration-secs 10 --fsync-probe-dir "$DIR"
echo "## through a follower (forwarded to the leader)"
$BIN bench --server $F --mode submit --clients 16,64 --duration-secs 10 --fsync-probe-dir "$DIR"
echo "## failover: kill -9 the current leader 4 s into a 12 s run, ${FAILOVERS:=5} times"
for round in $(seq 1 "$FAILOVERS"); do
  leader=$($BIN cluster status --server $F --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
  ( sleep 4; kill -9 "$(cat "$DIR/n$leader.pid")" ) &
  echo "round $round: killing node $leader"
  $BIN bench --mode availability --server $L,$F,http://127.0.0.1:7030 --duration-secs 12 --fsync-probe-dir "$DIR"
  wait
  MINION_BIN=$BIN scripts/cluster-local.sh "$DIR" restart "$leader"
  sleep 3
done
