"""Where one drainer's time goes: every statement it sends, timed, over a real backlog.

``python bench/profile_drain.py [--events 30000] [--batch 500] [--cprofile]``

Creates its own database (``--database``, default ``bench_profile``) like
``bench/run.py`` (on ``DATABASE_URL``'s server or the embedded one), loads the
bench's crawl results, then drains them with one in-process ``Drainer`` (the
real pricing handler) while ``connection.execute_wrapper`` times each statement.
Prints the drain rate, then per statement: total ms, executions, ms each, and
its first line; the rest (Python, the driver, the network) is the difference
between wall time and the statements' sum. ``--cprofile`` adds the top Python
functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import db  # noqa: E402


def _label(sql: str) -> str:
    """The statement's name (outbox.sql.Queries prefixes it), else its first line."""
    match = re.match(r"/\* (\w+) \*/", sql)
    if match:
        return match.group(1)
    return re.sub(r'"s\d+_x\d+"', '"..."', sql.strip().splitlines()[0])[:70]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000, help="Backlog to drain (default: %(default)s).")
    parser.add_argument("--batch", type=int, default=500, help="Batch size (default: %(default)s).")
    parser.add_argument("--database", default="bench_profile", help="Database to (re)create (default: %(default)r).")
    parser.add_argument("--keep", type=int, default=0, help="Stop with this many events left and keep the database.")
    parser.add_argument("--cprofile", action="store_true", help="Also print the top Python functions.")
    args = parser.parse_args(argv)

    server = db.resolve_server()
    url = db.recreate_database(server, args.database)
    db.migrate(url)
    with db.connect(url) as conn:
        db.seed_products(conn)
        db.seed_results(conn, args.events)
        db.analyze(conn)

    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.db import connection

    from outbox.drainer import Drainer, DrainerConfig

    timings: dict[str, list[float]] = defaultdict(list)

    def timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings[_label(sql)].append(time.perf_counter() - start)

    drainer = Drainer(DrainerConfig.from_settings(batch_size=args.batch))
    profiler = cProfile.Profile() if args.cprofile else None
    done = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    with connection.execute_wrapper(timed):
        if profiler:
            profiler.enable()
        while True:
            if args.keep and args.events - done <= args.keep:
                break
            result = drainer.run_once()
            if not result.claimed:
                break
            done += result.done
        if profiler:
            profiler.disable()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    drainer.close()
    connection.close()

    in_statements = sum(sum(v) for v in timings.values())
    print(f"drained {done:,} events in {wall:.2f} s = {done / wall:,.0f} events/s (batch {args.batch})")
    outside = (wall - in_statements) * 1000
    print(f"drainer process CPU: {cpu * 1000:,.0f} ms ({cpu / max(done, 1) * 1e6:,.0f} us per event)")
    print(f"statements: {in_statements * 1000:,.0f} ms; outside them (Python, driver, COMMIT): {outside:,.0f} ms")
    for label, values in sorted(timings.items(), key=lambda kv: -sum(kv[1])):
        total = sum(values) * 1000
        print(f"{total:10.1f} ms {len(values):6d}x {total / len(values):8.2f} ms/each  {label}")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    if not args.keep:
        db.drop_database(server, args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
