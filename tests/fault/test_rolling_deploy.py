"""A rolling deploy: the trigger of a new topic ships before the drainers that handle it.

The old drainers run while events of the new topic (tests/stockapp's stock levels)
arrive among pricing's: one runs the old code (project settings without the stock
app: no handler for the topic at all), one the new code restricted to pricing
(``drain_outbox --topic crawl.result.created``). What must hold (issue 10, point 2):
they drain pricing as usual and leave every stock event pending, unclaimed, with no
attempt used and no error; ``outbox_status`` names the topic as waiting for a
drainer; then a drainer with the new handler starts and drains the stock backlog,
each event exactly once, and the old drainers carry on unharmed.
"""

from __future__ import annotations

import pytest
from django.db import connection

from pricing.models import CRAWL_RESULT_CREATED
from tests.fault.conftest import (
    assert_queue_settled,
    assert_recorded_once_in_outbox_order,
    insert_unique_results,
    make_products_sql,
)
from tests.stockapp.models import STOCK_LEVEL_COUNTED, ReorderRequest, StockLevel
from tests.support import DrainerProcess, current_database_url, drainer_env, manage, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.fault]

ROUNDS = 5
RESULTS = 400  # pricing results per round
LEVELS = 150  # stock levels per round, every third one low
ARGS = ["--batch-size", "50", "--interval", "0.2"]


def topic_summary(topic: str) -> tuple[int, dict[str, int], int, int, int]:
    """(events, by status, most attempts, events ever leased, events with an error) of ``topic``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*), max(attempts), count(locked_by), count(nullif(last_error, '')) "
            "FROM outbox_event WHERE topic = %s GROUP BY status",
            [topic],
        )
        rows = cursor.fetchall()
    return (
        sum(r[1] for r in rows),
        {r[0]: r[1] for r in rows},
        max((r[2] for r in rows), default=0),
        sum(r[3] for r in rows),
        sum(r[4] for r in rows),
    )


def pricing_pending() -> int:
    return topic_summary(CRAWL_RESULT_CREATED)[1].get("pending", 0)


def test_new_topic_waits_for_its_drainer_and_is_drained_once_it_comes() -> None:
    url = current_database_url()
    products = make_products_sql(url, "RD", 100)
    old_code = DrainerProcess(ARGS, env=drainer_env("project.settings"))
    restricted = DrainerProcess([*ARGS, "--topic", CRAWL_RESULT_CREATED], env=drainer_env("tests.settings_stock"))
    old = [old_code, restricted]
    new: DrainerProcess | None = None
    try:
        wait_until(lambda: all(d.started() for d in old), timeout=60, message="the old drainers started")
        for round_ in range(ROUNDS):
            insert_unique_results(url, products, RESULTS, first=100_000 + round_ * RESULTS)
            StockLevel.objects.bulk_create(
                [
                    StockLevel(sku=f"R{round_}-{i}", warehouse="north", quantity=3 if i % 3 == 0 else 30)
                    for i in range(LEVELS)
                ]
            )
        # Pricing results inserted after the whole stock backlog: once they are done, the
        # old drainers have claimed past every stock event many times over.
        insert_unique_results(url, products, RESULTS, first=100_000 + ROUNDS * RESULTS)
        wait_until(lambda: pricing_pending() == 0, timeout=90, message="the old drainers drained pricing")

        events, by_status, most, leased, errors = topic_summary(STOCK_LEVEL_COUNTED)
        assert events == ROUNDS * LEVELS, f"{events} stock events for {ROUNDS * LEVELS} stock levels"
        assert by_status == {"pending": events}, f"the old drainers touched the new topic: {by_status}"
        assert (most, leased, errors) == (0, 0, 0), (
            f"stock events claimed by a drainer without their handler: most attempts {most}, "
            f"{leased} ever leased, {errors} with an error"
        )
        assert ReorderRequest.objects.count() == 0
        status = manage("outbox_status", env=drainer_env("tests.settings_stock"))
        assert f"{events:,} pending event(s) of {STOCK_LEVEL_COUNTED} wait for a drainer" in status.stdout, (
            status.stdout + status.stderr
        )

        new = DrainerProcess(ARGS, env=drainer_env("tests.settings_stock"))
        wait_until(
            lambda: topic_summary(STOCK_LEVEL_COUNTED)[1].get("pending", 0) == 0,
            timeout=60,
            message="the new drainer drained the stock backlog",
        )
        for d in old:
            assert d.exit_code is None, f"an old drainer exited:\n{d.tail(30)}"
        codes = [d.stop(30) for d in [*old, new]]
    except BaseException:
        for d in [*old, *([new] if new else [])]:
            print(f"--- drainer {d.pid} exit={d.exit_code}\n{d.tail(30)}")
        raise
    finally:
        outputs = [d.output() for d in [*old, *([new] if new else [])]]
        for d in [*old, *([new] if new else [])]:
            d.close()

    assert codes == [0, 0, 0], f"drainers exited with {codes}"
    assert_queue_settled()
    events, by_status, most, _, errors = topic_summary(STOCK_LEVEL_COUNTED)
    assert by_status == {"done": ROUNDS * LEVELS} and most == 1 and errors == 0, (by_status, most, errors)
    low = StockLevel.objects.filter(quantity__lt=10).count()
    assert low == ROUNDS * -(-LEVELS // 3)
    assert ReorderRequest.objects.count() == low, f"{ReorderRequest.objects.count()} reorders for {low} low levels"
    assert_recorded_once_in_outbox_order(url, results=(ROUNDS + 1) * RESULTS)
    assert not any("Traceback" in out for out in outputs), outputs
