#!/usr/bin/env bash
# Run one coverage-guided fuzz target until its process has used a given amount of CPU time
# (not wall time: on a shared two-core machine the two differ), then stop it and print a summary.
#
#   scripts/fuzz-cpu.sh <target> <cpu-seconds>     e.g. scripts/fuzz-cpu.sh decode_frames 3600
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to
# fuzz/corpus-local/<target> (not checked in); the checked-in seeds in fuzz/corpus/<target> are
# read, never written. The full libFuzzer log is fuzz/logs/<target>.log; a crash leaves its input
# in fuzz/artifacts/<target>/ and the script exits non-zero.
set -euo pipefail
target=${1:?target: decode_frames | http_request | state_machine}
budget=${2:?cpu seconds}
cd "$(dirname "$0")/../fuzz"
mkdir -p "corpus-local/$target" "artifacts/$target" logs
log="logs/$target.log"

cargo +nightly fuzz build -s none -O "$target"
bin="target/x86_64-unknown-linux-gnu/release/$target"
start=$(date +%s)
"$bin" -artifact_prefix="artifacts/$target/" -print_final_stats=1 \
    "corpus-local/$target" "corpus/$target" >"$log" 2>&1 &
pid=$!
tick=$(getconf CLK_TCK)
cpu=0
while kill -0 "$pid" 2>/dev/null; do
    # utime + stime of the whole process (all threads), fields 14 and 15 of /proc/PID/stat.
    if stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
        # The command name may hold spaces: count fields after its closing parenthesis.
        cpu=$(awk -v t="$tick" '{ print int(($12 + $13) / t) }' <<<"${stat##*) }")
    fi
    if [ "$cpu" -ge "$budget" ]; then
        kill -INT "$pid"
        break
    fi
    sleep 5
done
status=0
wait "$pid" || status=$?
wall=$(( $(date +%s) - start ))

last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
echo "target=$target cpu_s=$cpu wall_s=$wall executions=${runs:-?} exec_per_cpu_s=$(( ${runs:-0} / (cpu > 0 ? cpu : 1) ))"
echo "last status: $last"
grep -E '^stat::' "$log" || true
if grep -qE 'ERROR: libFuzzer|panicked at|deadly signal' "$log"; then
    echo "CRASH: see $log and fuzz/artifacts/$target/" >&2
    exit 1
fi
# SIGINT exits with libFuzzer's interrupt code; anything else is a failure.
[ "$status" -eq 0 ] || [ "$status" -eq 72 ] || [ "$status" -eq 130 ] || { echo "fuzzer exited $status" >&2; exit 1; }
