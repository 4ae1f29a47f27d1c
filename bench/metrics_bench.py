"""What a Prometheus scrape and the admin's chart cost on a large outbox.

``python bench/metrics_bench.py [--events 10000000] [--reuse] [--repeats 20]``

Builds (or, with ``--reuse``, keeps when it already holds that many events) its own
database, ``--database`` (default ``bench_metrics``), on ``DATABASE_URL``'s server or
the embedded one, like ``bench/run.py``: ``--events`` done events processed over the
last 7 days (2% of a second topic, 2% keeping a retry's error), 3,000 pending and 500
failed, then ``VACUUM (ANALYZE)``, as autovacuum leaves a table. Then it runs, warm,
``--repeats`` times each: the ``/outbox/metrics`` collector (every statement of one
scrape) and the admin chart's two series (the last hour, the last 24 hours), timing
each statement with ``connection.execute_wrapper``. It prints, per statement, the
median and the worst milliseconds, and the database time of a whole scrape; with
``--json PATH`` it writes them there too. The test suite runs it at a small scale
(``--events 20000 --repeats 2 --drop``) so it never rots. docs/metrics.md has the
figures on 10,000,000 events.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import db  # noqa: E402
from bench.cli import positive_int  # noqa: E402
from bench.profile_drain import _label  # noqa: E402
from outbox.sql import Queries  # noqa: E402

queries = Queries(Path(__file__).with_name("metrics_bench.sql"))

#: Days the done events are spread over (the default retention is 7 days).
DAYS = 7
#: The live part of the table, as in docs/operations.md's admin figures.
PENDING = 3000
FAILED = 500
#: Share of the done events that belong to a second topic.
OTHER_SHARE = 0.02
#: Rows per INSERT transaction while filling.
FILL_CHUNK = 1_000_000


def fill(url: str, events: int, *, log: Callable[[str], None]) -> None:
    """``events`` done events, then the live ones, then VACUUM (ANALYZE)."""
    with db.connect(url) as conn:
        for first in range(1, events + 1, FILL_CHUNK):
            last = min(first + FILL_CHUNK - 1, events)
            conn.execute(
                queries.large_done_seed,
                {"first": first, "last": last, "total": events, "days": DAYS, "other_share": OTHER_SHARE},
            )
            log(f"filled {last:,} of {events:,} done events")
        conn.execute(queries.large_live_seed, {"pending": PENDING, "failed": FAILED})
        conn.execute(queries.large_vacuum_analyze)


def table_events(url: str) -> int:
    with db.connect(url) as conn:
        row = conn.execute(queries.large_event_count).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def timed_statements() -> Iterator[dict[str, list[float]]]:
    """Milliseconds of each statement run on Django's default connection, by name."""
    from django.db import connection

    times: dict[str, list[float]] = defaultdict(list)

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            times[_label(sql)].append((time.perf_counter() - start) * 1000)

    with connection.execute_wrapper(wrapper):
        yield times


def measure(name: str, run: Callable[[], object], repeats: int) -> dict[str, Any]:
    """``run`` once to warm up, then ``repeats`` times: per statement and in total."""
    run()
    per_run: list[float] = []
    statements: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeats):
        with timed_statements() as times:
            run()
        per_run.append(sum(sum(v) for v in times.values()))
        for label, values in times.items():
            statements[label].append(sum(values))
    return {
        "name": name,
        "median_ms": statistics.median(per_run),
        "max_ms": max(per_run),
        "statements": {
            label: {"median_ms": statistics.median(v), "max_ms": max(v), "per_run": len(v) // repeats or 1}
            for label, v in sorted(statements.items())
        },
    }


def scrape() -> bytes:
    """One scrape of the queue-state collector, as /outbox/metrics runs it."""
    from outbox.metrics.exposition import queue_state_text

    return queue_state_text()


def chart(hours: int) -> object:
    from outbox.chart import throughput_series

    return throughput_series(hours=hours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=positive_int, default=10_000_000, help="Done events (default: %(default)s).")
    parser.add_argument("--database", default="bench_metrics", help="Database to use (default: %(default)r).")
    parser.add_argument("--reuse", action="store_true", help="Keep the database if it already holds the events.")
    parser.add_argument(
        "--repeats", type=positive_int, default=20, help="Warm runs of each measurement (default: %(default)s)."
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    parser.add_argument("--fill-only", action="store_true", help="Build the table and stop.")
    parser.add_argument("--drop", action="store_true", help="Drop the database at the end (the smoke test).")
    args = parser.parse_args(argv)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {message}", flush=True)

    server = db.resolve_server()
    url = server.url(args.database)
    expected = args.events + PENDING + FAILED
    if args.reuse and _exists(server, args.database) and table_events(url) == expected:
        db.migrate(url)
        log(f"reusing {args.database!r}: {expected:,} events")
    else:
        url = db.recreate_database(server, args.database)
        db.migrate(url)
        log(f"filling {args.database!r} on {server.note}")
        fill(url, args.events, log=log)
    if args.fill_only:
        return 0

    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    import django

    django.setup()
    with db.connect(url) as conn:
        heap, total = conn.execute(queries.large_table_size).fetchone()  # type: ignore[misc]
    results = {
        "events": expected,
        "heap_bytes": heap,
        "total_bytes": total,
        "measurements": [
            measure("scrape /outbox/metrics", scrape, args.repeats),
            measure("chart, last hour", lambda: chart(1), args.repeats),
            measure("chart, last 24 hours", lambda: chart(24), args.repeats),
        ],
    }
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.drop:
        from django.db import connections

        connections.close_all()
        db.drop_database(server, args.database)
    return 0


def _exists(server: db.Server, dbname: str) -> bool:
    import psycopg

    try:
        with db.connect(server.url(dbname)):
            return True
    except psycopg.OperationalError:
        return False


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{results['events']:,} events, heap {results['heap_bytes'] / 2**30:.2f} GiB, "
        f"with indexes {results['total_bytes'] / 2**30:.2f} GiB",
        "",
        "| what | statement | runs | median ms | worst ms |",
        "|---|---|---|---|---|",
    ]
    for m in results["measurements"]:
        for label, s in m["statements"].items():
            lines.append(f"| {m['name']} | `{label}` | {s['per_run']} | {s['median_ms']:.2f} | {s['max_ms']:.2f} |")
        lines.append(
            f"| **{m['name']}** | **database time, all statements** | | **{m['median_ms']:.2f}** | "
            f"**{m['max_ms']:.2f}** |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
