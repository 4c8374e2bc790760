"""Tabulate the FIGURES lines of fault runs (one JSON object per line on stdin)."""
import json
import sys

runs = [json.loads(line) for line in sys.stdin if line.strip()]
faults, rec = {}, {}
for r in runs:
    for k, n in r["faults"].items():
        faults[k] = faults.get(k, 0) + n
    for k, v in r["recovery_ms"].items():
        rec.setdefault(k, []).extend(v)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def tot(field):
    return sum(r[field] for r in runs)


print(f"{len(runs)} runs, {sum(faults.values()):,} faults ({tot('leader_faults'):,} on the leader)")
print()
print("| fault | injected | recovery p50 (ms) | recovery p99 (ms) | max (ms) |")
print("|---|--:|--:|--:|--:|")
for k in sorted(faults):
    print(f"| {k} | {faults[k]:,} | {pct(rec[k], 50):,} | {pct(rec[k], 99):,} | {max(rec[k]):,} |")
print()
print("| operations | acknowledged | unknown outcome | tasks | anomalies | undecided |")
print("|--:|--:|--:|--:|--:|--:|")
print(
    f"| {tot('ops'):,} | {tot('acknowledged'):,} | {tot('unknown'):,} | {tot('tasks'):,} "
    f"| {tot('anomalies')} | {tot('undecided')} |"
)
