"""docs/bench_throughput.png: drain throughput by batch size and drainers, against the ceiling.

Drawn from the same rows as the page's table (bench/report.py); matplotlib is a
bench-only dependency, so without it there is no chart and the page says nothing of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.samples import med


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Throughput by batch size and drainers, against the ceiling. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    counts = sorted({r["workers"] for r in rows})
    for index, k in enumerate(counts):
        for kind, style in (("project", "-o"), ("ceiling", "--s")):
            points = sorted((r["batch"], med(r["rates"])) for r in rows if r["kind"] == kind and r["workers"] == k)
            if not points:
                continue
            label = f"drain_outbox x{k}" if kind == "project" else f"plain-SQL ceiling x{k}"
            ax.plot(
                [str(b) for b, _ in points],
                [v for _, v in points],
                style,
                color=colors[index % len(colors)],
                alpha=1.0 if kind == "project" else 0.6,
                label=label,
            )
    ax.set_yscale("log")
    ax.set_xlabel("batch size (events per claim)")
    ax.set_ylabel("events / second (median, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
