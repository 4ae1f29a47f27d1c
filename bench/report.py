"""Turn a run's raw samples into docs/BENCHMARKS.md and its chart.

Every figure is a median over the run's repetitions with the min-max beside it;
every ratio divides two medians of the same run. The targets of issue 5 are
checked here, so the page says met or not met next to each measured value.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BATCH_SIZES = (1, 100, 500, 1000)


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], fmt: str = ",.0f", unit: str = "") -> str:
    if not values:
        return "n/a"
    m = format(med(values), fmt)
    if len(values) == 1:
        return f"{m}{unit}"
    return f"{m}{unit} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def _find(rows: list[dict[str, Any]], kind: str, workers: int, batch: int) -> dict[str, Any] | None:
    for row in rows:
        if row["kind"] == kind and row["workers"] == workers and row["batch"] == batch:
            return row
    return None


def _yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def failed_cases(results: dict[str, Any]) -> dict[str, str]:
    return {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}


def measured_results(results: dict[str, Any]) -> dict[str, Any]:
    """The results without the cases that failed."""
    failed = failed_cases(results)
    return {k: v for k, v in results.items() if k not in failed}


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of issue 5 this run measured."""
    results = measured_results(results)
    out: list[tuple[str, str, bool | None]] = []
    rows = results.get("throughput", [])
    project = _find(rows, "project", 2, 500)
    ceiling = _find(rows, "ceiling", 2, 500)
    if project:
        rate = med(project["rates"])
        measured = f"{spread(project['rates'])} events/s"
        out.append(("2 drainers, batch 500: >= 20,000 events/s", measured, rate >= 20_000))
        if ceiling:
            frac = rate / med(ceiling["rates"])
            out.append(
                (
                    "2 drainers, batch 500: >= 35% of the plain-SQL ceiling (2 workers, batch 500)",
                    f"{frac:.0%} of {med(ceiling['rates']):,.0f} events/s",
                    frac >= 0.35,
                )
            )
        redis = results.get("redis")
        if isinstance(redis, list) and redis:
            for per_item, factor in ((False, 3), (True, 10)):
                same = [r for r in redis if r["per_item"] == per_item]
                base = next((r for r in same if r["workers"] == 2), None) or next(iter(same), None)
                if base:
                    ratio = rate / med(base["rates"])
                    mode = "per-item" if per_item else "batch-commit"
                    out.append(
                        (
                            f">= {factor}x the old design's {mode} baseline ({base['workers']} worker(s))",
                            f"{ratio:.1f}x ({med(base['rates']):,.0f} results/s)",
                            ratio >= factor,
                        )
                    )
    for lat in results.get("latency", []):
        if lat.get("async_commit"):
            continue
        p50 = med([r["p50"] for r in lat["runs"]])
        p99 = med([r["p99"] for r in lat["runs"]])
        if lat["notify"]:
            out.append(("latency with NOTIFY: p50 <= 3 ms", f"{p50:.2f} ms", p50 <= 3))
            out.append(("latency with NOTIFY: p99 <= 15 ms", f"{p99:.2f} ms", p99 <= 15))
        else:
            bound = lat["interval"] * 1000 + 15
            out.append(
                (f"latency, NOTIFY off: p99 <= poll interval + 15 ms = {bound:.0f} ms", f"{p99:.1f} ms", p99 <= bound)
            )
    trig = results.get("trigger")
    if trig:
        for writers in ("1", "2"):
            data = trig["single"].get(writers, {})
            if "trigger" in data and "no_trigger" in data:
                ratio = med(data["no_trigger"]) / med(data["trigger"])
                out.append(
                    (
                        f"single-row insert cost, {writers} writer(s): trigger <= 1.3x no trigger",
                        f"{ratio:.2f}x",
                        ratio <= 1.3,
                    )
                )
        if "trigger" in trig["bulk"] and "no_trigger" in trig["bulk"]:
            ratio = med(trig["bulk"]["trigger"]) / med(trig["bulk"]["no_trigger"])
            out.append(
                (f"bulk_create of {trig['bulk_rows']:,}: trigger <= 2.2x no trigger", f"{ratio:.2f}x", ratio <= 2.2)
            )
    scale = results.get("scale")
    if scale:
        frac = med(scale["done"]["rates"]) / med(scale["empty"]["rates"])
        out.append(
            (
                f"claim throughput with {scale['done_rows']:,} done rows >= 80% of empty",
                f"{frac:.0%} ({med(scale['done']['rates']):,.0f} vs {med(scale['empty']['rates']):,.0f} events/s)",
                frac >= 0.8,
            )
        )
    mem = results.get("memory")
    if mem:
        growth = (mem["max_after_warm_kib"] - mem["warm_kib"]) / 1024
        out.append(
            (
                f"drainer memory growth over {mem['events']:,} events < 20 MB",
                f"{growth:.1f} MiB (warm {mem['warm_kib'] / 1024:.0f} MiB, peak {mem['peak_kib'] / 1024:.0f} MiB)",
                growth < 20,
            )
        )
    return out


def throughput_table(rows: list[dict[str, Any]], counts: Sequence[int]) -> list[str]:
    lines = [
        "| batch | drainers | project events/s | ceiling events/s | project / ceiling |",
        "|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCH_SIZES:
        for k in counts:
            p = _find(rows, "project", k, batch)
            c = _find(rows, "ceiling", k, batch)
            if not p and not c:
                continue
            frac = f"{med(p['rates']) / med(c['rates']):.0%}" if p and c else "n/a"
            project = spread(p["rates"]) if p else "n/a"
            ceiling = spread(c["rates"]) if c else "n/a"
            lines.append(f"| {batch} | {k} | {project} | {ceiling} | {frac} |")
    return lines


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


def markdown(results: dict[str, Any], chart_name: str | None, analysis: str) -> str:
    failed = failed_cases(results)
    results = measured_results(results)
    meta = results["meta"]
    out: list[str] = ["# Benchmarks", ""]
    if failed:
        out += ["**Cases that failed in this run:** " + "; ".join(f"{k}: {v}" for k, v in failed.items()), ""]
    out += [
        f"Generated by `{meta['command']}` on {meta['date']} ({meta['mode']} run, "
        f"{meta['repeats']} repetition(s) per case, {meta['seconds']:.0f} s in all). Figures are medians "
        "with min–max over the repetitions; every ratio divides two medians of this same run."
        + "".join(f" Re-run: {r}." for r in meta.get("reruns", [])),
        "",
        "## Machine and versions",
        "",
        f"- CPU: {meta['cpu']} ({meta['cores']} cores), memory {meta['memory']}; {meta['os']}",
        f"- Load (`uptime`) at start {meta['load_start']}, at end {meta['load_end']}; per case below. "
        + meta.get("load_note", ""),
        f"- PostgreSQL: {meta['server_version']} ({meta['server']}); "
        + ", ".join(f"{k}={v}" for k, v in meta["settings"].items() if k != "server_version"),
        f"- Python {meta['python']}; " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()),
        "",
        "## Targets (issue 5)",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    out += [f"| {t} | {m} | {_yes(ok)} |" for t, m, ok in targets(results)]
    rows = results.get("throughput", [])
    if rows:
        counts = sorted({r["workers"] for r in rows})
        out += [
            "",
            "## Drain throughput against the plain-SQL ceiling",
            "",
            "Real `manage.py drain_outbox` processes (default verbosity, NOTIFY on) with the pricing handler, "
            f"over a fresh backlog of {meta['backlog']:,} results for the headline configuration (2 drainers, batch "
            f"500, {meta['repeats']} repetitions) and {meta['matrix_backlog']:,} for the others "
            f"({meta['backlog_batch1']:,} at batch size 1; {meta['matrix_repeats']} repetitions), spread over "
            f"{meta['products']:,} products. "
            "The clock runs from the COMMIT that makes the backlog visible (drainers idle on LISTEN) to the moment "
            "no event is pending. The ceiling is one set-based statement per batch (claim with SKIP LOCKED, "
            "insert the eligible results' history, mark done) in N plain psycopg processes: no per-product lock, "
            "no stale or unchanged-price check, no result status.",
            "",
        ]
        out += throughput_table(rows, counts)
        vac = results.get("vacuumed")
        headline = _find(rows, "project", 2, 500)
        if vac and headline:
            out += [
                "",
                f"Autovacuum tuning, measured: the headline drain again while another session runs "
                f"`VACUUM outbox_event` every {vac['every']:.0f} s (what aggressive per-table autovacuum settings "
                f"would do): {spread(vac['rates'])} events/s against {spread(headline['rates'])} without "
                f"({med(vac['rates']) / med(headline['rates']):.2f}x).",
            ]
        variants = results.get("session_variants") or []
        if variants and headline:
            out += [
                "",
                "Where the time goes, measured: the headline drain again with other settings in the drainers' "
                "sessions only (PGOPTIONS). `synchronous_commit=off` is a diagnostic of what the WAL flush at each "
                "COMMIT costs, never a recommendation; `random_page_cost=1.1` is the usual setting for data that is "
                "cached or on SSD.",
                "",
                "| drainers' sessions | events/s | vs as configured |",
                "|---|---:|---:|",
                f"| as configured | {spread(headline['rates'])} | 1.00x |",
            ]
            for v in variants:
                ratio = med(v["rates"]) / med(headline["rates"])
                out.append(f"| `{v['pgoptions']}` | {spread(v['rates'])} | {ratio:.2f}x |")
        if chart_name:
            out += ["", f"![throughput by batch size and drainers]({chart_name})"]
    redis = results.get("redis")
    if isinstance(redis, list) and redis:
        out += [
            "",
            "## The old design's shape (Redis list)",
            "",
            f"{redis[0]['events']:,} result ids pushed to a list on the local Redis; each worker pops 100 at a time "
            "and records each result with the ORM (fetch, criteria, latest price, insert history, update the "
            "result), committing once per item or once per popped batch.",
            "",
            "| mode | workers | results/s | 2 drainers batch 500 / this |",
            "|---|---:|---:|---:|",
        ]
        project = _find(rows, "project", 2, 500)
        for r in redis:
            ratio = f"{med(project['rates']) / med(r['rates']):.1f}x" if project else "n/a"
            mode = "one commit per item" if r["per_item"] else "one commit per batch of 100"
            out.append(f"| {mode} | {r['workers']} | {spread(r['rates'])} | {ratio} |")
    elif isinstance(redis, dict) and redis.get("skipped"):
        out += ["", "## The old design's shape (Redis list)", "", f"Skipped: {redis['skipped']}"]
    lats = results.get("latency", [])
    if lats:
        out += [
            "",
            "## End-to-end latency",
            "",
            f"A writer commits one CrawlResult every {1000 / meta['latency_rate']:.0f} ms "
            f"({meta['latency_rate']:.0f}/s) for {meta['latency_seconds']:.0f} s; a probe trigger "
            "(bench database only) NOTIFYs each PriceHistory row, which a listener receives at the drainer's COMMIT. "
            f"Latency = that receipt minus the writer's COMMIT return. {lats[0]['drainers']} drainers, batch "
            f"{lats[0]['batch']}.",
            "",
            "| wake-up | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for lat in lats:
            label = "NOTIFY" if lat["notify"] else f"poll only, interval {lat['interval'] * 1000:.0f} ms"
            if lat.get("async_commit"):
                label += ", drainers' synchronous_commit off (diagnostic)"
            cols = [spread([r[q] for r in lat["runs"]], ".2f") for q in ("p50", "p95", "p99", "max")]
            out.append(f"| {label} | " + " | ".join(cols) + " |")
    trig = results.get("trigger")
    if trig:
        names = {
            "trigger": "outbox trigger (NOTIFY on)",
            "trigger_notify_off": "outbox trigger, `SET outbox.notify = off`",
            "trigger_with_ignore_check": "outbox trigger with a pgtrigger-style ignore check (what it saves)",
            "no_trigger": "no trigger (disabled)",
        }
        out += [
            "",
            "## The trigger's cost for writers",
            "",
            f"Single-row inserts: {trig['rows']:,} plain-SQL INSERTs per writer, each its own transaction, "
            f"in {trig.get('chunks', 1)} turn(s) with the variants taking turns in a rotating order "
            "(synchronous_commit as configured, a LISTEN session connected). `bulk_create` of "
            f"{trig['bulk_rows']:,} rows in one transaction through the ORM. Cost = time per row relative to "
            "no trigger.",
            "",
            "| variant | 1 writer inserts/s | cost | 2 writers inserts/s | cost | bulk_create s | cost |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        base1 = med(trig["single"]["1"].get("no_trigger", []))
        base2 = med(trig["single"]["2"].get("no_trigger", []))
        baseb = med(trig["bulk"].get("no_trigger", []))
        for variant, label in names.items():
            s1 = trig["single"]["1"].get(variant, [])
            s2 = trig["single"]["2"].get(variant, [])
            b = trig["bulk"].get(variant, [])
            out.append(
                f"| {label} | {spread(s1)} | {base1 / med(s1):.2f}x | {spread(s2)} | {base2 / med(s2):.2f}x | "
                f"{spread(b, '.3f')} | {med(b) / baseb:.2f}x |"
            )
    scale = results.get("scale")
    if scale:
        out += [
            "",
            "## Scale",
            "",
            f"Claim throughput: the outbox's own `event_claim_batch` (batch {scale['batch']}) and `event_ack_done`, "
            f"each its own transaction, one client, over {scale['backlog']:,} pending events; the table empty "
            f"otherwise, then holding {scale['done_rows']:,} done rows (VACUUM ANALYZE after loading, as "
            "autovacuum would leave it).",
            "",
            "| table | claim+ack events/s | ms per claim | outbox_event size |",
            "|---|---:|---:|---:|",
        ]
        for state, label in (("empty", "no done rows"), ("done", f"{scale['done_rows']:,} done rows")):
            d = scale[state]
            out.append(
                f"| {label} | {spread(d['rates'])} | {spread(d['claim_ms'], '.2f')} | "
                f"{d['table_bytes'] / 1048576:,.0f} MiB |"
            )
    mem = results.get("memory")
    if mem:
        out += [
            "",
            f"Drainer memory: one `drain_outbox` (batch {mem['batch']}) over {mem['events']:,} events in "
            f"{mem['seconds']:.0f} s; RSS sampled every 0.25 s from /proc. At start {mem['start_kib'] / 1024:.1f} MiB, "
            f"after {mem['warm_at']:,} events {mem['warm_kib'] / 1024:.1f} MiB, highest sample after that "
            f"{mem['max_after_warm_kib'] / 1024:.1f} MiB, peak (VmHWM) {mem['peak_kib'] / 1024:.1f} MiB.",
        ]
    pin = results.get("pinned")
    if pin:
        out += [
            "",
            f"Pinned xmin: {pin['drainers']} drainers (batch {pin['batch']}) drain rounds of {pin['round_events']:,} "
            f"events back to back; a REPEATABLE READ transaction holds its snapshot for {pin['pin_seconds']:.0f} s "
            "in the middle.",
            "",
            "| phase | events/s |",
            "|---|---:|",
            f"| before (3 rounds) | {spread(pin['baseline'])} |",
            f"| pinned, first round | {pin['pinned_first'] or 0:,.0f} |",
            f"| pinned, median of {pin['pinned_rounds']} rounds | {pin['pinned_median'] or 0:,.0f} |",
            f"| pinned, last round | {pin['pinned_last'] or 0:,.0f} |",
            f"| first round after release | {pin['first_after'] or 0:,.0f} |",
            "",
            "Back within 10% of the rate before the pin: "
            + (
                f"{pin['recovered_after_s']:.1f} s after the release."
                if pin["recovered_after_s"] is not None
                else "not within the observation window."
            ),
        ]
    loads = meta.get("loads", {})
    if loads:
        out += ["", "Load averages (1, 5, 15 min) sampled during each case: "]
        out += [f"- {case}: " + "; ".join(sorted(set(values))[:6]) for case, values in loads.items()]
    out += ["", "## How to run", "", "```sh", *meta["how_to_run"], "```"]
    if analysis.strip():
        out += ["", analysis.strip()]
    return "\n".join(out) + "\n"
