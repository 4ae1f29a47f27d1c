"""Turn a run's raw samples into docs/BENCHMARKS.md and its chart.

Every figure on the page is computed here from results.json (``--report-only``
rewrites the page byte for byte): medians with the min-max beside them, ratios of
two medians of rows that drained the same backlog, the targets of issues 10 and 5
(bench/targets.py) with the samples behind each, and the analysis, a template whose
figures bench/figures.py fills from the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import figures
from bench.merge import runs_of
from bench.profile_drain import summary as profile_summary
from bench.samples import (
    HEADLINE,
    NOT_RECORDED,
    failed_cases,
    find_row,
    measured_results,
    med,
    one_minute_loads,
    spread,
)
from bench.targets import targets

BATCH_SIZES = (1, 100, 500, 1000)

#: The commands of the page's "How to run" (the code's, not the run's: they are no measurement).
HOW_TO_RUN = (
    "pip install -r requirements.txt -r bench/requirements.txt",
    "python bench/run.py            # full run: rewrites bench/results.json, docs/BENCHMARKS.md and its chart",
    "python bench/run.py --quick    # every case once at a small scale, report in a temp folder",
    "python bench/run.py --update --cases trigger   # re-run cases, merged into bench/results.json",
    "python bench/run.py --report-only              # the page again from bench/results.json and bench/analysis.md",
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python bench/run.py  # on that server",
)

#: Pages of other benchmarks, linked once their script is in the repository: (title, page next to
#: this one, script). The writers' benchmark (bench/writers.py) writes docs/writers.md from
#: bench/writers.json; add a row here for the next benchmark with a page of its own.
LINKED_PAGES = (("Writers' benchmark", "writers.md", "bench/writers.py"),)


def _from_run(index: int) -> str:
    """The mark of a row or case that a later ``--update`` run measured ("" for run 0)."""
    return f" (run {index})" if index else ""


def _case_run(results: dict[str, Any], case: str) -> str:
    """The mark of a case a later ``--update`` run replaced whole ("" when run 0 measured it)."""
    return _from_run(results["meta"].get("case_runs", {}).get(case, 0))


def throughput_table(rows: list[dict[str, Any]], counts: Sequence[int], kind: str = "project") -> list[str]:
    """Project against its plain-SQL counterpart per batch size and drainers, with each side's n."""
    other = kind.replace("project", "ceiling")
    lines = [
        "| batch | drainers | project events/s | ceiling events/s | project / ceiling | backlog | n |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in BATCH_SIZES:
        for k in counts:
            p = find_row(rows, kind, k, batch)
            c = find_row(rows, other, k, batch)
            if not p and not c:
                continue
            both = [r for r in (p, c) if r]
            ratio = figures.ratio_text(p, c, ".0%")
            backlogs = (
                "/".join(f"{r['events']:,}" for r in both)
                if len({r["events"] for r in both}) > 1
                else f"{both[0]['events']:,}"
            )
            n = "/".join(str(len(r["rates"])) for r in both)
            marks = "".join(sorted({_from_run(r.get("run", 0)) for r in both}))
            project = spread(p["rates"]) if p else "n/a"
            ceiling = spread(c["rates"]) if c else "n/a"
            lines.append(f"| {batch} | {k}{marks} | {project} | {ceiling} | {ratio} | {backlogs} | {n} |")
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


def _header(results: dict[str, Any], failed: dict[str, str]) -> list[str]:
    meta = results["meta"]
    out: list[str] = ["# Benchmarks", ""]
    if failed:
        out += ["**Cases that failed in this run:** " + "; ".join(f"{k}: {v}" for k, v in failed.items()), ""]
    out += [
        f"Generated by `{meta['command']}` on {meta['date']} ({meta['mode']} run, "
        f"{meta['repeats']} repetition(s) per case, {meta['seconds']:.0f} s in all). Figures are medians "
        "with min–max over the repetitions (n = the number of repetitions behind each side); every ratio "
        "divides two medians of rows that drained the same backlog."
        + "".join(f" Re-run: {r}." for r in meta.get("reruns", [])),
    ]
    runs = runs_of(meta)
    if len(runs) > 1:
        out += ["", "Later runs merged in with `--update` (rows and sections they measured say so):", ""]
        out += [
            f"- run {i}: `{run['command']}` on {run['date']} (load {run['load_start']} -> {run['load_end']}): "
            f"{run['cases']}"
            for i, run in enumerate(runs)
            if i
        ]
    return out


def _machine(meta: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Machine and versions",
        "",
        f"- CPU: {meta['cpu']} ({meta['cores']} cores), memory {meta['memory']}; {meta['os']}",
        f"- Load (`uptime`) at start {meta['load_start']}, at end {meta['load_end']}; per case after the "
        "tables. " + meta.get("load_note", ""),
        f"- PostgreSQL: {meta['server_version']} ({meta['server']}); "
        + ", ".join(f"{k}={v}" for k, v in meta["settings"].items() if k != "server_version"),
        f"- Python {meta['python']}; " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()),
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    out = ["", "## Targets (issues 10 and 5)", "", "| issue | target | measured | n | |", "|---:|---|---|---|---|"]
    for t in targets(results):
        met = "n/a" if t.met is None else ("**met**" if t.met else "**not met**")
        out.append(f"| {t.issue} | {t.text} | {t.measured} | {t.n} | {met} |")
    return out


def _throughput(results: dict[str, Any], chart_name: str | None) -> list[str]:
    meta = results["meta"]
    rows = results.get("throughput", [])
    if not rows:
        return []
    counts = sorted({r["workers"] for r in rows})
    out = [
        "",
        "## Drain throughput against the plain-SQL ceiling",
        "",
        "Real `manage.py drain_outbox` processes (default verbosity, NOTIFY on) with the pricing handler, "
        f"over a fresh backlog of {meta['backlog']:,} results for the headline configuration (2 drainers, batch "
        f"500, {meta['repeats']} repetitions) and {meta['matrix_backlog']:,} for the others "
        f"({meta['backlog_batch1']:,} at batch size 1; {meta['matrix_repeats']} repetitions), spread over "
        f"{meta['products']:,} products; each configuration's ceiling drains the same backlog. "
        "The clock runs from the COMMIT that makes the backlog visible (drainers idle on LISTEN) to the moment "
        "no event is pending. The ceiling is one set-based statement per batch (claim with SKIP LOCKED, "
        "insert the eligible results' history, mark done) in N plain psycopg processes: no per-product lock, "
        "no stale or unchanged-price check, no result status.",
        "",
        *throughput_table(rows, counts),
        "",
        "### Trivial handler",
        "",
    ]
    if any(r["kind"] == "trivial_project" for r in rows):
        out += [
            "The same machinery with the bench's trivial topic (`drain_outbox --topic bench.trivial`: one "
            "`INSERT ... SELECT unnest(...)` of one row per event, no order key) against a plain-SQL claim / "
            "insert / mark-done loop doing exactly that work, same backlog.",
            "",
            *throughput_table(rows, counts, "trivial_project"),
        ]
    else:
        out.append(f"The trivial-handler case: {NOT_RECORDED}.")
    out += _headline_variants(results)
    if chart_name:
        out += ["", f"![throughput by batch size and drainers]({chart_name})"]
    return out


def _headline_variants(results: dict[str, Any]) -> list[str]:
    headline = find_row(results.get("throughput", []), "project", *HEADLINE)
    if not headline:
        return []
    out: list[str] = []
    vac = results.get("vacuumed")
    if vac:
        out += [
            "",
            f"Autovacuum tuning, measured{_case_run(results, 'vacuumed')}: the headline drain again while "
            "another session runs "
            f"`VACUUM outbox_event` every {vac['every']:.0f} s (what aggressive per-table autovacuum settings "
            f"would do): {spread(vac['rates'])} events/s against {spread(headline['rates'])} without "
            f"({figures.ratio_text(vac, headline)}, n={len(vac['rates'])}/{len(headline['rates'])}).",
        ]
    variants = results.get("session_variants") or []
    if variants:
        out += [
            "",
            f"Where the time goes, measured{_case_run(results, 'session_variants')}: the headline drain again "
            "with other settings in the drainers' "
            "sessions only (PGOPTIONS). `synchronous_commit=off` is a diagnostic of what the WAL flush at each "
            "COMMIT costs, never a recommendation; `random_page_cost=1.1` is the usual setting for data that is "
            "cached or on SSD.",
            "",
            "| drainers' sessions | events/s | vs as configured | n |",
            "|---|---:|---:|---:|",
            f"| as configured | {spread(headline['rates'])} | 1.00x | {len(headline['rates'])} |",
        ]
        for v in variants:
            out.append(
                f"| `{v['pgoptions']}` | {spread(v['rates'])} | {figures.ratio_text(v, headline)} | {len(v['rates'])} |"
            )
    return out


def _redis(results: dict[str, Any]) -> list[str]:
    redis = results.get("redis")
    if isinstance(redis, dict) and redis.get("skipped"):
        return [
            "",
            f"## The old design's shape (Redis list){_case_run(results, 'redis')}",
            "",
            f"Skipped: {redis['skipped']}",
        ]
    if not isinstance(redis, list) or not redis:
        return []
    project = results.get("redis_project")
    out = [
        "",
        f"## The old design's shape (Redis list){_case_run(results, 'redis')}",
        "",
        f"{redis[0]['events']:,} result ids pushed to a list on the local Redis; each worker pops 100 at a time "
        "and records each result with the ORM (fetch, criteria, latest price, insert history, update the "
        "result), committing once per item or once per popped batch. The project's side: 2 drainers, batch "
        + (
            f"500 over the same backlog: {spread(project['rates'])} events/s (n={len(project['rates'])})."
            if project
            else f"500 over the same backlog: {NOT_RECORDED}."
        ),
        "",
        "| mode | workers | results/s | n | 2 drainers batch 500 / this |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in redis:
        ratio = figures.ratio_text(project, r, ".1f", "x") if project else NOT_RECORDED
        mode = "one commit per item" if r["per_item"] else "one commit per batch of 100"
        out.append(f"| {mode} | {r['workers']} | {spread(r['rates'])} | {len(r['rates'])} | {ratio} |")
    return out


def _latency(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    lats = results.get("latency", [])
    if not lats:
        return []
    out = [
        "",
        f"## End-to-end latency{_case_run(results, 'latency')}",
        "",
        f"A writer commits one CrawlResult every {1000 / meta['latency_rate']:.0f} ms "
        f"({meta['latency_rate']:.0f}/s) for {meta['latency_seconds']:.0f} s; a probe trigger "
        "(bench database only) NOTIFYs each PriceHistory row, which a listener receives at the drainer's COMMIT. "
        f"Latency = that receipt minus the writer's COMMIT return. {lats[0]['drainers']} drainers, batch "
        f"{lats[0]['batch']}; n = repetitions x results per repetition.",
        "",
        "| wake-up | p50 ms | p95 ms | p99 ms | max ms | n |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for lat in lats:
        label = "NOTIFY" if lat["notify"] else f"poll only, interval {lat['interval'] * 1000:.0f} ms"
        if lat.get("async_commit"):
            label += ", drainers' synchronous_commit off (diagnostic)"
        cols = [spread([r[q] for r in lat["runs"]], ".2f") for q in ("p50", "p95", "p99", "max")]
        n = f"{len(lat['runs'])} x {med([r['n'] for r in lat['runs']]):,.0f}"
        out.append(f"| {label} | " + " | ".join(cols) + f" | {n} |")
    return out


TRIGGER_NAMES = {
    "trigger": "outbox trigger (NOTIFY on)",
    "trigger_notify_off": "outbox trigger, `SET outbox.notify = off`",
    "trigger_with_ignore_check": "outbox trigger with a pgtrigger-style ignore check (what it saves)",
    "no_trigger": "no trigger (disabled)",
}


def _trigger(results: dict[str, Any]) -> list[str]:
    trig = results.get("trigger")
    if not trig:
        return []
    bulk_turns = trig.get("bulk_turns")
    bulk_how = (
        f"in {bulk_turns} turn(s) per repetition, the variants taking turns in a rotating order like the "
        "single-row ones (each sample: the mean over a repetition's turns)"
        if bulk_turns
        else "one variant after the other (this run did not interleave them)"
    )
    out = [
        "",
        "## The trigger's cost for writers",
        "",
        f"Single-row inserts: {trig['rows']:,} plain-SQL INSERTs per writer, each its own transaction, "
        f"in {trig.get('chunks', 1)} turn(s) with the variants taking turns in a rotating order "
        "(synchronous_commit as configured, a LISTEN session connected). `bulk_create` of "
        f"{trig['bulk_rows']:,} rows in one transaction through the ORM, {bulk_how}. Cost = time per row "
        f"relative to no trigger. n = {len(trig['single']['1'].get('trigger', []))} repetition(s) per variant"
        f"{_case_run(results, 'trigger')}.",
        "",
        "| variant | 1 writer inserts/s | cost | 2 writers inserts/s | cost | bulk_create s | cost |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base1 = med(trig["single"]["1"].get("no_trigger", []))
    base2 = med(trig["single"]["2"].get("no_trigger", []))
    baseb = med(trig["bulk"].get("no_trigger", []))
    for variant, label in TRIGGER_NAMES.items():
        s1 = trig["single"]["1"].get(variant, [])
        s2 = trig["single"]["2"].get(variant, [])
        b = trig["bulk"].get(variant, [])
        out.append(
            f"| {label} | {spread(s1)} | {base1 / med(s1):.2f}x | {spread(s2)} | {base2 / med(s2):.2f}x | "
            f"{spread(b, '.3f')} | {med(b) / baseb:.2f}x |"
        )
    return out


def _scale(results: dict[str, Any]) -> list[str]:
    scale = results.get("scale")
    if not scale:
        return []
    out = [
        "",
        f"## Scale{_case_run(results, 'scale')}",
        "",
        f"Claim throughput: the outbox's own `event_claim_batch` (batch {scale['batch']}) and `event_ack_done`, "
        f"each its own transaction, one client, over {scale['backlog']:,} pending events; the table empty "
        f"otherwise, then holding {scale['done_rows']:,} done rows (VACUUM ANALYZE after loading, as "
        "autovacuum would leave it).",
        "",
        "| table | claim+ack events/s | ms per claim | outbox_event size | n |",
        "|---|---:|---:|---:|---:|",
    ]
    for state, label in (("empty", "no done rows"), ("done", f"{scale['done_rows']:,} done rows")):
        d = scale[state]
        out.append(
            f"| {label} | {spread(d['rates'])} | {spread(d['claim_ms'], '.2f')} | "
            f"{d['table_bytes'] / 1048576:,.0f} MiB | {len(d['rates'])} |"
        )
    return out


def _memory_and_pin(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    mem = results.get("memory")
    if mem:
        out += [
            "",
            f"Drainer memory{_case_run(results, 'memory')}: one `drain_outbox` (batch {mem['batch']}) over "
            f"{mem['events']:,} events in "
            f"{mem['seconds']:.0f} s; RSS sampled every 0.25 s from /proc. At start {mem['start_kib'] / 1024:.1f} MiB, "
            f"after {mem['warm_at']:,} events {mem['warm_kib'] / 1024:.1f} MiB, highest sample after that "
            f"{mem['max_after_warm_kib'] / 1024:.1f} MiB, peak (VmHWM) {mem['peak_kib'] / 1024:.1f} MiB.",
        ]
    pin = results.get("pinned")
    if pin:
        out += [
            "",
            f"Pinned xmin{_case_run(results, 'pinned')}: {pin['drainers']} drainers (batch {pin['batch']}) drain "
            f"rounds of {pin['round_events']:,} "
            f"events back to back; a REPEATABLE READ transaction holds its snapshot for {pin['pin_seconds']:.0f} s "
            "in the middle.",
            "",
            "| phase | events/s |",
            "|---|---:|",
            f"| before ({len(pin['baseline'])} rounds) | {spread(pin['baseline'])} |",
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
    return out


def _profile(results: dict[str, Any]) -> list[str]:
    out = ["", f"## Where one drainer's time goes{_case_run(results, 'profile')}", ""]
    profiles = results.get("profile")
    if not profiles:
        return [*out, f"`python bench/profile_drain.py`: {NOT_RECORDED}."]
    out += [
        "`python bench/profile_drain.py` in the bench database: one in-process drainer over a fresh backlog; "
        "round trips counted through a proxy over a first pass of batches (a backlog of its own), then every "
        "statement of a second, timed pass at psycopg's `execute` (the pipelined ones as a whole). "
        '"Outside them" is wall time minus the statements: Python, the driver, the network.',
    ]
    for p in profiles:
        out += ["", f"{p['handler']} handler, batch {p['batch']}:", "", "```", *profile_summary(p), "```"]
    return out


def _loads(meta: dict[str, Any]) -> list[str]:
    loads = meta.get("loads", {})
    if not loads:
        return []
    out = ["", "Load average (1 min) sampled during each case, min / median / max over its samples:", ""]
    for case, values in loads.items():
        ones = one_minute_loads(values)
        if ones:
            out.append(f"- {case}: {min(ones):.2f} / {med(ones):.2f} / {max(ones):.2f} (n={len(ones)})")
    return out


def _superseded(results: dict[str, Any]) -> list[str]:
    """Earlier samples an ``--update`` replaced: kept in results.json, summed up here."""
    entries = results.get("superseded") or []
    if not entries:
        return []
    out = ["", "## Earlier samples (replaced by a later run, kept in results.json under `superseded`)", ""]
    for e in entries:
        data = e["data"]
        if e["case"] == "throughput":
            what = (
                f"throughput {data['kind']} x{data['workers']} batch {data['batch']}: {spread(data['rates'])} events/s"
            )
            what += f" over {data['events']:,} (n={len(data['rates'])})"
        else:
            what = e["case"]
        out.append(f"- {what}; from run {e['run']}, replaced by run {e['replaced_by']}")
    return out


def _linked(pages: Sequence[tuple[str, str, str]]) -> list[str]:
    out: list[str] = []
    for title, file, command in pages:
        out += ["", f"## {title}", "", f"On its own page: [{file}]({file}) (`python {command}`)."]
    return out


def markdown(
    results: dict[str, Any], chart_name: str | None, analysis: str, linked: Sequence[tuple[str, str, str]] = ()
) -> str:
    """The whole page from ``results``; ``analysis`` is bench/analysis.md's template ("" for none)."""
    failed = failed_cases(results)
    measured = measured_results(results)
    meta = measured["meta"]
    out = _header(measured, failed) + _machine(meta) + _targets(measured) + _throughput(measured, chart_name)
    out += _redis(measured) + _latency(measured) + _trigger(measured) + _scale(measured)
    out += _memory_and_pin(measured) + _profile(measured) + _linked(linked) + _superseded(measured) + _loads(meta)
    out += ["", "## How to run", "", "```sh", *HOW_TO_RUN, "```"]
    if analysis.strip():
        out += ["", figures.render(analysis, measured).strip()]
    return "\n".join(out) + "\n"
