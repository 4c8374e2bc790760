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
grep -h '^FIGURES ' "$out"/*.log | sed 's/^FIGURES //' | python3 -c '
import json, sys
runs = [json.loads(l) for l in sys.stdin]
faults, rec = {}, {}
for r in runs:
    for k, n in r["faults"].items():
        faults[k] = faults.get(k, 0) + n
    for k, v in r["recovery_ms"].items():
        rec.setdefault(k, []).extend(v)
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
print(f"{len(runs)} runs, {sum(faults.values())} faults ({sum(r[\"leader_faults\"] for r in runs)} on the leader)")
print()
print("| fault | injected | recovery p50 (ms) | recovery p99 (ms) | max (ms) |")
print("|---|--:|--:|--:|--:|")
for k in sorted(faults):
    print(f"| {k} | {faults[k]:,} | {pct(rec[k], 50):,} | {pct(rec[k], 99):,} | {max(rec[k]):,} |")
tot = lambda f: sum(r[f] for r in runs)
print()
print("| operations | acknowledged | unknown outcome | tasks | anomalies | undecided |")
print("|--:|--:|--:|--:|--:|--:|")
print(f"| {tot(\"ops\"):,} | {tot(\"acknowledged\"):,} | {tot(\"unknown\"):,} | {tot(\"tasks\"):,} | {tot(\"anomalies\")} | {tot(\"undecided\")} |")
'
if grep -l '^FAIL\|panicked' "$out"/*.log >/dev/null 2>&1; then
    echo "some runs failed:"; grep -l 'panicked' "$out"/*.log || true
    exit 1
fi
