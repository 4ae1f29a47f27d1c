"""The benchmark cases of issue 5, each returning plain data for the report.

Every case starts from a known state of the bench database (``db.reset``), runs
its measurement ``scale.repeats`` times and returns the raw samples; the report
takes medians and min-max. Throughput is events per second of wall-clock time,
from the commit that makes the backlog visible to the moment no event is pending.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import db
from bench.procs import (
    DrainerPool,
    ceiling_worker,
    history_observer,
    insert_writer,
    paced_writer,
    process_rss_kib,
    redis_worker,
    run_workers,
)
from bench.samples import HEADLINE
from outbox.conf import BUCKETS

#: The pricing handler's topic (pricing.models.CRAWL_RESULT_CREATED).
TOPIC = "pricing.crawl_result.created"
#: The bench's trivial topic (bench/trivial/apps.py).
TRIVIAL_TOPIC = "bench.trivial"


@dataclass(frozen=True)
class Scale:
    """How big and how often: the full run and the quick smoke run differ only here."""

    repeats: int
    backlog: int
    matrix_backlog: int
    matrix_repeats: int
    backlog_batch1: int
    redis_backlog: int
    latency_seconds: float
    insert_rows: int
    bulk_rows: int
    done_rows: int
    claim_backlog: int
    memory_events: int
    pin_seconds: float
    pin_round: int
    recovery_max: float
    profile_events: int
    profile_events_batch1: int
    profile_round_trip_batches: int
    latency_rate: float = 200.0
    poll_interval: float = 0.1


FULL = Scale(
    repeats=3,
    backlog=100_000,
    matrix_backlog=30_000,
    matrix_repeats=2,
    backlog_batch1=2_000,
    redis_backlog=5_000,
    latency_seconds=10.0,
    insert_rows=5_000,
    bulk_rows=10_000,
    done_rows=1_000_000,
    claim_backlog=50_000,
    memory_events=1_000_000,
    pin_seconds=60.0,
    pin_round=20_000,
    recovery_max=90.0,
    profile_events=30_000,
    profile_events_batch1=1_000,
    profile_round_trip_batches=200,
)

QUICK = Scale(
    repeats=1,
    backlog=2_000,
    matrix_backlog=1_000,
    matrix_repeats=1,
    backlog_batch1=40,
    redis_backlog=100,
    latency_seconds=0.5,
    insert_rows=60,
    bulk_rows=500,
    done_rows=10_000,
    claim_backlog=1_000,
    memory_events=3_000,
    pin_seconds=1.0,
    pin_round=500,
    recovery_max=3.0,
    profile_events=1_000,
    profile_events_batch1=30,
    profile_round_trip_batches=5,
)


def load_average() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


@dataclass
class Context:
    url: str
    conn: psycopg.Connection[Any]
    scale: Scale
    log_dir: Path
    redis_url: str
    log: Callable[[str], None]
    loads: dict[str, list[str]] = field(default_factory=dict)

    def note_load(self, case: str) -> None:
        self.loads.setdefault(case, []).append(load_average())


def _load_then_commit(ctx: Context, n: int, *, offset: int = 0) -> float:
    """Insert ``n`` results in one transaction; return the wall-clock time just before COMMIT."""
    with ctx.conn.transaction():
        db.seed_results(ctx.conn, n, offset=offset)
        db.analyze(ctx.conn)
        t0 = time.time()
    return t0


# ---------------------------------------------------------------------- throughput


def plan_for(scale: Scale, workers: int, batch: int) -> tuple[int, int]:
    """(backlog, repetitions) of one throughput configuration."""
    if (workers, batch) == HEADLINE:
        return scale.backlog, scale.repeats
    if batch == 1:
        return scale.backlog_batch1, scale.matrix_repeats
    return scale.matrix_backlog, scale.matrix_repeats


def throughput_project(ctx: Context, drainers: int, batch: int, events: int | None = None) -> dict[str, Any]:
    """Real ``drain_outbox`` processes with the pricing handler over a fresh backlog (``events``: another size)."""
    n, repeats = plan_for(ctx.scale, drainers, batch)
    n = events or n
    rates: list[float] = []
    with DrainerPool(ctx.url, drainers, batch_size=batch, log_dir=ctx.log_dir) as pool:
        pool.wait_ready(ctx.conn)
        for _ in range(repeats):
            ctx.note_load("throughput")
            db.reset(ctx.conn)
            t0 = _load_then_commit(ctx, n)
            t_end = db.wait_drained(ctx.conn, timeout=60 + n / 100)
            pool.check_alive()
            db.check_all_processed(ctx.conn, n)
            rates.append(n / (t_end - t0))
            ctx.log(f"  project drainers={drainers} batch={batch}: {rates[-1]:,.0f} events/s")
    return {"kind": "project", "workers": drainers, "batch": batch, "events": n, "rates": rates}


def throughput_ceiling(ctx: Context, workers: int, batch: int) -> dict[str, Any]:
    """The plain-SQL set-based drain, same data, same batch size."""
    n, repeats = plan_for(ctx.scale, workers, batch)
    rates: list[float] = []
    for _ in range(repeats):
        ctx.note_load("throughput")
        db.reset(ctx.conn)
        db.seed_results(ctx.conn, n)
        db.analyze(ctx.conn)
        go, results = run_workers([(ceiling_worker, (ctx.url, batch))] * workers, timeout=120 + n / 100)
        db.check_all_processed(ctx.conn, n, results=False)
        rates.append(n / (max(r[1] for r in results) - go))
        ctx.log(f"  ceiling workers={workers} batch={batch}: {rates[-1]:,.0f} events/s")
    return {"kind": "ceiling", "workers": workers, "batch": batch, "events": n, "rates": rates}


def _load_trivial_then_commit(ctx: Context, n: int) -> float:
    """``n`` events of the trivial topic in one transaction with a NOTIFY; the time just before COMMIT."""
    with ctx.conn.transaction():
        ctx.conn.execute(db.queries.trivial_event_seed, {"n": n})
        ctx.conn.execute(db.queries.trivial_notify)
        db.analyze(ctx.conn)
        t0 = time.time()
    return t0


def throughput_trivial_project(ctx: Context, drainers: int, batch: int) -> dict[str, Any]:
    """Real ``drain_outbox --topic bench.trivial`` processes: the machinery with a handler doing one INSERT."""
    n, repeats = plan_for(ctx.scale, drainers, batch)
    rates: list[float] = []
    ctx.conn.execute(db.queries.trivial_effect_create)
    extra = ["--topic", TRIVIAL_TOPIC]
    with DrainerPool(ctx.url, drainers, batch_size=batch, log_dir=ctx.log_dir, extra_args=extra) as pool:
        pool.wait_ready(ctx.conn)
        for _ in range(repeats):
            ctx.note_load("throughput")
            db.reset(ctx.conn)
            ctx.conn.execute(db.queries.trivial_effect_reset)
            t0 = _load_trivial_then_commit(ctx, n)
            t_end = db.wait_drained(ctx.conn, timeout=60 + n / 100)
            pool.check_alive()
            db.check_all_processed(ctx.conn, n, results=False)
            db.check_trivial_effects(ctx.conn, n)
            rates.append(n / (t_end - t0))
            ctx.log(f"  trivial project drainers={drainers} batch={batch}: {rates[-1]:,.0f} events/s")
    return {"kind": "trivial_project", "workers": drainers, "batch": batch, "events": n, "rates": rates}


def throughput_trivial_ceiling(ctx: Context, workers: int, batch: int) -> dict[str, Any]:
    """The plain-SQL claim / insert / mark-done loop doing exactly the trivial handler's work."""
    n, repeats = plan_for(ctx.scale, workers, batch)
    rates: list[float] = []
    ctx.conn.execute(db.queries.trivial_effect_create)
    for _ in range(repeats):
        ctx.note_load("throughput")
        db.reset(ctx.conn)
        ctx.conn.execute(db.queries.trivial_effect_reset)
        ctx.conn.execute(db.queries.trivial_event_seed, {"n": n})
        db.analyze(ctx.conn)
        go, results = run_workers([(ceiling_worker, (ctx.url, batch, "trivial"))] * workers, timeout=120 + n / 100)
        db.check_all_processed(ctx.conn, n, results=False)
        db.check_trivial_effects(ctx.conn, n)
        rates.append(n / (max(r[1] for r in results) - go))
        ctx.log(f"  trivial ceiling workers={workers} batch={batch}: {rates[-1]:,.0f} events/s")
    return {"kind": "trivial_ceiling", "workers": workers, "batch": batch, "events": n, "rates": rates}


class _Vacuumer:
    """VACUUM outbox_event every ``every`` seconds from a thread: autovacuum, tuned hard."""

    def __init__(self, url: str, every: float) -> None:
        import threading

        self.url = url
        self.every = every
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with db.connect(self.url) as conn:
            while not self._stop.wait(self.every):
                conn.execute(db.queries.outbox_vacuum)
                self.runs += 1

    def __enter__(self) -> _Vacuumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


#: The drainers' sessions without waiting for the WAL flush at COMMIT: a diagnostic
#: of where the time goes, never a recommendation (a crash could lose a claim's
#: attempt count, so a poison event that crashes the server could run forever).
ASYNC_COMMIT = "-c synchronous_commit=off"


#: Planner costs for cached data (the usual SSD setting): index probes of a
#: batch's results instead of a hash join over the whole table.
CACHED_PAGES = "-c random_page_cost=1.1"


def throughput_session(ctx: Context, pgoptions: str) -> dict[str, Any]:
    """The headline drain with extra server settings in the drainers' sessions only."""
    drainers, batch = HEADLINE
    n, repeats = plan_for(ctx.scale, drainers, batch)
    rates: list[float] = []
    with DrainerPool(ctx.url, drainers, batch_size=batch, log_dir=ctx.log_dir, pgoptions=pgoptions) as pool:
        pool.wait_ready(ctx.conn)
        for _ in range(repeats):
            ctx.note_load("throughput")
            db.reset(ctx.conn)
            t0 = _load_then_commit(ctx, n)
            t_end = db.wait_drained(ctx.conn, timeout=60 + n / 100)
            pool.check_alive()
            db.check_all_processed(ctx.conn, n)
            rates.append(n / (t_end - t0))
            ctx.log(f"  project drainers={drainers} batch={batch}, PGOPTIONS={pgoptions!r}: {rates[-1]:,.0f} events/s")
    return {"workers": drainers, "batch": batch, "events": n, "pgoptions": pgoptions, "rates": rates}


def throughput_vacuumed(ctx: Context, every: float = 1.0) -> dict[str, Any]:
    """The headline drain with outbox_event vacuumed every ``every`` s during it."""
    drainers, batch = HEADLINE
    n, repeats = plan_for(ctx.scale, drainers, batch)
    rates: list[float] = []
    runs: list[int] = []
    with DrainerPool(ctx.url, drainers, batch_size=batch, log_dir=ctx.log_dir) as pool:
        pool.wait_ready(ctx.conn)
        for _ in range(repeats):
            ctx.note_load("throughput")
            db.reset(ctx.conn)
            t0 = _load_then_commit(ctx, n)
            with _Vacuumer(ctx.url, every) as vacuumer:
                t_end = db.wait_drained(ctx.conn, timeout=60 + n / 100)
            pool.check_alive()
            db.check_all_processed(ctx.conn, n)
            rates.append(n / (t_end - t0))
            runs.append(vacuumer.runs)
            ctx.log(f"  project drainers={drainers} batch={batch}, VACUUM every {every}s: {rates[-1]:,.0f} events/s")
    return {"workers": drainers, "batch": batch, "events": n, "every": every, "rates": rates, "vacuums": runs}


def redis_baseline(ctx: Context, workers: int, per_item: bool) -> dict[str, Any]:
    """The old design: ids in a Redis list, a worker popping 100 at a time, ORM writes."""
    import redis

    n = ctx.scale.redis_backlog
    client = redis.Redis.from_url(ctx.redis_url)
    # A key of this run's own: other runs (the smoke test in parallel suites) share the server.
    queue = f"bench:{ctx.url.rsplit('/', 1)[-1]}:{os.getpid()}:auto_record_queue"
    rates: list[float] = []
    for _ in range(ctx.scale.repeats):
        ctx.note_load("redis")
        db.reset(ctx.conn)
        db.seed_results(ctx.conn, n)
        db.analyze(ctx.conn)
        ids = [row[0] for row in ctx.conn.execute(db.queries.crawl_result_ids_in_order).fetchall()]
        client.delete(queue)
        for start in range(0, len(ids), 10_000):
            client.rpush(queue, *ids[start : start + 10_000])
        go, results = run_workers(
            [(redis_worker, (ctx.url, ctx.redis_url, queue, 100, per_item))] * workers, timeout=120 + n / 50
        )
        done = sum(r[0] for r in results)
        if done != n:
            raise AssertionError(f"the Redis baseline recorded {done} of {n} results")
        rates.append(n / (max(r[1] for r in results) - go))
        mode = "per-item commit" if per_item else "per-batch commit"
        ctx.log(f"  redis {mode} workers={workers}: {rates[-1]:,.0f} results/s")
    client.delete(queue)
    client.close()
    return {"per_item": per_item, "workers": workers, "events": n, "rates": rates}


# ---------------------------------------------------------------------- latency


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency(
    ctx: Context, notify: bool, drainers: int = 2, batch: int = 500, async_commit: bool = False
) -> dict[str, Any]:
    """Commit of a CrawlResult -> commit of its PriceHistory, at a steady rate."""
    s = ctx.scale
    db.reset(ctx.conn)
    ctx.conn.execute(db.queries.history_probe_create)
    interval = 5.0 if notify else s.poll_interval
    runs: list[dict[str, float]] = []
    try:
        with DrainerPool(
            ctx.url,
            drainers,
            batch_size=batch,
            interval=interval,
            notify=notify,
            log_dir=ctx.log_dir,
            pgoptions=ASYNC_COMMIT if async_commit else "",
        ) as pool:
            pool.wait_ready(ctx.conn)
            # Warm-up: one result through the whole path, so no drainer is still importing
            # (a price no measured result has, so none of them is an unchanged price).
            first = db.first_product(ctx.conn)
            ctx.conn.execute(db.queries.crawl_result_insert_one, {"product_id": first, "price": 99_999})
            db.wait_drained(ctx.conn, timeout=30)
            count = int(s.latency_rate * s.latency_seconds)
            for repetition in range(s.repeats):
                ctx.note_load("latency")
                _, (commits, seen) = run_workers(
                    [
                        (paced_writer, (ctx.url, s.latency_rate, s.latency_seconds, first, notify, repetition)),
                        (history_observer, (ctx.url, count, s.latency_seconds + 30)),
                    ],
                    timeout=s.latency_seconds + 60,
                )
                missing = [rid for rid, _ in commits if rid not in seen]
                if missing:
                    raise AssertionError(f"{len(missing)} result(s) never reached history, e.g. {missing[:3]}")
                ms = [(seen[rid] - t) * 1000 for rid, t in commits]
                runs.append(
                    {
                        "p50": _percentile(ms, 50),
                        "p95": _percentile(ms, 95),
                        "p99": _percentile(ms, 99),
                        "max": max(ms),
                        "n": len(ms),
                    }
                )
                ctx.log(
                    f"  latency notify={'on' if notify else 'off'} async_commit={async_commit}: "
                    f"p50={runs[-1]['p50']:.2f} "
                    f"p95={runs[-1]['p95']:.2f} p99={runs[-1]['p99']:.2f} ms"
                )
            pool.check_alive()
    finally:
        ctx.conn.execute(db.queries.history_probe_drop)
    return {
        "notify": notify,
        "interval": interval,
        "drainers": drainers,
        "batch": batch,
        "async_commit": async_commit,
        "runs": runs,
    }


# ---------------------------------------------------------------------- trigger cost

TRIGGER_VARIANTS = ("trigger", "trigger_notify_off", "trigger_with_ignore_check", "no_trigger")
#: Single-row inserts of each variant are measured in this many turns (see trigger_cost).
TRIGGER_CHUNKS = 10


class TriggerSwitch:
    """Puts the bench database's outbox trigger into one of TRIGGER_VARIANTS."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.name = db.crawl_result_trigger(conn)
        self.signature, self.body = db.trigger_function(conn, self.name)
        conn.execute(db.queries.ignore_check_create)
        self.checked = db.with_ignore_check(self.body)

    def apply(self, variant: str) -> None:
        db.replace_trigger_function(self.conn, self.signature, self.body)
        db.set_trigger_enabled(self.conn, self.name, True)
        if variant == "no_trigger":
            db.set_trigger_enabled(self.conn, self.name, False)
        elif variant == "trigger_with_ignore_check":
            db.replace_trigger_function(self.conn, self.signature, self.checked)

    def restore(self) -> None:
        self.apply("trigger")


def trigger_cost(ctx: Context) -> dict[str, Any]:
    """Writers' cost: single-row inserts (1 and 2 writers) and bulk_create, per variant."""
    from django.db import connection

    s = ctx.scale
    switch = TriggerSwitch(ctx.conn)
    first = db.first_product(ctx.conn)
    # A LISTENing session, as when drainers run: NOTIFY then has someone to signal.
    listener = db.connect(ctx.url)
    listener.execute("LISTEN outbox")
    single: dict[str, dict[str, list[float]]] = {"1": {}, "2": {}}
    bulk: dict[str, list[float]] = {}
    chunks = min(TRIGGER_CHUNKS, max(1, s.insert_rows // 500))  # one turn in --quick
    bulk_turns = len(TRIGGER_VARIANTS) if chunks > 1 else 1
    try:
        for rep in range(s.repeats):
            ctx.note_load("trigger")
            for writers in (1, 2):
                # The variants take turns in chunks (in a rotating order), so a spell
                # of a slower machine falls on all of them, not on whichever variant
                # ran during it: one variant after the other, the ratio moved by
                # 30% between repetitions.
                db.reset(ctx.conn)
                rows: dict[str, int] = dict.fromkeys(TRIGGER_VARIANTS, 0)
                seconds: dict[str, float] = dict.fromkeys(TRIGGER_VARIANTS, 0.0)
                chunk_rows = max(1, s.insert_rows // chunks)
                for chunk in range(chunks):
                    turn = chunk % len(TRIGGER_VARIANTS)
                    for variant in TRIGGER_VARIANTS[turn:] + TRIGGER_VARIANTS[:turn]:
                        switch.apply(variant)
                        seed = (rep * chunks + chunk) * writers
                        _, results = run_workers(
                            [
                                (insert_writer, (ctx.url, chunk_rows, first, variant != "trigger_notify_off", seed + i))
                                for i in range(writers)
                            ],
                            timeout=120,
                        )
                        rows[variant] += sum(r[0] for r in results)
                        seconds[variant] += max(r[1] for r in results)
                        for _ in listener.notifies(timeout=0):
                            pass
                for variant in TRIGGER_VARIANTS:
                    single[str(writers)].setdefault(variant, []).append(rows[variant] / seconds[variant])
            # bulk_create takes turns too, in a rotating order: its variants' ranges
            # overlapped by more than their differences when each ran after the other.
            bulk_seconds: dict[str, float] = dict.fromkeys(TRIGGER_VARIANTS, 0.0)
            for turn in range(bulk_turns):
                start_at = (rep + turn) % len(TRIGGER_VARIANTS)
                for variant in TRIGGER_VARIANTS[start_at:] + TRIGGER_VARIANTS[:start_at]:
                    bulk_seconds[variant] += _bulk_create_seconds(ctx, switch, variant, first, listener)
            for variant in TRIGGER_VARIANTS:
                bulk.setdefault(variant, []).append(bulk_seconds[variant] / bulk_turns)
            ctx.log(
                "  inserts/s 1 writer: "
                + ", ".join(f"{v}={single['1'][v][-1]:,.0f}" for v in TRIGGER_VARIANTS)
                + " | bulk_create s: "
                + ", ".join(f"{v}={bulk[v][-1]:.3f}" for v in TRIGGER_VARIANTS)
            )
    finally:
        switch.restore()
        listener.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET outbox.notify")
    return {
        "rows": s.insert_rows,
        "chunks": chunks,
        "bulk_rows": s.bulk_rows,
        "bulk_turns": bulk_turns,
        "single": single,
        "bulk": bulk,
    }


def _bulk_create_seconds(
    ctx: Context, switch: TriggerSwitch, variant: str, first: int, listener: psycopg.Connection[Any]
) -> float:
    """One ``bulk_create`` of ``bulk_rows`` results in one transaction, the trigger as ``variant``."""
    from django.db import connection, transaction

    from pricing.models import CrawlResult

    db.reset(ctx.conn)
    switch.apply(variant)
    objs = [
        CrawlResult(
            product_id=first + (i * 7919) % db.PRODUCTS,
            source="html_ml",
            price=10 + i % 1000,
            currency="EUR",
            confidence=0.95,
        )
        for i in range(ctx.scale.bulk_rows)
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET outbox.notify = %s", ["off" if variant == "trigger_notify_off" else "on"])
    start = time.perf_counter()
    with transaction.atomic():
        CrawlResult.objects.bulk_create(objs)
    seconds = time.perf_counter() - start
    for _ in listener.notifies(timeout=0):
        pass
    return seconds


# ---------------------------------------------------------------------- scale


def _claim_loop(conn: psycopg.Connection[Any], batch: int) -> tuple[int, float, float]:
    """Claim and ack with the outbox's own statements until empty: (events, seconds, claim seconds).

    As one drainer that owns every order bucket of the pricing topic.
    """
    me = "bench:claim"
    conn.execute(
        db.outbox.drainer_session_setup,
        {"application_name": me, "statement_timeout": "0", "lock_timeout": "0", "idle_timeout": "0"},
    )
    conn.execute(db.outbox.bucket_ensure_rows, {"topics": [TOPIC], "buckets": BUCKETS})
    conn.execute(db.queries.bucket_own_all, {"topic": TOPIC, "me": me})
    params = db.claim_all_buckets(me, TOPIC, BUCKETS, batch)
    done = 0
    claim_time = 0.0
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        with conn.transaction():
            rows = conn.execute(db.outbox.event_claim_batch, params).fetchall()
        claim_time += time.perf_counter() - t
        if not rows:
            break
        with conn.transaction():
            conn.execute(db.outbox.event_ack_done, {"ids": [r[0] for r in rows], "counted": [], "me": me})
        done += len(rows)
    return done, time.perf_counter() - start, claim_time


def claim_scale(ctx: Context, batch: int = 500) -> dict[str, Any]:
    """Claim throughput over a backlog with an empty table, then with done_rows done rows."""
    s = ctx.scale
    out: dict[str, Any] = {"batch": batch, "backlog": s.claim_backlog, "done_rows": s.done_rows}
    for state in ("empty", "done"):
        rates: list[float] = []
        claim_ms: list[float] = []
        db.reset(ctx.conn)
        if state == "done":
            for start in range(0, s.done_rows, 250_000):
                ctx.conn.execute(db.queries.event_done_seed, {"n": min(250_000, s.done_rows - start)})
        for rep in range(s.repeats):
            ctx.note_load("scale")
            db.seed_results(ctx.conn, s.claim_backlog, offset=rep * s.claim_backlog)
            ctx.conn.execute("VACUUM ANALYZE outbox_event")
            db.analyze(ctx.conn)
            events, seconds, claim_seconds = _claim_loop(ctx.conn, batch)
            if events != s.claim_backlog:
                raise AssertionError(f"claimed {events} of {s.claim_backlog}")
            rates.append(events / seconds)
            claim_ms.append(claim_seconds / (events / batch) * 1000)
            ctx.log(f"  claim+ack {state}: {rates[-1]:,.0f} events/s, {claim_ms[-1]:.2f} ms per claim")
        size = ctx.conn.execute(db.queries.outbox_event_size).fetchone()
        out[state] = {"rates": rates, "claim_ms": claim_ms, "table_bytes": size[0] if size else 0}
    return out


def memory(ctx: Context, batch: int = 1000) -> dict[str, Any]:
    """One drainer's resident memory over ``memory_events`` events."""
    n = ctx.scale.memory_events
    ctx.note_load("memory")
    db.reset(ctx.conn)
    db.seed_results(ctx.conn, n)
    db.analyze(ctx.conn)
    samples: list[tuple[float, int, int]] = []  # (seconds, events done, rss KiB)
    t0 = time.time()
    with DrainerPool(ctx.url, 1, batch_size=batch, log_dir=ctx.log_dir) as pool:
        pid = pool.pids[0]
        while True:
            pool.check_alive()
            rss, hwm = process_rss_kib(pid)
            first_pending = ctx.conn.execute(db.queries.event_first_pending_id).fetchone()
            progress = n if not first_pending or not first_pending[0] else int(first_pending[0]) - 1
            samples.append((time.time() - t0, progress, rss))
            if progress >= n:
                break
            time.sleep(0.25)
        _, peak = process_rss_kib(pid)
    warm_at = min(n, max(batch * 10, n // 20))
    warm = next((rss for _, done, rss in samples if done >= warm_at), samples[-1][2])
    after = [rss for _, done, rss in samples if done >= warm_at]
    ctx.note_load("memory")
    result = {
        "events": n,
        "batch": batch,
        "warm_at": warm_at,
        "start_kib": samples[0][2],
        "warm_kib": warm,
        "max_after_warm_kib": max(after) if after else warm,
        "peak_kib": peak,
        "seconds": samples[-1][0],
        "samples": samples[:: max(1, len(samples) // 200)],
    }
    ctx.log(
        f"  memory: warm {warm / 1024:.1f} MiB at {warm_at} events, max after {result['max_after_warm_kib'] / 1024:.1f}"
        f" MiB, peak (VmHWM) {peak / 1024:.1f} MiB over {n:,} events"
    )
    return result


def pinned_xmin(ctx: Context, drainers: int = 2, batch: int = 500) -> dict[str, Any]:
    """Drain rounds before, during and after a REPEATABLE READ transaction pinning xmin."""
    s = ctx.scale
    k = s.pin_round
    offset = 0
    db.reset(ctx.conn)

    def one_round() -> float:
        nonlocal offset
        t0 = _load_then_commit(ctx, k, offset=offset)
        offset += k
        t_end = db.wait_drained(ctx.conn, timeout=600)
        return k / (t_end - t0)

    rounds: list[dict[str, Any]] = []
    with DrainerPool(ctx.url, drainers, batch_size=batch, log_dir=ctx.log_dir) as pool:
        pool.wait_ready(ctx.conn)
        ctx.note_load("pinned")
        baseline = [one_round() for _ in range(3)]
        for rate in baseline:
            rounds.append({"phase": "before", "t": 0.0, "rate": rate})
        pin = db.connect(ctx.url, autocommit=False)
        pin.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        pin.execute(db.queries.pin_snapshot)
        pinned_at = time.time()
        try:
            while time.time() - pinned_at < s.pin_seconds:
                rate = one_round()
                rounds.append({"phase": "pinned", "t": time.time() - pinned_at, "rate": rate})
        finally:
            pin.rollback()
            pin.close()
        released_at = time.time()
        ctx.note_load("pinned")
        target = 0.9 * statistics.median(baseline)
        recovered: float | None = None
        while time.time() - released_at < s.recovery_max:
            rate = one_round()
            elapsed = time.time() - released_at
            rounds.append({"phase": "after", "t": elapsed, "rate": rate})
            if rate >= target:
                recovered = elapsed
                break
        pool.check_alive()
    during = [r["rate"] for r in rounds if r["phase"] == "pinned"]
    result = {
        "drainers": drainers,
        "batch": batch,
        "round_events": k,
        "pin_seconds": s.pin_seconds,
        "baseline": baseline,
        "pinned_first": during[0] if during else None,
        "pinned_last": during[-1] if during else None,
        "pinned_median": statistics.median(during) if during else None,
        "pinned_rounds": len(during),
        "recovered_after_s": recovered,
        "first_after": next((r["rate"] for r in rounds if r["phase"] == "after"), None),
        "rounds": rounds,
    }
    ctx.log(
        f"  pinned xmin: before {statistics.median(baseline):,.0f}/s, pinned first {result['pinned_first'] or 0:,.0f}"
        f" last {result['pinned_last'] or 0:,.0f}/s, recovered after {recovered}s"
    )
    return result


# ---------------------------------------------------------------------- profile

#: The profiles the run records: (handler, batch size); batch 1 drains Scale.profile_events_batch1.
PROFILES = (("pricing", 500), ("trivial", 500), ("pricing", 1))


def profile(ctx: Context, handler: str, batch: int) -> dict[str, Any]:
    """bench/profile_drain.py in the bench database: round trips per batch and time per statement."""
    s = ctx.scale
    events = s.profile_events_batch1 if batch == 1 else s.profile_events
    ctx.note_load("profile")
    out = ctx.log_dir / f"profile-{handler}-{batch}.json"
    env = {**os.environ, "DATABASE_URL": ctx.url}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # profile_drain's own (bench.settings: the trivial topic)
    args = ["--url", ctx.url, "--events", str(events), "--batch", str(batch), "--handler", handler]
    args += ["--round-trip-batches", str(s.profile_round_trip_batches), "--json", str(out)]
    script = Path(__file__).with_name("profile_drain.py")
    proc = subprocess.run(
        [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300 + events / 10
    )
    if proc.returncode != 0:
        raise AssertionError(f"profile_drain.py {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    db.reset(ctx.conn)
    result = json.loads(out.read_text(encoding="utf-8"))
    ctx.log(
        f"  profile {handler} batch {batch}: {result['rate']:,.0f} events/s, "
        f"{result['round_trips_per_batch']:.2f} round trips per batch"
    )
    return result
