"""Real drain_outbox processes with a second topic: --topic filtering, two topics side by side.

The drainers run with tests/settings_stock.py, a project's settings plus the
stock app: the only thing a project changes to add a topic.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from django.db.models import Count

from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult, PriceHistory, Product
from tests.factories import make_results_sql
from tests.stockapp.models import STOCK_LEVEL_COUNTED, ReorderRequest, StockLevel
from tests.support import ROOT, DrainerProcess, drainer_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]

STOCK_SETTINGS = "tests.settings_stock"


def make_stock_levels(count: int) -> None:
    """``count`` stock levels; every third one is low (quantity below 10)."""
    StockLevel.objects.bulk_create(
        [StockLevel(sku=f"S-{i}", warehouse="north", quantity=5 if i % 3 == 0 else 25) for i in range(count)]
    )


def statuses() -> dict[tuple[str, str], int]:
    rows = OutboxEvent.objects.values_list("topic", "status").annotate(n=Count("id"))
    return {(topic, status): n for topic, status, n in rows}


def drain_once(*args: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "drain_outbox", "--once", *args],
        cwd=ROOT,
        env=drainer_env(STOCK_SETTINGS),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"drain_outbox {' '.join(args)} exited {completed.returncode}:\n{output}"
    return output


def test_topic_flag_drains_only_that_topic() -> None:
    products = Product.objects.bulk_create([Product(sku=f"P{i}", name=f"P{i}") for i in range(5)])
    make_results_sql([p.id for p in products], 40, price_mod=100_000)
    make_stock_levels(30)

    output = drain_once("--topic", STOCK_LEVEL_COUNTED)
    assert "drained claimed=30 done=30" in output, output
    assert statuses() == {(STOCK_LEVEL_COUNTED, "done"): 30, (CRAWL_RESULT_CREATED, "pending"): 40}
    untouched = OutboxEvent.objects.filter(topic=CRAWL_RESULT_CREATED).exclude(attempts=0).count()
    assert untouched == 0, f"{untouched} pricing events were claimed by a stock-only drainer"
    assert ReorderRequest.objects.count() == 10
    assert PriceHistory.objects.count() == 0

    output = drain_once("--topic", CRAWL_RESULT_CREATED)
    assert "drained claimed=40 done=40" in output, output
    assert statuses() == {(STOCK_LEVEL_COUNTED, "done"): 30, (CRAWL_RESULT_CREATED, "done"): 40}
    assert PriceHistory.objects.count() == 40


def test_two_topics_drained_side_by_side_by_drainers_of_each() -> None:
    drainers = {
        topic: DrainerProcess(["--topic", topic, "--interval", "0.2"], env=drainer_env(STOCK_SETTINGS))
        for topic in (STOCK_LEVEL_COUNTED, CRAWL_RESULT_CREATED)
    }
    try:
        products = Product.objects.bulk_create([Product(sku=f"P{i}", name=f"P{i}") for i in range(10)])
        for _ in range(3):  # both topics arrive interleaved, in several transactions
            make_results_sql([p.id for p in products], 200, price_mod=100_000)
            make_stock_levels(60)
        wait_until(
            lambda: not OutboxEvent.objects.exclude(status="done").exists(),
            timeout=120,
            message="every event of both topics done",
        )
        for d in drainers.values():
            d.send(signal.SIGTERM)
        codes = {topic: d.wait(30) for topic, d in drainers.items()}
        logs = {topic: d.output() for topic, d in drainers.items()}
    finally:
        for d in drainers.values():
            d.close()
    assert codes == {STOCK_LEVEL_COUNTED: 0, CRAWL_RESULT_CREATED: 0}, f"exit codes {codes}:\n{logs}"
    assert statuses() == {(STOCK_LEVEL_COUNTED, "done"): 180, (CRAWL_RESULT_CREATED, "done"): 600}
    assert CrawlResult.objects.filter(history_record_status="recorded").count() == 600
    assert ReorderRequest.objects.count() == 60
    # Each drainer touched its own topic only: the log labels say whose handler ran.
    assert "Stock:" in logs[STOCK_LEVEL_COUNTED] and "Auto-record:" not in logs[STOCK_LEVEL_COUNTED]
    assert "Auto-record:" in logs[CRAWL_RESULT_CREATED] and "Stock:" not in logs[CRAWL_RESULT_CREATED]
