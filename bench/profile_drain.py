"""Where one drainer's time goes: its round trips and statements per batch, over a real backlog.

``python bench/profile_drain.py [--events 30000] [--batch 500] [--handler pricing|trivial] [--cprofile]``

Creates its own database (``--database``, default ``bench_profile``) like
``bench/run.py`` (on ``DATABASE_URL``'s server or the embedded one), loads a backlog
(the bench's crawl results, or events of the bench's trivial topic), then drains it
with one in-process ``Drainer`` through a TCP proxy that counts round trips
(bench/roundtrips.py), while every statement is timed at psycopg's ``execute``:
the drainer's own (its store) and the handler's (Django's cursors are psycopg's),
the pipelined ones as a whole. Prints the drain rate,
round trips per batch, then per statement: total ms, executions, ms each. The rest
(Python, the driver, the network) is the difference between wall time and the
statements' sum. ``--cprofile`` adds the top Python functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import db  # noqa: E402
from bench.cli import positive_int  # noqa: E402
from bench.roundtrips import RoundTripProxy  # noqa: E402


def _label(sql: str) -> str:
    """The statement's name (outbox.sql.Queries prefixes it), else its first line."""
    names = re.findall(r"/\* (\w+) \*/", sql)
    if names:
        return "+".join(names)
    return re.sub(r'"s\d+_x\d+"', '"..."', sql.strip().splitlines()[0])[:70]


def load(url: str, handler: str, events: int) -> None:
    """A fresh backlog of ``events`` (the database reset first: it may be bench/run.py's)."""
    with db.connect(url) as conn:
        db.reset(conn)
        if handler == "trivial":
            conn.execute(db.queries.trivial_effect_create)
            conn.execute(db.queries.trivial_effect_reset)
            conn.execute(db.queries.trivial_event_seed, {"n": events})
        else:
            row = conn.execute(db.queries.product_first_id).fetchone()
            if not row or not row[1]:
                db.seed_products(conn)
            db.seed_results(conn, events)
        db.analyze(conn)


def summary(figures: dict[str, Any]) -> list[str]:
    """The profile's lines: rate, round trips per batch, CPU, then per statement (bench/report.py prints them too)."""
    f = figures
    lines = [
        f"drained {f['events']:,} events in {f['seconds']:.2f} s = {f['rate']:,.0f} events/s "
        f"(batch {f['batch']}, {f['handler']})",
        f"round trips per batch: {f['round_trips_per_batch']:.2f} ({f['round_trips']:,} over "
        f"{f['round_trip_batches']:,} batches, first ones)",
        f"drainer process CPU: {f['cpu_us_per_event'] * f['events'] / 1000:,.0f} ms "
        f"({f['cpu_us_per_event']:,.1f} us per event)",
        f"statements: {f['statements_ms']:,.0f} ms; outside them (Python, driver, BEGIN): {f['outside_ms']:,.0f} ms",
    ]
    for s in f["statements"]:
        lines.append(
            f"{s['total_ms']:10.1f} ms {s['count']:6d}x {s['total_ms'] / s['count']:8.3f} ms/each  {s['label']}"
        )
    return lines


def count_round_trips(proxy: RoundTripProxy, config: Any, batches: int) -> tuple[int, int]:
    """Drain ``batches`` batches through the proxy: (round trips, batches), set-up excluded."""
    from django.db import connections

    from outbox.drainer import Drainer

    settings = connections["default"].settings_dict
    direct = dict(settings)
    settings.update(HOST="127.0.0.1", PORT=str(proxy.port))
    connections["default"].close()
    drainer = Drainer(config)
    try:
        drainer.run_once()  # prepares (joins, takes the buckets) and drains a first batch
        before, done = proxy.total(), 0
        while done < batches:
            drainer.duties.run_due()
            if not drainer.run_once().claimed:
                break
            done += 1
        return proxy.total() - before, max(done, 1)
    finally:
        drainer.close()
        connections["default"].close()
        settings.clear()
        settings.update(direct)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=positive_int, default=30_000, help="Backlog to drain (default: %(default)s).")
    parser.add_argument("--batch", type=positive_int, default=500, help="Batch size (default: %(default)s).")
    parser.add_argument("--handler", choices=("pricing", "trivial"), default="pricing", help="(default: %(default)s)")
    parser.add_argument("--database", default="bench_profile", help="Database to (re)create (default: %(default)r).")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    parser.add_argument(
        "--round-trip-batches",
        type=positive_int,
        default=200,
        help="Batches counted through the proxy (default: %(default)s).",
    )
    parser.add_argument("--cprofile", action="store_true", help="Also print the top Python functions.")
    parser.add_argument(
        "--url", default=None, help="Drain in this migrated database (bench/run.py's) instead of creating one."
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this file (bench/run.py).")
    args = parser.parse_args(argv)
    for name in ("events", "batch", "round_trip_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    server = db.resolve_server()
    if args.url:
        url = args.url
    else:
        url = db.recreate_database(server, args.database)
        db.migrate(url)

    # Timing runs direct; round trips are counted through the proxy (its threads
    # share this interpreter, so it would slow what it measures) on a short drain first.
    proxy = RoundTripProxy(url)
    proxy.start()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.db import connection

    from outbox.drainer import Drainer, DrainerConfig
    from outbox.drainer.store import Store

    timings: dict[str, list[float]] = defaultdict(list)

    # Bench-only instrumentation: the store's statements go through its cursors'
    # execute(); the pipelined ones are timed as a whole by processing() and
    # ack_and_commit() (a pipeline's statements complete together).
    from contextlib import contextmanager

    import psycopg

    cursor_execute = psycopg.Cursor.execute

    def cursor_timed(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if self.connection._pipeline is not None:
            return cursor_execute(self, query, params, **kwargs)
        start = time.perf_counter()
        try:
            return cursor_execute(self, query, params, **kwargs)
        finally:
            timings[_label(str(query))].append(time.perf_counter() - start)

    psycopg.Cursor.execute = cursor_timed  # type: ignore[method-assign]
    processing, ack_and_commit = Store.processing, Store.ack_and_commit

    @contextmanager
    def processing_timed(self: Store, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        with processing(self, *args, **kwargs) as value:
            timings["BEGIN+event_lock_batch (pipeline)"].append(time.perf_counter() - start)
            yield value

    def ack_timed(self: Store, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return ack_and_commit(self, **kwargs)
        finally:
            timings["acks+COMMIT (pipeline)"].append(time.perf_counter() - start)

    Store.processing = processing_timed  # type: ignore[method-assign,assignment]
    Store.ack_and_commit = ack_timed  # type: ignore[method-assign]
    topics = ["bench.trivial"] if args.handler == "trivial" else ["pricing.crawl_result.created"]
    config = DrainerConfig.from_settings(batch_size=args.batch, notify=False, topics=topics)
    # Each pass has a backlog of its own: the counting pass would otherwise drain the
    # timed one's (it did: "drained 0 events" whenever events <= 200 batches).
    load(url, args.handler, min(args.events, (args.round_trip_batches + 1) * args.batch))
    round_trips, counted = count_round_trips(proxy, config, args.round_trip_batches)
    load(url, args.handler, args.events)
    drainer = Drainer(config)
    profiler = cProfile.Profile() if args.cprofile else None
    done = batches = 0
    drainer.run_once()  # prepares (joins, takes the buckets) and drains the first batch
    timings.clear()
    start = time.perf_counter()
    cpu_start = time.process_time()
    if profiler:
        profiler.enable()
    while True:
        drainer.duties.run_due()  # as Drainer.run() does between cycles
        result = drainer.run_once()
        if not result.claimed:
            break
        done += result.done
        batches += 1
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    drainer.close()
    connection.close()

    in_statements = sum(sum(v) for v in timings.values())
    proxy.stop()
    figures = {
        "handler": args.handler,
        "batch": args.batch,
        "events": done,
        "seconds": wall,
        "rate": done / wall,
        "round_trips": round_trips,
        "round_trip_batches": counted,
        "round_trips_per_batch": round_trips / counted,
        "cpu_us_per_event": cpu / max(done, 1) * 1e6,
        "statements_ms": in_statements * 1000,
        "outside_ms": (wall - in_statements) * 1000,
        "statements": [
            {"label": label, "total_ms": sum(values) * 1000, "count": len(values)}
            for label, values in sorted(timings.items(), key=lambda kv: -sum(kv[1]))
        ],
    }
    for line in summary(figures):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    if not args.keep and not args.url:
        db.drop_database(server, args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
