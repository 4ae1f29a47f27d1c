"""Benchmark suite of the outbox: ``python bench/run.py`` (full) or ``--quick`` (smoke).

The full run writes its raw samples to bench/results.json and, from them alone,
docs/BENCHMARKS.md and docs/bench_throughput.png; ``--quick`` runs every case once
at a small scale and writes its report to ``--out`` (a temporary folder by default).
``--update`` re-runs some cases and merges them into the earlier results (keeping
the samples it replaces); ``--report-only`` redraws the page from the results
without measuring. The test suite runs all three at small sizes so the bench never rots.

It creates its own database (``--database``, default ``bench``) on the server of
``DATABASE_URL``, or on the embedded PostgreSQL when that is unset, dropping it
first if it exists, and runs the project's migrations into it. Benchmark-only
dependencies (the Redis client, matplotlib) are in bench/requirements.txt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cases, chart, db, figures, merge, report  # noqa: E402
from bench.cli import int_list, positive_int  # noqa: E402

CASES = ("throughput", "redis", "latency", "trigger", "scale", "memory", "pinned", "profile")
PACKAGES = ("Django", "psycopg", "django-pgtrigger", "redis", "matplotlib")


def _case_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in CASES]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"unknown case(s) {unknown or text!r}; known: {', '.join(CASES)}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Every case once, at a small scale (smoke run).")
    parser.add_argument(
        "--database", default="bench", help="Database to (re)create for the run (default: %(default)r)."
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Report folder (default: docs/ for a full run, a temp dir for --quick)."
    )
    parser.add_argument("--cases", type=_case_list, default=list(CASES), help=f"Subset of: {','.join(CASES)}.")
    parser.add_argument(
        "--drainers", type=int_list, default=None, help="Drainer counts for throughput (default: 1,2,3,4)."
    )
    parser.add_argument(
        "--batch-sizes", type=int_list, default=None, help="Batch sizes for throughput (default: 1,100,500,1000)."
    )
    parser.add_argument("--repeats", type=positive_int, default=None, help="Override the repetitions per case.")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis for the old-design baseline (default: %(default)r).",
    )
    parser.add_argument("--keep-database", action="store_true", help="Do not drop the bench database at the end.")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="The raw samples file (default: bench/results.json for a full run into docs/, "
        "else results.json in --out).",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="Re-run just --cases (and --drainers/--batch-sizes) and merge them into --results: "
        "the earlier samples they replace are kept, and the page marks what the later run measured.",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="Measure nothing: rewrite docs/BENCHMARKS.md (or --out's) and its chart from --results "
        "(default bench/results.json) and bench/analysis.md (after editing the analysis).",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.database in {"postgres", "template0", "template1"}:
        parser.error(f"--database must not be the server's {args.database!r} database")
    if args.update and args.report_only:
        parser.error("--update measures and --report-only does not: choose one")
    if args.update and args.quick and args.out is None and args.results is None:
        parser.error("--update with --quick needs --out or --results (a quick run writes to a temp folder)")
    if args.update or args.report_only:
        path = results_path(args, args.out or ROOT / "docs")
        if not path.is_file():
            parser.error(f"{'--update' if args.update else '--report-only'} needs earlier results: no file {path}")
    return args


def results_path(args: argparse.Namespace, out_dir: Path) -> Path:
    """Where the run's raw samples are read (--update, --report-only) and written."""
    if args.results is not None:
        return args.results
    if args.report_only or (not args.quick and args.out is None):
        return ROOT / "bench" / "results.json"
    return out_dir / "results.json"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1048576:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def redis_unavailable(url: str) -> str | None:
    """Why the Redis baseline cannot run, or None when it can."""
    try:
        import redis
    except ImportError:
        return "the redis client is not installed (pip install -r bench/requirements.txt)"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"Redis at {url} is unreachable ({exc})"
    return None


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """docs/BENCHMARKS.md (or out_dir's) and its chart from ``results``; returns the page's path.

    The analysis (bench/analysis.md) is a template whose figures come from ``results``;
    pages of other benchmarks (report.LINKED_PAGES) are linked once their script exists.
    """
    chart_name = "bench_throughput.png"
    rows = measured_rows(results)
    if rows:  # drawn where matplotlib is installed; the page is the same either way
        chart.chart(rows, out_dir / chart_name, "drain_outbox vs plain-SQL ceiling")
    analysis_path = Path(__file__).with_name("analysis.md")
    analysis = analysis_path.read_text(encoding="utf-8") if analysis_path.exists() else ""
    linked = [page for page in report.LINKED_PAGES if (ROOT / page[2]).is_file()]
    try:
        page = report.markdown(results, chart_name if rows else None, analysis, linked)
    except figures.UnknownFigure as exc:
        raise SystemExit(str(exc)) from None
    path = out_dir / "BENCHMARKS.md"
    path.write_text(page, encoding="utf-8")
    return path


def measured_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = report.measured_results(results).get("throughput")
    return rows if isinstance(rows, list) else []


def read_results(path: Path) -> dict[str, Any]:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the bench results {path}: {exc}") from None
    if not isinstance(results, dict) or "meta" not in results:
        raise SystemExit(f"{path} is not a bench/run.py results file (no 'meta')")
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        out_dir = args.out or ROOT / "docs"
        source = results_path(args, out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"report: {write_report(read_results(source), out_dir)} (from {source}, nothing measured)")
        return 0
    scale = cases.QUICK if args.quick else cases.FULL
    if args.repeats:
        scale = cases.Scale(**{**scale.__dict__, "repeats": args.repeats, "matrix_repeats": args.repeats})
    drainer_counts = args.drainers or ([1, 2] if args.quick else [1, 2, 3, 4])
    batch_sizes = args.batch_sizes or ([1, 500] if args.quick else list(report.BATCH_SIZES))
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bench-")) if args.quick else ROOT / "docs")
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_path(args, out_dir)
    previous = read_results(json_path) if args.update else None
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {message}", flush=True)

    server = db.resolve_server()
    log(f"server: {server.note}; database {args.database!r} (dropped and recreated)")
    url = db.recreate_database(server, args.database)
    db.migrate(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    import django

    django.setup()

    conn = db.connect(url)
    conn.execute("SET enable_incremental_sort = off")  # as in the drainers' sessions
    db.seed_products(conn)
    settings = db.server_settings(conn)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    ctx = cases.Context(url=url, conn=conn, scale=scale, log_dir=log_dir, redis_url=args.redis_url, log=log)
    results: dict[str, Any] = {}
    load_start = cases.load_average()
    failures: dict[str, str] = {}

    def attempt(case: str, fn: Any) -> None:
        """Run one case; a failure is recorded and reported, and the other cases still run."""
        try:
            fn()
        except Exception as exc:
            import traceback

            failures[case] = f"{type(exc).__name__}: {exc}"
            log(f"FAILED case {case}:\n{traceback.format_exc()}")
            results[case] = {"error": failures[case]}
            db.reset(conn)

    def throughput() -> None:
        rows: list[dict[str, Any]] = []
        results["throughput"] = rows
        for batch in batch_sizes:
            for k in drainer_counts:
                if batch == 1 and k > 2:
                    continue  # batch 1 shows the per-event cost; more processes add nothing to that
                rows.append(cases.throughput_project(ctx, k, batch))
                rows.append(cases.throughput_ceiling(ctx, k, batch))
                if (k, batch) == cases.HEADLINE:
                    # issue 10's trivial-handler target: the machinery alone, against the same loop in SQL
                    rows.append(cases.throughput_trivial_project(ctx, k, batch))
                    rows.append(cases.throughput_trivial_ceiling(ctx, k, batch))

    def headline_variants() -> None:
        log("headline drain with outbox_event vacuumed every second (autovacuum tuning)")
        results["vacuumed"] = cases.throughput_vacuumed(ctx)
        log("headline drain with other settings in the drainers' sessions (diagnostics)")
        results["session_variants"] = [
            cases.throughput_session(ctx, cases.ASYNC_COMMIT),
            cases.throughput_session(ctx, cases.CACHED_PAGES),
        ]

    def redis_case() -> None:
        why = redis_unavailable(args.redis_url)
        if why:
            log(f"SKIPPED the Redis baseline: {why}")
            results["redis"] = {"skipped": why}
            return
        log("old design: Redis list + ORM worker, and the headline configuration over the same backlog")
        results["redis_project"] = cases.throughput_project(ctx, *cases.HEADLINE, events=scale.redis_backlog)
        results["redis"] = [
            cases.redis_baseline(ctx, workers, per_item)
            for per_item in (False, True)
            for workers in ([1, 2] if not args.quick else [1])
        ]

    def latency_case() -> None:
        log(f"latency at {scale.latency_rate:.0f} results/s for {scale.latency_seconds:.0f}s")
        results["latency"] = [
            cases.latency(ctx, notify=True),
            cases.latency(ctx, notify=False),
            cases.latency(ctx, notify=True, async_commit=True),
        ]

    def trigger_case() -> None:
        log("trigger cost for writers")
        results["trigger"] = cases.trigger_cost(ctx)

    def scale_case() -> None:
        log(f"claim throughput, empty table vs {scale.done_rows:,} done rows")
        results["scale"] = cases.claim_scale(ctx)

    def memory_case() -> None:
        log(f"drainer memory over {scale.memory_events:,} events")
        results["memory"] = cases.memory(ctx)

    def pinned_case() -> None:
        log(f"throughput with xmin pinned for {scale.pin_seconds:.0f}s")
        results["pinned"] = cases.pinned_xmin(ctx)

    def profile_case() -> None:
        log("where one drainer's time goes (bench/profile_drain.py)")
        results["profile"] = [cases.profile(ctx, handler, batch) for handler, batch in cases.PROFILES]

    try:
        if "throughput" in args.cases:
            log("drain throughput (project vs plain-SQL ceiling)")
            attempt("throughput", throughput)
            if cases.HEADLINE in {(r["workers"], r["batch"]) for r in measured_rows(results)}:
                attempt("vacuumed", headline_variants)
        for case, fn in (
            ("redis", redis_case),
            ("latency", latency_case),
            ("trigger", trigger_case),
            ("scale", scale_case),
            ("memory", memory_case),
            ("pinned", pinned_case),
            ("profile", profile_case),
        ):
            if case in args.cases:
                attempt(case, fn)
    finally:
        conn.close()
        from django.db import connections

        connections.close_all()
        if not args.keep_database:
            db.drop_database(server, args.database)

    load_end = cases.load_average()
    command = "python bench/run.py" + (" --quick" if args.quick else "") + (" --update" if args.update else "")
    if args.cases != list(CASES):
        command += " --cases " + ",".join(args.cases)
    for flag, values in (("--drainers", args.drainers), ("--batch-sizes", args.batch_sizes)):
        if values:
            command += f" {flag} " + ",".join(map(str, values))
    if args.repeats:
        command += f" --repeats {args.repeats}"
    results["meta"] = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.time() - started,
        "repeats": scale.repeats,
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "memory": _memory(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "server": server.note,
        "server_version": settings.get("server_version", "?"),
        "settings": settings,
        "packages": {p: _version(p) for p in PACKAGES},
        "load_start": load_start,
        "load_end": load_end,
        "loads": ctx.loads,
        "backlog_batch1": scale.backlog_batch1,
        "backlog": scale.backlog,
        "matrix_backlog": scale.matrix_backlog,
        "matrix_repeats": scale.matrix_repeats,
        "products": db.PRODUCTS,
        "latency_rate": scale.latency_rate,
        "latency_seconds": scale.latency_seconds,
    }
    if previous is not None:
        results = merge.merge(previous, results)
    # The samples first: a report that fails (an analysis being edited) must not lose the run.
    json_path.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    write_report(results, out_dir)
    _print_summary(results)
    log(f"report: {out_dir / 'BENCHMARKS.md'}; raw samples: {json_path}")
    if failures:
        log("FAILED case(s): " + "; ".join(f"{case}: {why}" for case, why in failures.items()))
        return 1
    return 0


def _print_summary(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="targets of issues 10 and 5")
    for column in ("issue", "target", "measured", "n", "met"):
        table.add_column(column)
    for t in report.targets(results):
        table.add_row(str(t.issue), t.text, t.measured, t.n, "n/a" if t.met is None else ("yes" if t.met else "NO"))
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
