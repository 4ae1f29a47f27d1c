"""The processes a benchmark runs: real drainers, and the bench's own workers.

Drainers are real ``manage.py drain_outbox`` subprocesses, exactly as deployed.
The other workers (the plain-SQL ceiling, the old Redis design, writers, the
latency observer) are spawned Python processes with their own connections, so
no measured process shares a connection or an interpreter lock with another.
Every one of them is started, and ended, by the bench.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
import traceback
from collections.abc import Sequence
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from bench import db
from outbox.fleet import DrainerFleet, drainer_env

SPAWN = mp.get_context("spawn")


def process_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB, from /proc."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


class DrainerPool(DrainerFleet):
    """``count`` real ``drain_outbox`` processes on the bench database (outbox.fleet)."""

    def __init__(
        self,
        url: str,
        count: int,
        *,
        batch_size: int,
        interval: float = 5.0,
        notify: bool = True,
        log_dir: Path,
        verbosity: int = 1,
        pgoptions: str = "",
        settings_module: str = "bench.settings",
        extra_args: Sequence[str] = (),
    ) -> None:
        # PGOPTIONS: server settings for the drainers' sessions only (libpq reads it).
        env = drainer_env(url, settings_module, **({"PGOPTIONS": pgoptions} if pgoptions else {}))
        args = ["--batch-size", str(batch_size), "--interval", str(interval), "--verbosity", str(verbosity)]
        if not notify:
            args.append("--no-notify")
        log_dir = Path(tempfile.mkdtemp(prefix="drainers-", dir=log_dir))
        super().__init__(count, [*args, *extra_args], env=env, manage_py=db.ROOT / "manage.py", log_dir=log_dir)

    def wait_ready(self, conn: Any = None, timeout: float = 60.0) -> None:
        """Until every drainer is connected, owns its buckets and (with NOTIFY) listens."""
        self.wait_started(timeout)

    def stop(self, timeout: float = 30.0) -> list[int | None]:  # type: ignore[override]
        codes = super().stop(timeout)
        self.close()
        return codes

    def __enter__(self) -> DrainerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- spawned workers


def run_workers(jobs: Sequence[tuple[Any, tuple[Any, ...]]], *, timeout: float) -> tuple[float, list[Any]]:
    """Start one spawned process per ``(target, args)``, release them together, collect results.

    Each target is called as ``target(go, out, ready, *args)``: it prepares (connects),
    puts True on ``ready``, waits on ``go``, works, and puts its result on ``out``.
    Returns the wall-clock time ``go`` was set and the results in ``jobs`` order.
    """
    go = SPAWN.Event()
    ready: Any = SPAWN.Queue()
    outs: list[Any] = [SPAWN.Queue() for _ in jobs]
    processes = [
        SPAWN.Process(target=target, args=(go, out, ready, *args), daemon=True)
        for (target, args), out in zip(jobs, outs, strict=True)
    ]
    for p in processes:
        p.start()
    try:
        for _ in processes:
            ready.get(timeout=timeout)
        go_time = time.time()
        go.set()
        results = [out.get(timeout=timeout) for out in outs]
    finally:
        for p in processes:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    for result in results:
        if isinstance(result, BaseException):
            raise RuntimeError(f"a bench worker failed: {result!r}") from result
    return go_time, results


def ceiling_worker(go: EventType, out: Any, ready: Any, url: str, batch: int, statement: str = "ceiling") -> None:
    """A plain-SQL drain: one set-based statement per batch until nothing is left.

    ``statement``: ``ceiling`` (the pricing work, ceiling_drain_batch) or
    ``trivial`` (one row per event, trivial_drain_batch).
    """
    sql = db.queries.ceiling_drain_batch if statement == "ceiling" else db.queries.trivial_drain_batch
    try:
        with db.connect(url) as conn:
            conn.execute("SET enable_incremental_sort = off")
            ready.put(True)
            go.wait()
            done = 0
            while True:
                cursor = conn.execute(sql, {"batch": batch})
                if cursor.rowcount == 0:
                    # SKIP LOCKED: another worker may still hold the last rows. Only an
                    # empty pending set ends the drain.
                    if not db.pending_exists(conn):
                        break
                    continue
                done += cursor.rowcount
            out.put((done, time.time()))
    except BaseException:  # reported to the parent, which raises
        out.put(RuntimeError(traceback.format_exc()))
        ready.put(False)


def _django_setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    import django

    django.setup()


def redis_worker(
    go: EventType, out: Any, ready: Any, url: str, redis_url: str, queue: str, pop: int, per_item: bool
) -> None:
    """The old design's shape: pop ids from a Redis list, record each with the ORM.

    ``per_item``: one commit per result (the old scheduler); otherwise one commit per
    popped batch. Criteria are the project's own ``should_auto_record``.
    """
    try:
        _django_setup(url)
        import redis
        from django.db import transaction

        from pricing.auto_record import get_config, should_auto_record
        from pricing.models import CrawlResult, PriceHistory

        client = redis.Redis.from_url(redis_url)
        config = get_config()

        def record(result_id: str) -> None:
            result = CrawlResult.objects.get(pk=result_id)
            decision = should_auto_record(result, config)
            status, reason = ("skipped", decision.reason)
            if decision.record:
                history = PriceHistory.objects.filter(product_id=result.product_id)
                latest = history.order_by("-crawled_at", "-id").first()
                if latest is not None and latest.price == result.price and latest.currency == result.currency:
                    status, reason = ("duplicate", "unchanged_price")
                else:
                    PriceHistory.objects.create(
                        product_id=result.product_id,
                        price=result.price,
                        currency=result.currency,
                        source=result.source,
                        crawled_at=result.crawled_at,
                        crawl_result=result,
                    )
                    status, reason = ("recorded", "eligible")
            CrawlResult.objects.filter(pk=result_id).update(
                history_record_status=status, history_record_reason=reason, history_recorded=status == "recorded"
            )

        CrawlResult.objects.exists()  # connect before the clock starts
        ready.put(True)
        go.wait()
        done = 0
        while True:
            ids = client.lpop(queue, pop)
            if not ids:
                break
            if per_item:
                for raw in ids:
                    with transaction.atomic():
                        record(raw.decode())
            else:
                with transaction.atomic():
                    for raw in ids:
                        record(raw.decode())
            done += len(ids)
        out.put((done, time.time()))
    except BaseException:
        out.put(RuntimeError(traceback.format_exc()))
        ready.put(False)


def insert_writer(
    go: EventType, out: Any, ready: Any, url: str, count: int, first_product: int, notify: bool, seed: int
) -> None:
    """Single-row inserts as fast as they go, each its own transaction (autocommit)."""
    try:
        with db.connect(url) as conn:
            if not notify:
                conn.execute("SET outbox.notify = off")
            products = db.PRODUCTS
            ready.put(True)
            go.wait()
            start = time.perf_counter()
            for i in range(count):
                conn.execute(
                    db.queries.crawl_result_insert_one,
                    {"product_id": first_product + (seed * 7919 + i) % products, "price": 10 + i % 1000},
                )
            elapsed = time.perf_counter() - start
        out.put((count, elapsed))
    except BaseException:
        out.put(RuntimeError(traceback.format_exc()))
        ready.put(False)


def paced_writer(
    go: EventType,
    out: Any,
    ready: Any,
    url: str,
    rate: float,
    duration: float,
    first_product: int,
    notify: bool,
    repetition: int,
) -> None:
    """Insert at a steady ``rate`` per second for ``duration`` s; return (id, commit time).

    Each repetition moves every price, so no result is an unchanged price (which
    writes no history, and so would never be seen by the latency probe).
    """
    try:
        with db.connect(url) as conn:
            if not notify:
                conn.execute("SET outbox.notify = off")
            ready.put(True)
            go.wait()
            commits: list[tuple[str, float]] = []
            count = int(rate * duration)
            start = time.time()
            for i in range(count):
                target = start + i / rate
                delay = target - time.time()
                if delay > 0:
                    time.sleep(delay)
                row = conn.execute(
                    db.queries.crawl_result_insert_one,
                    {
                        "product_id": first_product + (i * 7919) % db.PRODUCTS,
                        "price": 10 + 7 * repetition + (i % 5000) / 100,
                    },
                ).fetchone()
                assert row is not None
                commits.append((str(row[0]), time.time()))
        out.put(commits)
    except BaseException:
        out.put(RuntimeError(traceback.format_exc()))
        ready.put(False)


def history_observer(go: EventType, out: Any, ready: Any, url: str, expected: int, timeout: float) -> None:
    """LISTEN to the bench's history probe; record when each result's history commits."""
    try:
        with db.connect(url) as conn:
            conn.execute("LISTEN bench_history")
            ready.put(True)
            go.wait()
            seen: dict[str, float] = {}
            deadline = time.time() + timeout
            while len(seen) < expected and time.time() < deadline:
                for notify in conn.notifies(timeout=0.5):
                    seen.setdefault(notify.payload, time.time())
                    if len(seen) >= expected:
                        break
        out.put(seen)
    except BaseException:
        out.put(RuntimeError(traceback.format_exc()))
        ready.put(False)
