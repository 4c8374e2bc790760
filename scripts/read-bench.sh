#!/usr/bin/env bash
# Random reads of a retained ledger with the state store's cache at each size given (bytes): for
# each size, start BIN on the data directory DATA (kept by `KEEP=1 scripts/retention-10m.sh`),
# time the restart to /readyz, read RSS 6 s later, run `bench --mode read` over task ids 1..N
# (16 clients, SECS seconds, default 20), read RSS again, stop.
#
#   BIN=target/release/minion DATA=/tmp/ret10m N=10000000 scripts/read-bench.sh 67108864 268435456
set -euo pipefail
bin=${BIN:-target/release/minion}
DATA=${DATA:-/tmp/retention-data}
N=${N:-10000000}
SECS=${SECS:-20}
rss() { echo $(( $(awk '/VmRSS/{print $2}' "/proc/$1/status") / 1024 )); }
for cache in "$@"; do
  t0=$(date +%s.%N)
  MINION_STORAGE_CACHE_BYTES=$cache "$bin" serve --data-dir "$DATA" --listen 127.0.0.1:7292 \
    --raft-listen 127.0.0.1:7293 --log-level warn >/dev/null 2>&1 &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7292/readyz)" = 200 ]; do sleep 0.05; done
  ready=$(echo "$(date +%s.%N) - $t0" | bc)
  sleep 6
  echo "=== cache=$cache restart_to_ready=${ready}s rss_6s=$(rss $pid)MiB"
  "$bin" bench --server http://127.0.0.1:7292 --mode read --records "$N" --clients 16 --duration-secs "$SECS" \
    --fsync-probe-dir /tmp | grep -E "fdatasync|^\| 16 "
  echo "rss_after_reads=$(rss $pid)MiB"
  kill $pid
  wait $pid || true
done
