"""Real drain_outbox processes in parallel: every result recorded exactly once."""

from __future__ import annotations

import signal

import pytest
from django.db import connection

from outbox.models import OutboxEvent
from pricing.models import CrawlResult, PriceHistory, Product
from tests.factories import make_results_sql
from tests.support import DrainerProcess, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def test_two_drainers_record_5000_results_exactly_once() -> None:
    products = Product.objects.bulk_create([Product(sku=f"P{i}", name=f"P{i}") for i in range(50)])
    drainers = [DrainerProcess(["--batch-size", "100", "--interval", "0.2"]) for _ in range(2)]
    try:
        wait_until(lambda: drainers_connected() >= 2, timeout=60, message="both drainers connected")
        # Distinct prices per product (price_mod > results per product): every result is eligible.
        make_results_sql([p.id for p in products], 5000, price_mod=100_000)
        wait_until(
            lambda: not OutboxEvent.objects.exclude(status="done").exists(),
            timeout=120,
            message="all 5000 events done",
        )
        for d in drainers:
            d.send(signal.SIGTERM)
        codes = [d.wait(30) for d in drainers]
        logs = [d.output() for d in drainers]
    finally:
        for d in drainers:
            d.close()
    assert codes == [0, 0], f"drainers exited with {codes}:\n" + "\n".join(log[-2000:] for log in logs)
    with connection.cursor() as cursor:
        cursor.execute("SELECT crawl_result_id, count(*) FROM pricing_pricehistory GROUP BY 1 HAVING count(*) > 1")
        doubled = cursor.fetchall()
    assert doubled == [], f"{len(doubled)} results recorded twice, e.g. {doubled[:5]}"
    missing = CrawlResult.objects.exclude(history_record_status="recorded").count()
    assert missing == 0, f"{missing} results not recorded"
    assert PriceHistory.objects.count() == 5000
    # The drainers' own log lines account for every event once.
    worked = [
        sum(
            int(p.split("=")[1])
            for line in log.splitlines()
            if "Auto-record:" in line
            for p in line.split()
            if p.startswith("processed=")
        )
        for log in logs
    ]
    assert sum(worked) == 5000, f"processed per drainer: {worked}"


def drainers_connected() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
            "WHERE application_name LIKE 'outbox:%%' AND datname = current_database()"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0
