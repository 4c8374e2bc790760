"""Plot a soak run's samples (scripts/soak.sh): data-dir size, RSS and ledger size over time."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out, title = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [r for r in csv.DictReader(open(src)) if r["rss_bytes"]]
t = [int(r["seconds"]) / 60 for r in rows]
mib = lambda k: [int(r[k]) / 2**20 for r in rows]  # noqa: E731
tasks = [int(r["tasks_in_ledger"]) if r["tasks_in_ledger"] else None for r in rows]
fig, ax = plt.subplots(figsize=(9, 4.5))
ax.plot(t, mib("data_dir_bytes"), label="data directory (MiB)")
ax.plot(t, mib("rss_bytes"), label="server RSS (MiB)")
ax.set_xlabel("minutes")
ax.set_ylabel("MiB")
ax2 = ax.twinx()
ax2.plot(t, tasks, color="grey", linestyle=":", label="tasks in the ledger")
ax2.set_ylabel("tasks")
lines = ax.get_legend_handles_labels()
lines2 = ax2.get_legend_handles_labels()
ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
ax.set_title(title)
fig.tight_layout()
fig.savefig(out, dpi=110)
last = rows[-1]
print(f"wrote {out}: {len(rows)} samples; last: data dir {int(last['data_dir_bytes'])/2**20:.1f} MiB, "
      f"RSS {int(last['rss_bytes'])/2**20:.1f} MiB; max data dir {max(mib('data_dir_bytes')):.1f} MiB, "
      f"max RSS {max(mib('rss_bytes')):.1f} MiB")
