"""The analysis's figures: bench/analysis.md is a template, filled from results.json.

The hand-written analysis quotes figures only as ``{{name}}`` placeholders; each
name is computed here from the run's samples, so a figure on the page always is the
recorded one, and a figure the run did not record reads "not recorded in this run".
A name this module does not know is an error that lists the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bench.samples import HEADLINE, NOT_RECORDED, find_row, med, one_minute_loads, rate_ratio

PLACEHOLDER = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")


class UnknownFigure(ValueError):
    """The analysis names a figure bench/figures.py does not compute."""


def ratio_text(a: dict[str, Any] | None, b: dict[str, Any] | None, fmt: str = ".2f", unit: str | None = None) -> str:
    """median(a) / median(b) formatted, or why there is none (a side missing, different backlogs)."""
    if unit is None:
        unit = "" if fmt.endswith("%") else "x"
    if not a or not b:
        return "n/a"
    ratio = rate_ratio(a, b)
    if ratio is None:
        return f"n/a (backlogs of {a.get('events') or 0:,} and {b.get('events') or 0:,})"
    return f"{format(ratio, fmt)}{unit}"


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = results.get("throughput")
    return rows if isinstance(rows, list) else []


def _rate(kind: str, workers: int, batch: int) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        row = find_row(_rows(results), kind, workers, batch)
        return f"{med(row['rates']):,.0f} events/s" if row else None

    return figure


def _fraction(kind: str, workers: int, batch: int) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        rows = _rows(results)
        project = find_row(rows, kind, workers, batch)
        ceiling = find_row(rows, kind.replace("project", "ceiling"), workers, batch)
        ratio = rate_ratio(project, ceiling) if project and ceiling else None
        return f"{ratio:.0%}" if ratio is not None else None

    return figure


def _latency(notify: bool, quantile: str) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        for lat in results.get("latency") or []:
            if lat["notify"] == notify and not lat.get("async_commit"):
                return f"{med([r[quantile] for r in lat['runs']]):.1f} ms"
        return None

    return figure


def _trigger_cost(variant: str, writers: str) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        trig = results.get("trigger")
        if not trig:
            return None
        if writers == "bulk":
            data = trig["bulk"]
            return f"{med(data[variant]) / med(data['no_trigger']):.2f}x" if variant in data else None
        data = trig["single"].get(writers, {})
        return f"{med(data['no_trigger']) / med(data[variant]):.2f}x" if variant in data else None

    return figure


def _session_ratio(pgoptions: str) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        headline = find_row(_rows(results), "project", *HEADLINE)
        variant = next((v for v in results.get("session_variants") or [] if v["pgoptions"] == pgoptions), None)
        if not headline or not variant:
            return None
        return ratio_text(variant, headline)

    return figure


def _vacuumed_ratio(results: dict[str, Any]) -> str | None:
    headline = find_row(_rows(results), "project", *HEADLINE)
    vac = results.get("vacuumed")
    return ratio_text(vac, headline) if vac and headline else None


def _load(pick: Callable[[list[float]], float]) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        values = [v for samples in results["meta"].get("loads", {}).values() for v in one_minute_loads(samples)]
        return f"{pick(values):.2f}" if values else None

    return figure


def _scale_fraction(results: dict[str, Any]) -> str | None:
    scale = results.get("scale")
    return f"{med(scale['done']['rates']) / med(scale['empty']['rates']):.0%}" if scale else None


def _memory_growth(results: dict[str, Any]) -> str | None:
    mem = results.get("memory")
    return f"{(mem['max_after_warm_kib'] - mem['warm_kib']) / 1024:.1f} MiB" if mem else None


def _pinned(key: str) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        pin = results.get("pinned")
        if not pin:
            return None
        value = med(pin["baseline"]) if key == "baseline" else pin.get(key)
        return f"{value:,.0f} events/s" if value is not None else None

    return figure


def _pinned_recovery(results: dict[str, Any]) -> str | None:
    pin = results.get("pinned")
    if not pin:
        return None
    after = pin["recovered_after_s"]
    return f"{after:.1f} s after the release" if after is not None else "not within the observation window"


def _profile(handler: str, batch: int, key: str, fmt: str) -> Callable[[dict[str, Any]], str | None]:
    def figure(results: dict[str, Any]) -> str | None:
        for p in results.get("profile") or []:
            if (p["handler"], p["batch"]) == (handler, batch):
                return fmt.format(p[key])
        return None

    return figure


def _setting(name: str) -> Callable[[dict[str, Any]], str | None]:
    return lambda results: results["meta"].get("settings", {}).get(name)


FIGURES: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "cores": lambda r: str(r["meta"]["cores"]),
    "server_version": lambda r: r["meta"].get("server_version"),
    "autovacuum": _setting("autovacuum"),
    "latency_rate": lambda r: f"{r['meta']['latency_rate']:.0f} results/s",
    "load_min": _load(min),
    "load_median": _load(med),
    "load_max": _load(max),
    "headline_rate": _rate("project", *HEADLINE),
    "headline_ceiling": _rate("ceiling", *HEADLINE),
    "headline_fraction": _fraction("project", *HEADLINE),
    "trivial_rate": _rate("trivial_project", *HEADLINE),
    "trivial_ceiling": _rate("trivial_ceiling", *HEADLINE),
    "trivial_fraction": _fraction("trivial_project", *HEADLINE),
    "batch1_1_rate": _rate("project", 1, 1),
    "batch1_1_fraction": _fraction("project", 1, 1),
    "batch1_2_rate": _rate("project", 2, 1),
    "batch1_2_fraction": _fraction("project", 2, 1),
    "rate_1_500": _rate("project", 1, 500),
    "rate_3_500": _rate("project", 3, 500),
    "rate_4_500": _rate("project", 4, 500),
    "fraction_1000_2": _fraction("project", 2, 1000),
    "latency_p50": _latency(True, "p50"),
    "latency_p99": _latency(True, "p99"),
    "poll_p50": _latency(False, "p50"),
    "poll_p99": _latency(False, "p99"),
    "trigger_cost_1": _trigger_cost("trigger", "1"),
    "trigger_cost_2": _trigger_cost("trigger", "2"),
    "trigger_cost_2_notify_off": _trigger_cost("trigger_notify_off", "2"),
    "trigger_cost_1_ignore_check": _trigger_cost("trigger_with_ignore_check", "1"),
    "bulk_cost": _trigger_cost("trigger", "bulk"),
    "vacuumed_ratio": _vacuumed_ratio,
    "async_commit_ratio": _session_ratio("-c synchronous_commit=off"),
    "cached_pages_ratio": _session_ratio("-c random_page_cost=1.1"),
    "scale_fraction": _scale_fraction,
    "memory_growth": _memory_growth,
    "pinned_before": _pinned("baseline"),
    "pinned_first": _pinned("pinned_first"),
    "pinned_last": _pinned("pinned_last"),
    "pinned_recovery": _pinned_recovery,
    "profile_round_trips_500": _profile("pricing", 500, "round_trips_per_batch", "{:.2f}"),
    "profile_round_trips_trivial": _profile("trivial", 500, "round_trips_per_batch", "{:.2f}"),
    "profile_round_trips_1": _profile("pricing", 1, "round_trips_per_batch", "{:.2f}"),
    "profile_cpu_500": _profile("pricing", 500, "cpu_us_per_event", "{:,.0f} us"),
    "profile_cpu_1": _profile("pricing", 1, "cpu_us_per_event", "{:,.0f} us"),
    "profile_rate_500": _profile("pricing", 500, "rate", "{:,.0f} events/s"),
}


def figures(results: dict[str, Any]) -> dict[str, str]:
    """Every named figure of ``results``; NOT_RECORDED where the run has none."""
    out: dict[str, str] = {}
    for name, compute in FIGURES.items():
        try:
            value = compute(results)
        except (KeyError, TypeError, ZeroDivisionError):
            value = None
        out[name] = NOT_RECORDED if value is None or re.search(r"\bnan\b", str(value)) else str(value)
    return out


def render(template: str, results: dict[str, Any]) -> str:
    """``template`` with each ``{{name}}`` replaced by that figure of ``results``."""
    unknown = sorted({m for m in PLACEHOLDER.findall(template) if m not in FIGURES})
    if unknown:
        raise UnknownFigure(
            f"bench/analysis.md names unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}"
        )
    values = figures(results)
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
