"""Plot a soak run's samples (scripts/soak.sh): per node, data-dir size and RSS over time; and
the ledger, dedup keys and the dedup bloom filter's capacity."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out, title = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [r for r in csv.DictReader(open(src)) if r["rss_bytes"] and r["rss_bytes"] != "0"]
nodes = sorted({r.get("node", "1") for r in rows})
num = lambda r, k: int(r[k]) if r.get(k) else None  # noqa: E731
GAP = 60  # seconds between samples (normally 10) above which the line is broken, not drawn across


def broken(rs, ys):
    """Minutes and values, with a NaN wherever samples are missing, so no line crosses a gap."""
    t_out, y_out = [], []
    for i, (r, y) in enumerate(zip(rs, ys)):
        if i and int(r["seconds"]) - int(rs[i - 1]["seconds"]) > GAP:
            t_out.append(float("nan"))
            y_out.append(float("nan"))
        t_out.append(int(r["seconds"]) / 60)
        y_out.append(y)
    return t_out, y_out


fig, (ax, bx) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
for n in nodes:
    rs = [r for r in rows if r.get("node", "1") == n]
    ax.plot(*broken(rs, [num(r, "data_dir_bytes") / 2**20 for r in rs]), label=f"node {n} data directory")
    ax.plot(*broken(rs, [num(r, "rss_bytes") / 2**20 for r in rs]), linestyle="--", label=f"node {n} RSS")
    gaps = [(int(a["seconds"]), int(b["seconds"])) for a, b in zip(rs, rs[1:])
            if int(b["seconds"]) - int(a["seconds"]) > GAP]
    for a, b in gaps:
        print(f"node {n}: no samples from second {a} to {b} (minute {a / 60:.1f} to {b / 60:.1f})")
ax.set_ylabel("MiB")
ax.legend(loc="upper left", fontsize=8, ncol=2)
ax.set_title(title)
first = [r for r in rows if r.get("node", "1") == nodes[0]]
for k, label in [("tasks_in_ledger", "tasks in the ledger"), ("dedup_keys", "dedup keys"),
                 ("bloom_capacity", "bloom filter capacity (keys)")]:
    if k in first[0]:
        bx.plot(*broken(first, [num(r, k) for r in first]), label=f"{label} (node {nodes[0]})")
bx.set_xlabel("minutes")
bx.legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=110)
for n in nodes:
    rs = [r for r in rows if r.get("node", "1") == n]
    mib = lambda k: [num(r, k) / 2**20 for r in rs]  # noqa: E731
    late = [r for r in rs if int(r["seconds"]) >= 600]
    lmib = lambda k: [num(r, k) / 2**20 for r in late] or [0]  # noqa: E731
    print(f"node {n}: {len(rs)} samples; data dir max {max(mib('data_dir_bytes')):.1f} MiB "
          f"(after minute 10: {min(lmib('data_dir_bytes')):.1f}–{max(lmib('data_dir_bytes')):.1f}); "
          f"RSS max {max(mib('rss_bytes')):.1f} MiB (after minute 10: "
          f"{min(lmib('rss_bytes')):.1f}–{max(lmib('rss_bytes')):.1f}); last RSS {mib('rss_bytes')[-1]:.1f} MiB")


def slope_per_hour(rs, k):
    """Least-squares slope of column k, in MiB per hour."""
    xs = [int(r["seconds"]) / 3600 for r in rs]
    ys = [num(r, k) / 2**20 for r in rs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


# Flatness: each node's RSS and data directory per 20-minute window (min / mean / max MiB), and
# the trend over the second half of the run.
WINDOW = 1200
for n in nodes:
    rs = [r for r in rows if r.get("node", "1") == n]
    end = int(rs[-1]["seconds"])
    for k, label in [("rss_bytes", "RSS"), ("data_dir_bytes", "data dir")]:
        cells = []
        for w0 in range(0, end + 1, WINDOW):
            v = [num(r, k) / 2**20 for r in rs if w0 <= int(r["seconds"]) < w0 + WINDOW]
            if v:
                cells.append(f"{w0 // 60}-{(w0 + WINDOW) // 60}m {min(v):.0f}/{sum(v) / len(v):.0f}/{max(v):.0f}")
        half = [r for r in rs if int(r["seconds"]) >= end / 2]
        print(f"node {n} {label} (min/mean/max MiB): " + "; ".join(cells)
              + f"; trend over the second half {slope_per_hour(half, k):+.1f} MiB/h")
caps = [num(r, "bloom_capacity") for r in first if r.get("bloom_capacity")]
keys = [num(r, "dedup_keys") for r in first if r.get("dedup_keys")]
if caps:
    print(f"bloom capacity: min {min(caps):,} max {max(caps):,} last {caps[-1]:,}; dedup keys max {max(keys):,}")
print(f"wrote {out}")
