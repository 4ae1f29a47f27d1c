"""The admin's throughput and lag chart: an inline SVG drawn on the server.

The data are the ``outbox_throughput`` view (the last hour, per minute) or
``outbox_throughput_day`` (24 hours, per 15 minutes): events done and failed per
step, and ``wait_seconds``, how long the last event done in a step had waited since
it was written (a sample of the lag). This module turns them into coordinates;
the template ``admin/outbox/outboxevent/throughput_chart.html`` draws them with the
admin's own colour variables, so the light and the dark theme both read. No
JavaScript, nothing fetched from elsewhere: each point's figures are in its SVG
``<title>``, which browsers show on hover.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from outbox.services import format_age
from outbox.sql import metrics_queries

#: The admin list's query parameter that picks the span, and the spans it offers.
PARAM = "chart"
SPANS = {"1h": 1, "24h": 24}
DEFAULT_SPAN = "1h"
#: Seconds a 24-hour series is reused: it counts a day of done events (docs/metrics.md).
DAY_CACHE_SECONDS = 60
#: The plot's size in SVG units, and its margins (axis labels).
WIDTH, HEIGHT = 960, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 64, 12, 28


@dataclass(frozen=True)
class Point:
    start: dt.datetime
    done: int
    failed: int
    wait_seconds: float | None


def throughput_series(*, hours: int = 1, using: str = DEFAULT_DB_ALIAS) -> list[Point]:
    """The chart's data, oldest first: 60 minutes, or 96 quarter hours of the last day."""
    if hours not in SPANS.values():
        raise ValueError(f"hours must be one of {sorted(SPANS.values())}, got {hours!r}")
    sql = metrics_queries.chart_last_hour if hours == 1 else metrics_queries.chart_last_day
    with connections[using].cursor() as cursor:
        cursor.execute(sql, {})
        return [Point(start, int(done), int(failed), wait) for start, done, failed, wait in cursor.fetchall()]


def cached_series(hours: int, using: str = DEFAULT_DB_ALIAS) -> list[Point]:
    """The last hour fresh on every call; the last day reused for DAY_CACHE_SECONDS."""
    if hours == 1:
        return throughput_series(hours=1, using=using)
    key = f"outbox:chart:{using}:{hours}"
    points = cache.get(key)
    if points is None:
        points = throughput_series(hours=hours, using=using)
        cache.set(key, points, DAY_CACHE_SECONDS)
    return points


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``value`` (an axis maximum)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _seconds(value: float) -> str:
    """A wait for an axis or a tooltip: ``250ms``, ``4.5s``, then ``format_age``'s ``5m 3s``."""
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.3g}s"
    return format_age(value)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def chart_context(span: str, points: list[Point]) -> dict[str, Any]:
    """Everything the template draws: bars, the wait line, axes, labels, the other span's link."""
    hours = SPANS[span]
    step_minutes = 1 if hours == 1 else 15
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    rates = [(p.done / step_minutes, p.failed / step_minutes) for p in points]
    rate_max = _nice_ceiling(max((d + f for d, f in rates), default=0))
    waits = [p.wait_seconds for p in points if p.wait_seconds is not None]
    wait_max = _nice_ceiling(max(waits, default=0))
    slot = plot_w / max(len(points), 1)
    bar_w = max(slot * 0.8, 1.0)
    bars, line = [], []
    for index, (point, (done_rate, failed_rate)) in enumerate(zip(points, rates, strict=True)):
        x = LEFT + index * slot + (slot - bar_w) / 2
        done_h = plot_h * done_rate / rate_max
        failed_h = plot_h * failed_rate / rate_max
        when = timezone.localtime(point.start)
        label = f"{when:%H:%M}"
        wait = "-" if point.wait_seconds is None else _seconds(point.wait_seconds)
        title = (
            f"{when:%Y-%m-%d %H:%M}: {point.done:,} done, {point.failed:,} failed"
            f"{'' if step_minutes == 1 else f' in {step_minutes} minutes'}; wait of the last done: {wait}"
        )
        bars.append(
            {
                "x": round(x, 2),
                "w": round(bar_w, 2),
                "done_y": round(TOP + plot_h - done_h, 2),
                "done_h": round(done_h, 2),
                "failed_y": round(TOP + plot_h - done_h - failed_h, 2),
                "failed_h": round(failed_h, 2),
                "done": point.done,
                "failed": point.failed,
                "title": title,
                "label": label,
            }
        )
        if point.wait_seconds is not None:
            cx = LEFT + index * slot + slot / 2
            cy = TOP + plot_h - plot_h * min(point.wait_seconds / wait_max, 1.0)
            line.append({"x": round(cx, 2), "y": round(cy, 2), "title": title, "seconds": point.wait_seconds})
    tick_every = 10 if hours == 1 else 12  # every 10 minutes, or every 3 hours
    ticks = [
        {"x": round(LEFT + i * slot + slot / 2, 2), "label": b["label"]}
        for i, b in enumerate(bars)
        if i % tick_every == 0
    ]
    grid = [
        {
            "y": round(TOP + plot_h * (1 - f), 2),
            "rate": _number(rate_max * f),
            "wait": _seconds(wait_max * f) if waits else "",
        }
        for f in (0, 0.5, 1)
    ]
    other = "24h" if span == "1h" else "1h"
    return {
        "span": span,
        "hours": hours,
        "step_minutes": step_minutes,
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right_x": WIDTH - RIGHT,
        "top": TOP,
        "bottom_y": TOP + plot_h,
        "center_x": LEFT + plot_w // 2,
        "bars": bars,
        "line": line,
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in line),
        "ticks": ticks,
        "grid": grid,
        "done_total": sum(p.done for p in points),
        "failed_total": sum(p.failed for p in points),
        "latest_wait": _seconds(waits[-1]) if waits else None,
        "other_span": other,
        "other_label": "last 24 hours" if other == "24h" else "last hour",
        "points_with_data": sum(1 for p in points if p.done or p.failed),
    }
