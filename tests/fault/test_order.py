"""Per-product order with parallel drainers (issue 4, point 5; DESIGN invariant 4).

Several results of one product are in flight at once, in different drainers'
batches (small batches, four drainers, results streaming in). What must hold:

* results of one insert statement share ``crawled_at`` and are never stale to each
  other; they are taken in outbox order. With ``crawled_at`` rising from statement
  to statement, the whole history is then exactly what one drainer taking the
  events one by one in outbox order writes: the first test compares every
  result's outcome and every history row with that sequential model;
* unchanged prices are recorded once: no two consecutive history rows of a
  product carry the same price;
* a result crawled earlier is never recorded after, or as newer than, a result
  crawled later: it is skipped as ``stale`` (second test, ``crawled_at`` shuffled),
  and only then: the stale results are exactly those for which a result of the
  product crawled later had been recorded by an earlier transaction.

The drainers change while results stream in: two start, two more join (each gives
back and takes buckets), then the drainer owning the first product's bucket stops
(its buckets go to the others) and a fresh one joins. Every product's events are
then held by two drainers or more in turn (``locked_by`` of its events), the first
product's at least: the order is kept across bucket handovers, not only inside one
drainer.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from typing import NamedTuple

import pytest
from django.db import connection
from django.utils import timezone

from pricing.models import CRAWL_RESULT_CREATED, Product
from tests.fault.conftest import all_settled, assert_queue_settled
from tests.support import DrainerProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.fault]

PRODUCTS = 4
STATEMENTS = 30
PER_STATEMENT = 40  # 10 results per product per statement: ties on crawled_at
BATCH = "7"  # small and odd, so one statement's results of a product land in several batches
PRICES = ["1.00", "2.00", "3.00"]


class Row(NamedTuple):
    result_id: str
    product_id: int
    price: Decimal
    crawled_at: dt.datetime
    event_id: int
    status: str | None
    reason: str


def insert(products: list[int], prices: list[Decimal], crawled_at: list[dt.datetime] | None = None) -> None:
    """One statement, rows (and so events) in list order; crawled_at defaults to now()."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence, crawled_at)
            SELECT r.product_id, 'html_ml', r.price, 'EUR', 0.95, coalesce(r.crawled_at, now())
            FROM unnest(%(products)s::bigint[], %(prices)s::numeric[], %(crawled)s::timestamptz[])
                WITH ORDINALITY AS r(product_id, price, crawled_at, n)
            ORDER BY r.n
            """,
            {"products": products, "prices": prices, "crawled": crawled_at or [None] * len(products)},
        )


def results_in_outbox_order() -> list[Row]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT cr.id::text, cr.product_id, cr.price, cr.crawled_at, e.id,
                   cr.history_record_status, cr.history_record_reason
            FROM pricing_crawlresult AS cr JOIN outbox_event AS e ON e.key = cr.id::text
            ORDER BY e.id
            """
        )
        return [Row(*row) for row in cursor.fetchall()]


def history_by_product() -> dict[int, list[tuple[str, Decimal, dt.datetime]]]:
    """Each product's history in the order it was written: (result id, price, crawled_at)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT product_id, crawl_result_id::text, price, crawled_at FROM pricing_pricehistory ORDER BY id"
        )
        history: dict[int, list[tuple[str, Decimal, dt.datetime]]] = defaultdict(list)
        for product_id, result_id, price, crawled_at in cursor.fetchall():
            history[product_id].append((result_id, price, crawled_at))
    return history


def make_products(prefix: str) -> list[int]:
    created = Product.objects.bulk_create([Product(sku=f"{prefix}{i}", name=prefix) for i in range(PRODUCTS)])
    return [p.id for p in created]


def bucket_owner(product_id: int) -> str | None:
    """The drainer that owns the order bucket of ``product_id``'s events now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT b.owner FROM outbox_bucket AS b WHERE b.topic = %s AND b.bucket = ("
            "SELECT e.bucket FROM outbox_event AS e JOIN pricing_crawlresult AS cr ON e.key = cr.id::text "
            "WHERE cr.product_id = %s LIMIT 1)",
            [CRAWL_RESULT_CREATED, product_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def owners() -> dict[str, int]:
    """Buckets per owner of the pricing topic."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT owner, count(*) FROM outbox_bucket WHERE topic = %s AND owner IS NOT NULL GROUP BY 1",
            [CRAWL_RESULT_CREATED],
        )
        return dict(cursor.fetchall())


def holders_by_product() -> dict[int, set[str]]:
    """product -> the drainers whose ack ended its events (locked_by of done events)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT cr.product_id, array_agg(DISTINCT e.locked_by) FROM outbox_event AS e "
            "JOIN pricing_crawlresult AS cr ON e.key = cr.id::text GROUP BY 1"
        )
        return {product_id: set(holders) for product_id, holders in cursor.fetchall()}


def run_drainers(write: object, products: list[int]) -> None:
    """Drain while ``write(n)`` inserts n statements, drainers joining and leaving between
    its calls; then all must settle and stop cleanly, the first product held by two."""
    args = ["--batch-size", BATCH, "--interval", "0.2"]
    drainers = [DrainerProcess(args), DrainerProcess(args)]
    stopped: list[int] = []
    try:
        write(STATEMENTS // 3)  # type: ignore[operator]
        drainers += [DrainerProcess(args), DrainerProcess(args)]
        wait_until(lambda: len(owners()) == 4, timeout=30, message="four drainers owning buckets")
        write(STATEMENTS // 3)  # type: ignore[operator]
        leaving = wait_until(lambda: bucket_owner(products[0]), timeout=10, message="the first product's owner")
        # Its stop waits for its batch; a drainer still starting would die of the SIGTERM.
        index = next(i for i, d in enumerate(drainers) if f":{d.pid}:" in leaving)
        wait_until(drainers[index].started, timeout=30, message="the leaving drainer started")
        stopped.append(drainers[index].stop())
        drainers[index] = DrainerProcess(args)
        write(STATEMENTS - 2 * (STATEMENTS // 3))  # type: ignore[operator]
        wait_until(all_settled, timeout=120, message="every event done")
        wait_until(lambda: all(d.started() for d in drainers), timeout=30, message="the new drainer started")
        codes = [d.stop() for d in drainers]
    except BaseException:
        print("\n".join(d.output()[-1500:] for d in drainers))
        raise
    finally:
        logs = "\n".join(d.output()[-1500:] for d in drainers)
        for d in drainers:
            d.close()
    assert stopped == [0] and codes == [0, 0, 0, 0], f"drainers exited with {stopped} {codes}:\n{logs}"
    assert_queue_settled()
    holders = holders_by_product()
    print(f"drainers that handled each product's events: { {p: len(h) for p, h in holders.items()} }")
    assert leaving in holders[products[0]] and len(holders[products[0]]) >= 2, (
        f"the first product's events were held by {holders[products[0]]} only: no bucket handover was tested"
    )


def test_parallel_history_is_the_sequential_history() -> None:
    rng = random.Random(5)  # noqa: S311
    products = make_products("O")

    def write(statements: int) -> None:
        for _ in range(statements):
            # Prices from a small set: many unchanged prices, many changes, in one statement.
            rows = [(products[i % PRODUCTS], Decimal(rng.choice(PRICES))) for i in range(PER_STATEMENT)]
            rng.shuffle(rows)
            insert([p for p, _ in rows], [price for _, price in rows])

    run_drainers(write, products)

    rows = results_in_outbox_order()
    assert len(rows) == STATEMENTS * PER_STATEMENT
    # The sequential model: one drainer, one event at a time, in outbox order.
    latest: dict[int, Decimal] = {}
    expected_history: dict[int, list[str]] = defaultdict(list)
    wrong = []
    for row in rows:
        if row.product_id in latest and latest[row.product_id] == row.price:
            expected = ("duplicate", "unchanged_price")
        else:
            expected = ("recorded", "eligible")
            latest[row.product_id] = row.price
            expected_history[row.product_id].append(row.result_id)
        if (row.status, row.reason) != expected:
            wrong.append((row.event_id, row.product_id, str(row.price), row.status, row.reason, expected))
    assert not wrong, (
        f"{len(wrong)} results decided otherwise than in outbox order "
        f"(event, product, price, got status, got reason, expected): {wrong[:5]}"
    )
    history = history_by_product()
    for product_id in products:
        written = [result_id for result_id, _, _ in history[product_id]]
        assert written == expected_history[product_id], (
            f"product {product_id}: history written in another order or with other rows than one drainer "
            f"would write it: {len(written)} rows vs {len(expected_history[product_id])} expected"
        )
        prices = [price for _, price, _ in history[product_id]]
        repeats = [i for i in range(1, len(prices)) if prices[i] == prices[i - 1]]
        assert not repeats, f"product {product_id}: an unchanged price recorded again at rows {repeats[:5]}"


def test_earlier_crawled_result_is_never_recorded_after_a_later_one() -> None:
    rng = random.Random(6)  # noqa: S311
    products = make_products("S")
    base = timezone.now() - dt.timedelta(hours=1)

    def write(statements: int) -> None:
        for _ in range(statements):
            # crawled_at shuffled across statements (late arrivals), with ties inside one.
            stamps = [base + dt.timedelta(seconds=rng.randrange(60)) for _ in range(4)]
            rows = [(products[i % PRODUCTS], Decimal(rng.choice(PRICES))) for i in range(PER_STATEMENT)]
            insert([p for p, _ in rows], [price for _, price in rows], [rng.choice(stamps) for _ in rows])

    run_drainers(write, products)

    rows = results_in_outbox_order()
    by_result = {row.result_id: row for row in rows}
    history = history_by_product()
    undecided = [row for row in rows if row.status is None]
    assert not undecided, f"{len(undecided)} results never decided (lost), e.g. {undecided[:3]}"
    for product_id in products:
        written = history[product_id]
        for (earlier_id, _, earlier_at), (later_id, _, later_at) in zip(written, written[1:], strict=False):
            assert later_at >= earlier_at, (
                f"product {product_id}: result {later_id} crawled at {later_at} recorded after "
                f"result {earlier_id} crawled later, at {earlier_at}"
            )
            if later_at == earlier_at:
                assert by_result[later_id].event_id > by_result[earlier_id].event_id, (
                    f"product {product_id}: results {earlier_id} and {later_id} (same crawled_at) "
                    "recorded against outbox order"
                )
        prices = [price for _, price, _ in written]
        repeats = [i for i in range(1, len(prices)) if prices[i] == prices[i - 1]]
        assert not repeats, f"product {product_id}: an unchanged price recorded again at rows {repeats[:5]}"
    newest = {product_id: max(at for _, _, at in written) for product_id, written in history.items()}
    recorded = {result_id for written in history.values() for result_id, _, _ in written}
    for row in rows:
        assert (row.status == "recorded") == (row.result_id in recorded), f"status and history disagree: {row}"
        if row.reason == "stale":
            assert row.crawled_at < newest[row.product_id], f"skipped as stale with nothing newer recorded: {row}"
    stale = {row.result_id for row in rows if row.reason == "stale"}
    assert stale, "no result was stale: the test did not exercise late arrivals"
    # Stale exactly when a result of the product crawled later had been recorded by an
    # earlier transaction (processed_at: the start of the transaction that decided it).
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT cr.id::text FROM pricing_crawlresult AS cr
            JOIN outbox_event AS e ON e.key = cr.id::text
            WHERE cr.product_id = ANY(%s) AND EXISTS (
                SELECT 1 FROM pricing_pricehistory AS h
                JOIN outbox_event AS he ON he.key = h.crawl_result_id::text
                WHERE h.product_id = cr.product_id AND h.crawled_at > cr.crawled_at
                  AND he.processed_at < e.processed_at)
            """,
            [products],
        )
        overtaken = {row[0] for row in cursor.fetchall()}
    assert stale == overtaken, (
        f"{len(stale - overtaken)} results stale with nothing newer recorded before them, e.g. "
        f"{[by_result[i] for i in sorted(stale - overtaken)[:3]]}; {len(overtaken - stale)} overtaken results "
        f"not stale, e.g. {[by_result[i] for i in sorted(overtaken - stale)[:3]]}"
    )
