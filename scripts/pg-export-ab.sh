#!/usr/bin/env bash
# A/B the PostgreSQL export of builds on this machine: for each binary, a fresh server, 4 s of
# batched submits, a backfill export into a fresh database, 2 s more, the same export again (feed).
#   scripts/pg-export-ab.sh OLD_BINARY NEW_BINARY OLD_BINARY
set -u
PG=${PG:-postgres://postgres@127.0.0.1:5432/minion_bench}
DATA=${DATA:-/tmp/pg-export-ab-data}
for bin in "$@"; do
  rm -rf "$DATA"
  psql -h 127.0.0.1 -U postgres -qc "drop database if exists minion_bench" -c "create database minion_bench" >/dev/null
  "$bin" serve --data-dir "$DATA" --listen 127.0.0.1:7272 --raft-listen 127.0.0.1:7273 --log-level warn >/dev/null 2>&1 &
  pid=$!
  sleep 2
  echo "== $bin"
  "$bin" bench --server http://127.0.0.1:7272 --mode batch --batch 100 --clients 4 --duration-secs 4 --fsync-probe-dir /tmp
  "$bin" export postgres --url "$PG" --server http://127.0.0.1:7272 2>&1 | tail -1
  "$bin" bench --server http://127.0.0.1:7272 --mode batch --batch 100 --clients 4 --duration-secs 2 >/dev/null
  "$bin" export postgres --url "$PG" --server http://127.0.0.1:7272 2>&1 | tail -1
  kill "$pid"
  wait "$pid"
done
rm -rf "$DATA"
