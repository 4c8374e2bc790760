#!/usr/bin/env bash
# Figures for docs/reliability.md: seeded fault runs across every nemesis, checked by
# minion-checker, tabulated per fault kind.
#
#   scripts/reliability.sh [ROUNDS_PER_RUN] [RUNS] [FIRST_SEED] [PARALLEL]
#
# Each run is `every_nemesis_mixed` (tests/network_faults.rs: three nodes in network
# namespaces; kill -9, SIGSTOP, partitions full / one-way / bridge / flapping, 200 ms latency
# with jitter, 5% loss, wall-clock steps; needs root) with MINION_FAULT_ROUNDS=ROUNDS_PER_RUN and
# MINION_FAULT_SEED=FIRST_SEED+i, plus one membership run (`replace_members_under_load`) per
# ten. PARALLEL runs at a time (the rounds mostly wait, so two or three fit on two cores).
# Prints the table and keeps every run's log in target/reliability/<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
RUNS=${2:-4}
SEED=${3:-1000}
PAR=${4:-2}
out="target/reliability/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
bin_of() {
    cargo test --locked --test "$1" --no-run 2>&1 | grep -o "target/debug/deps/$1-[0-9a-f]*" | tail -1
}
net=$(bin_of network_faults)
loop=$(bin_of cluster_faults)
jobs=()
for i in $(seq 0 $((RUNS - 1))); do
    jobs+=("$net every_nemesis_mixed $((SEED + i)) $ROUNDS")
    if (( i % 10 == 0 )); then
        jobs+=("$loop replace_members_under_load $((SEED + i)) $(( (ROUNDS + 4) / 5 ))")
    fi
done
run_one() {
    local bin=$1 test=$2 seed=$3 rounds=$4 log="$out/$2-$3.log"
    if MINION_FAULT_SEED=$seed MINION_FAULT_ROUNDS=$rounds "$bin" --exact "$test" --nocapture >"$log" 2>&1; then
        echo "ok    $test seed $seed"
    else
        echo "FAIL  $test seed $seed (log: $log)"
    fi
}
export -f run_one
export out
started=$(date +%s)
printf '%s\n' "${jobs[@]}" | xargs -P "$PAR" -I{} bash -c 'run_one {}'
echo "wall time: $(( $(date +%s) - started )) s, logs in $out"
grep -h '^FIGURES ' "$out"/*.log | sed 's/^FIGURES //' | python3 scripts/reliability_table.py
if grep -l '^FAIL\|panicked' "$out"/*.log >/dev/null 2>&1; then
    echo "some runs failed:"; grep -l 'panicked' "$out"/*.log || true
    exit 1
fi
