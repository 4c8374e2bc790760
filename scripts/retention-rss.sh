#!/usr/bin/env bash
# RSS of a server after SECONDS of full lifecycles at 64 clients (completed tasks stay in the ledger),
# then again after a restart; prints the data directory size. Usage: scripts/retention-rss.sh BIN SECONDS
bin=$1; secs=$2; DATA=/tmp/rss-data-$$
set -u
rm -rf $DATA
$bin serve --data-dir $DATA --listen 127.0.0.1:7282 --raft-listen 127.0.0.1:7283 --log-level warn >/dev/null 2>&1 &
pid=$!; sleep 2
$bin bench --server http://127.0.0.1:7282 --duration-secs $secs --mode lifecycle --clients 64 --fsync-probe-dir /tmp | tail -1
sleep 3
echo "rss_kb_after_load=$(awk '/VmRSS/{print $2}' /proc/$pid/status)"
curl -s http://127.0.0.1:7282/metrics | grep -E '^minion_(tasks|ledger)[a-z_]*' | head -8
kill $pid; wait $pid
$bin serve --data-dir $DATA --listen 127.0.0.1:7282 --raft-listen 127.0.0.1:7283 --log-level warn >/dev/null 2>&1 &
pid=$!; sleep 8
echo "rss_kb_after_restart=$(awk '/VmRSS/{print $2}' /proc/$pid/status)"
du -sh $DATA
kill $pid; wait $pid; rm -rf $DATA
