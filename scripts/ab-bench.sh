#!/usr/bin/env bash
# A/B the single-node write path of two builds on this machine: for each binary (in the order
# given, so A B A shows run-to-run variation), start a fresh server (fsync tier), run single
# submits at 1, 16, 64 clients and full lifecycles at 16, 64 clients for 10 s each, stop it.
#
#   scripts/ab-bench.sh OLD_BINARY NEW_BINARY OLD_BINARY
#   DURATION=6 SERVE_ARGS="--config in-flight-1.toml" scripts/ab-bench.sh BIN   (seconds per point, a config file)
#   SERVE_ARGS="--auth on --admin-token X --rate-limit-per-sec 0" MINION_TOKEN=X scripts/ab-bench.sh BIN
#
# Build an old commit's binary with: git worktree add /tmp/old REV && (cd /tmp/old &&
# CARGO_TARGET_DIR=/tmp/old-target cargo build --release --bin minion).
set -euo pipefail
DATA=${DATA:-/tmp/ab-bench-data}
for bin in "$@"; do
  rm -rf "$DATA"
  # shellcheck disable=SC2086
  "$bin" serve --data-dir "$DATA" --listen 127.0.0.1:7272 --raft-listen 127.0.0.1:7273 --log-level warn ${SERVE_ARGS:-} \
    >/dev/null 2>&1 &
  pid=$!
  sleep 2
  B="$bin bench --server http://127.0.0.1:7272 --duration-secs ${DURATION:-10} --fsync-probe-dir /tmp"
  echo "=== $bin ${SERVE_ARGS:-}"
  $B --mode submit --clients 1,16,64
  $B --mode lifecycle --clients 16,64
  kill "$pid"
  wait "$pid" || true
done
rm -rf "$DATA"
