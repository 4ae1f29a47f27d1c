"""A foreign session holding the notify gate's advisory keys silences NOTIFY and
nothing else: a drainer idle on LISTEN still drains the events, by its poll."""

from __future__ import annotations

import psycopg
import pytest

from outbox.models import OutboxEvent
from tests.factories import make_product
from tests.support import DrainerProcess, current_database_url, hold_notify_gate, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def test_events_drain_by_poll_while_a_foreign_session_holds_the_notify_gate() -> None:
    product = make_product()
    url = current_database_url().replace("postgres://", "postgresql://", 1)
    drainer = DrainerProcess(["--interval", "0.5"])
    try:
        wait_until(drainer.started, timeout=60, message="the drainer to start")
        with (
            psycopg.connect(url, autocommit=True) as holder,
            psycopg.connect(url, autocommit=True) as listener,
            psycopg.connect(url, autocommit=True) as writer,
        ):
            hold_notify_gate(holder, seconds=120)
            listener.execute("LISTEN outbox")
            for i in range(20):
                writer.execute(
                    "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence) "
                    "VALUES (%s, 'html_ml', %s, 'EUR', 0.95)",
                    [product.id, 10 + i],
                )
            wait_until(
                lambda: OutboxEvent.objects.filter(status="done").count() == 20,
                timeout=30,
                message="the drainer to drain 20 events by its poll",
            )
            sent = [n.payload for n in listener.notifies(timeout=0.2)]
        assert sent == [], f"writers notified while a foreign session held the gate: {sent}"
        assert OutboxEvent.objects.exclude(status="done").count() == 0
    finally:
        assert drainer.stop() == 0, drainer.tail()
