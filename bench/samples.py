"""Reading a run's raw samples: medians, ranges, rows, and the ratios between them.

Shared by the page (bench/report.py), the targets (bench/targets.py) and the
analysis's figures (bench/figures.py), so every figure is computed one way.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

#: The headline configuration (drainers, batch size): drained over the full backlog, every repetition.
HEADLINE = (2, 500)

#: What the page prints where a run did not record a figure (an older results.json).
NOT_RECORDED = "not recorded in this run"


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], fmt: str = ",.0f", unit: str = "") -> str:
    """The median with the min-max of ``values`` beside it (the median alone for one sample)."""
    if not values:
        return "n/a"
    m = format(med(values), fmt)
    if len(values) == 1:
        return f"{m}{unit}"
    return f"{m}{unit} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def find_row(rows: list[dict[str, Any]], kind: str, workers: int, batch: int) -> dict[str, Any] | None:
    for row in rows:
        if row["kind"] == kind and row["workers"] == workers and row["batch"] == batch:
            return row
    return None


def failed_cases(results: dict[str, Any]) -> dict[str, str]:
    return {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}


def measured_results(results: dict[str, Any]) -> dict[str, Any]:
    """The results without the cases that failed."""
    failed = failed_cases(results)
    return {k: v for k, v in results.items() if k not in failed}


def same_backlog(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Both sides of a ratio drained the same number of events (a row without ``events`` never does)."""
    return a.get("events") is not None and a.get("events") == b.get("events")


def rate_ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """median(a) / median(b) of two rows' rates, or None when their backlogs differ."""
    if not same_backlog(a, b):
        return None
    return med(a["rates"]) / med(b["rates"])


def n_of(*samples: Sequence[Any]) -> str:
    """The number of samples behind each side of a figure: ``n=3`` or ``n=3/2``."""
    return "n=" + "/".join(str(len(s)) for s in samples)


def one_minute_loads(values: Sequence[str]) -> list[float]:
    """The 1-minute load averages of ``cases.load_average()`` samples."""
    return [float(v.split()[0]) for v in values]
