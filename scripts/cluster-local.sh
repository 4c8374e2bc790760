#!/usr/bin/env bash
# Start a three-node Minion cluster on this machine and join it into one cluster.
#
#   scripts/cluster-local.sh [DIR]             # default DIR: ./minion-cluster
#   scripts/cluster-local.sh DIR restart N     # start node N again (after it stopped or was killed)
#
# Node N (1..3) keeps its data in DIR/nN, its log in DIR/nN.log, serves the API on 127.0.0.1:70N0
# and peer traffic on 127.0.0.1:70N1. Stop the cluster with: kill $(cat DIR/*.pid)
# MINION_BIN picks the binary (default target/release/minion); MINION_CLUSTER_SECRET the secret.
set -euo pipefail
BIN=${MINION_BIN:-target/release/minion}
DIR=${1:-./minion-cluster}
export MINION_CLUSTER_SECRET=${MINION_CLUSTER_SECRET:-local-cluster-secret-change-me}
mkdir -p "$DIR"

start() { # id, extra flags...
  local id=$1; shift
  "$BIN" serve --node-id "$id" --data-dir "$DIR/n$id" \
    --listen "127.0.0.1:70${id}0" --raft-listen "127.0.0.1:70${id}1" "$@" >>"$DIR/n$id.log" 2>&1 &
  echo $! >"$DIR/n$id.pid"
}
wait_up() { # id
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:70${1}0/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node $1 did not start; see $DIR/n$1.log" >&2
  exit 1
}

if [ "${2:-}" = restart ]; then
  start "$3"
  wait_up "$3"
  exit 0
fi

start 1            # a fresh data directory forms a cluster of one
start 2 --join     # these wait to be added
start 3 --join
for id in 1 2 3; do wait_up "$id"; done
for id in 2 3; do
  # Already a member (a re-run on the same directories) is fine.
  "$BIN" cluster add --server http://127.0.0.1:7010 --node-id "$id" --raft-addr "127.0.0.1:70${id}1" --voter \
    >/dev/null 2>"$DIR/add$id.err" || grep -q "already a member" "$DIR/add$id.err" || { cat "$DIR/add$id.err" >&2; exit 1; }
done
"$BIN" cluster status --server http://127.0.0.1:7010
