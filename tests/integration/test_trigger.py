"""The outbox trigger: one event per committed row, none for a rolled-back one, from any writer."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction

from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult
from tests.factories import make_product, make_result
from tests.support import current_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_committed_insert_writes_one_event_with_the_result_id_and_payload() -> None:
    result = make_result(price=Decimal("12.34"))
    events = list(OutboxEvent.objects.all())
    assert len(events) == 1, f"expected 1 event for 1 committed insert, got {len(events)}"
    event = events[0]
    assert (event.topic, event.key, event.status, event.attempts) == (
        CRAWL_RESULT_CREATED,
        str(result.id),
        "pending",
        0,
    )
    assert event.payload["product_id"] == result.product_id
    assert event.payload["source"] == "html_ml"
    assert Decimal(str(event.payload["price"])) == Decimal("12.34")
    assert event.available_at is not None and event.created_at is not None


def test_rolled_back_insert_writes_no_event() -> None:
    product = make_product()
    with pytest.raises(RuntimeError), transaction.atomic():
        make_result(product)
        assert OutboxEvent.objects.count() == 1  # visible inside the transaction...
        raise RuntimeError("roll back")
    assert CrawlResult.objects.count() == 0
    assert OutboxEvent.objects.count() == 0, "a rolled-back result left an outbox event behind"


def test_bulk_create_of_1000_writes_1000_events() -> None:
    product = make_product()
    results = CrawlResult.objects.bulk_create(
        [
            CrawlResult(product=product, source="html_ml", price=i + 1, currency="EUR", confidence=0.9)
            for i in range(1000)
        ]
    )
    keys = set(OutboxEvent.objects.values_list("key", flat=True))
    assert len(keys) == 1000 and keys == {str(r.id) for r in results}


def test_plain_sql_insert_from_another_program_writes_an_event() -> None:
    product = make_product()
    with psycopg.connect(current_database_url().replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence) "
            "VALUES (%s, 'html_ml', 19.99, 'USD', 0.97)",
            [product.id],
        )
    result = CrawlResult.objects.get()
    assert result.crawled_at is not None and result.history_recorded is False
    assert list(OutboxEvent.objects.values_list("key", flat=True)) == [str(result.id)]


def _notifications(statement: str, params: list[object], guc: str | None = None) -> list[str]:
    url = current_database_url().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as writer:
        listener.execute("LISTEN outbox")
        if guc is not None:
            writer.execute("SELECT set_config('outbox.notify', %s, false)", [guc])
        writer.execute(statement, params)
        return [n.payload for n in listener.notifies(timeout=0.5)]


def test_one_notify_per_statement_not_per_row() -> None:
    product = make_product()
    got = _notifications(
        "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence) "
        "SELECT %s, 'html_ml', g, 'EUR', 0.9 FROM generate_series(1, 500) g",
        [product.id],
    )
    assert got == [CRAWL_RESULT_CREATED], f"500-row insert sent {len(got)} notifications"
    assert OutboxEvent.objects.count() == 500


def test_a_writer_skips_its_notify_while_the_gate_is_held_and_sends_it_once_free() -> None:
    """The notify gate: a writer that finds another transaction holding it sends no NOTIFY."""
    from tests.support import hold_notify_gate

    product = make_product()
    insert = (
        "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence) "
        "VALUES (%s, 'html_ml', 1, 'EUR', 0.9)"
    )
    url = current_database_url().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as holder:
        hold_notify_gate(holder, seconds=60)
        assert _notifications(insert, [product.id]) == [], "a writer notified while the gate was held"
    assert _notifications(insert, [product.id]) == [CRAWL_RESULT_CREATED]
    assert OutboxEvent.objects.count() == 2, "a skipped NOTIFY lost its event"


def test_notify_can_be_switched_off_and_the_event_is_still_written() -> None:
    product = make_product()
    got = _notifications(
        "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence) "
        "VALUES (%s, 'html_ml', 1, 'EUR', 0.9)",
        [product.id],
        guc="off",
    )
    assert got == []
    assert OutboxEvent.objects.count() == 1


def test_bad_row_from_a_plain_sql_writer_is_refused_and_leaves_nothing() -> None:
    product = make_product()
    with pytest.raises(Exception, match="pricing_cr_currency_iso"), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence) "
            "VALUES (%s, 'html_ml', 1, 'eur', 0.9)",
            [product.id],
        )
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True, databases=["default", "other"])  # makemigrations reads every alias
def test_schema_matches_the_models() -> None:
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_trigger_function_has_no_per_statement_ignore_check_and_is_installed_as_compiled() -> None:
    from pgtrigger.core import INSTALLED

    trigger = next(t for t in CrawlResult._meta.triggers if t.name == "outbox_crawl_result")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.prosrc FROM pg_trigger AS t JOIN pg_proc AS p ON p.oid = t.tgfoid "
            "WHERE t.tgrelid = 'pricing_crawlresult'::regclass AND t.tgname = %s",
            [trigger.get_pgid(CrawlResult)],
        )
        (source,) = cursor.fetchone()
    assert "INSERT INTO outbox_event" in source
    # pgtrigger's check reads a setting in an EXCEPTION block: a subtransaction per insert.
    assert "_pgtrigger_should_ignore" not in source
    status, _ = trigger.get_installation_status(CrawlResult)
    assert status == INSTALLED, "the migrated trigger differs from what the code compiles"


def test_write_path_tuning_is_in_the_schema() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('pricing_crawlresult', 'outbox_event')"
        )
        options = {name: set(opts or []) for name, opts in cursor.fetchall()}
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'pricing_crawlresult' AND indexdef LIKE '%%history%%'"
        )
        history_indexes = [row[0] for row in cursor.fetchall()]
    assert "fillfactor=60" in options["pricing_crawlresult"]
    assert {"autovacuum_vacuum_scale_factor=0.0", "autovacuum_vacuum_threshold=10000"} <= options["outbox_event"]
    # Room on each page for the claim's new version: the claim is a HOT update (0008).
    assert "fillfactor=40" in options["outbox_event"]
    # An index on a column the drainer updates would make that update non-HOT.
    assert history_indexes == []


def test_recording_a_batch_updates_its_results_without_index_writes() -> None:
    """HOT updates: the outcome columns are not indexed and the pages have room."""
    from outbox.handlers import Event
    from pricing.auto_record import record_batch

    product = make_product()
    CrawlResult.objects.bulk_create(
        [
            CrawlResult(product=product, source="html_ml", price=Decimal(10 + i), currency="EUR", confidence=0.95)
            for i in range(10)
        ]
    )
    events = [Event(e.id, e.topic, e.key, e.payload, 1, e.created_at) for e in OutboxEvent.objects.order_by("id")]
    with transaction.atomic(), connection.cursor() as cursor:
        outcomes = record_batch(events)
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated('pricing_crawlresult'::regclass), "
            "pg_stat_get_xact_tuples_hot_updated('pricing_crawlresult'::regclass)"
        )
        updated, hot = cursor.fetchone()
    assert outcomes.outcomes["recorded"] == 10 and not outcomes.failed
    assert (updated, hot) == (10, 10), f"{hot} of {updated} updates were HOT"


def test_the_claim_updates_events_without_index_writes() -> None:
    """HOT claims: the claim changes no indexed column and the pages have room (0008)."""
    from outbox.conf import BUCKETS
    from outbox.drainer.store import claim_params
    from outbox.models import OutboxBucket
    from outbox.sql import queries

    me = "test:hot-claim"
    product = make_product()
    CrawlResult.objects.bulk_create(
        [
            CrawlResult(product=product, source="html_ml", price=Decimal(10 + i), currency="EUR", confidence=0.9)
            for i in range(50)
        ]
    )
    OutboxBucket.objects.bulk_create(
        [OutboxBucket(topic=CRAWL_RESULT_CREATED, bucket=b, owner=me) for b in range(BUCKETS)]
    )
    params = claim_params(me, ordered={CRAWL_RESULT_CREATED: "ff" * (BUCKETS // 8)}, unordered=(), batch=100, lease=60)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(queries.event_claim_batch, params)
        claimed = len(cursor.fetchall())
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated('outbox_event'::regclass), "
            "pg_stat_get_xact_tuples_hot_updated('outbox_event'::regclass)"
        )
        updated, hot = cursor.fetchone()
    assert claimed == 50
    assert (updated, hot) == (50, 50), f"{hot} of {updated} claim updates were HOT"
