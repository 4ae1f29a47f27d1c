"""SIGKILL storm: 4 drainers, 20,000 results, a random drainer killed every few hundred ms.

What it proves (DESIGN invariants 1, 2 and 4 under SIGKILL at any instant):
nothing lost (every eligible result recorded, every event done, no lease left),
nothing doubled (one PriceHistory row per result), per-product order kept (each
product's history written in outbox order, so in crawled_at order), and dead
drainers' claims handed back at once (the dead-holder rescue: the lease is 300 s,
far longer than the test may take).
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from pricing.models import CrawlResult, PriceHistory, Product
from tests.fault.conftest import all_settled, assert_queue_settled
from tests.support import DrainerPool, Supervisor, current_database_url, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.fault]

RESULTS = 20_000
CHUNKS = 20  # insert statements; each has its own crawled_at (its transaction's now())
PRODUCTS = 400  # 50 results per product, many of them in flight at once
KILLS = 20  # two insert statements after each of the first ten kills, then ten more kills
KILL_EVERY = (0.3, 0.7)  # seconds between kills, at random

# Far longer than the test may take: a killed drainer's events must come back through
# the dead-holder rescue (its backend gone from pg_stat_activity), not by expiry.
LEASE = "300"

# Every kill costs one attempt to each event of the batch the victim held (the claim
# counts it before the handler runs, which is what walks a process-killing poison
# event to 'failed'). An unlucky event can sit in several killed batches, so this
# test allows 20 claims: it checks that kills lose and double nothing. The poison
# tests check max_attempts itself.
MAX_ATTEMPTS = 20


def insert_chunk(chunk: int, product_ids: list[int]) -> None:
    """1,000 results in one statement: every 10th from an untrusted source (skipped).

    Prices are unique over the whole test, so no eligible result is an unchanged
    price: each one must end in exactly one PriceHistory row.
    """
    size = RESULTS // CHUNKS
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence)
            SELECT (%(products)s::bigint[])[1 + (g %% cardinality(%(products)s::bigint[]))],
                   CASE WHEN g %% 10 = 0 THEN 'manual' ELSE 'html_ml' END,
                   (%(base)s + g) / 100.0, 'EUR', 0.95
            FROM generate_series(1, %(size)s) AS g
            ORDER BY g
            """,
            {"products": product_ids, "size": size, "base": 1000 + chunk * size},
        )


def test_sigkill_storm_loses_and_doubles_nothing() -> None:
    products = Product.objects.bulk_create([Product(sku=f"K{i}", name=f"K{i}") for i in range(PRODUCTS)])
    product_ids = [p.id for p in products]
    args = ["--batch-size", "100", "--interval", "0.5", "--max-attempts", str(MAX_ATTEMPTS), "--lease", LEASE]
    pool = DrainerPool(4, args)
    killer = Supervisor(pool, kill_every=KILL_EVERY, seed=4, database_url=current_database_url())
    started = time.monotonic()
    try:
        killer.start()
        for chunk in range(CHUNKS):
            # Results keep arriving during the storm, two statements per kill, faster
            # than the drainers take them under fire: kills land on busy drainers.
            wait_until(lambda n=chunk: len(killer.kills) >= n // 2, timeout=30, message=f"kill number {chunk // 2}")
            insert_chunk(chunk, product_ids)
        wait_until(lambda: len(killer.kills) >= KILLS, timeout=30, message=f"{KILLS} kills")
        killer.stop()
        stormed = time.monotonic() - started
        wait_until(all_settled, timeout=120, message="every event done after the storm")
        settled = time.monotonic() - started
        codes = pool.stop()
    except BaseException:
        killer.stop()
        print(pool.output())
        raise
    finally:
        elapsed = time.monotonic() - started
        logs = pool.output(800)
        pool.close()
    print(
        f"kills={len(killer.kills)} mid-batch={killer.busy_kills} storm={stormed:.1f}s "
        f"settled={settled:.1f}s total={elapsed:.1f}s"
    )

    assert codes == [0, 0, 0, 0], f"survivors exited with {codes}:\n{logs}"
    assert_queue_settled()

    eligible = CrawlResult.objects.filter(source="html_ml")
    with connection.cursor() as cursor:
        cursor.execute("SELECT crawl_result_id, count(*) FROM pricing_pricehistory GROUP BY 1 HAVING count(*) > 1")
        doubled = cursor.fetchall()
    assert not doubled, f"{len(doubled)} results recorded more than once (result id, rows): {doubled[:5]}"
    lost = eligible.exclude(history_record_status="recorded")
    assert not lost.exists(), (
        f"{lost.count()} eligible results not recorded, e.g. "
        f"{list(lost.values_list('id', 'history_record_status', 'history_record_reason')[:5])}"
    )
    assert PriceHistory.objects.count() == eligible.count() == RESULTS * 9 // 10, (
        f"{PriceHistory.objects.count()} history rows for {eligible.count()} eligible results"
    )
    wrongly = PriceHistory.objects.exclude(crawl_result__source="html_ml").count()
    assert wrongly == 0, f"{wrongly} untrusted results recorded"

    # Per product, history was written in outbox order (= crawled_at order here).
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT h.product_id, count(*) AS swapped
            FROM (
                SELECT h.product_id, e.id AS event_id,
                       lag(e.id) OVER (PARTITION BY h.product_id ORDER BY h.id) AS previous_event_id
                FROM pricing_pricehistory AS h
                JOIN outbox_event AS e ON e.key = h.crawl_result_id::text
            ) AS h
            WHERE h.event_id < h.previous_event_id
            GROUP BY 1 ORDER BY 2 DESC
            """
        )
        out_of_order = cursor.fetchall()
    assert not out_of_order, (
        f"{len(out_of_order)} products have history written out of outbox order "
        f"(product id, rows recorded after a later result): {out_of_order[:5]}"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(attempts), count(*) FILTER (WHERE attempts > 1) FROM outbox_event")
        most, retried = cursor.fetchone()
    assert retried > 0, "no event was ever claimed twice: no kill hit a drainer holding a batch"
    print(f"events claimed more than once: {retried}, most claims of one event: {most}")
