"""outbox_backfill: the trigger's payload, the predicate, crawl order, idempotence, any model."""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from outbox.drainer import Drainer, DrainerConfig
from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult, PriceHistory
from pricing.services import backfill
from tests.factories import make_product, make_result
from tests.stockapp.models import STOCK_LEVEL_COUNTED, StockLevel
from tests.support import current_database_url, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str, model: str = "pricing.CrawlResult") -> str:
    out = io.StringIO()
    call_command("outbox_backfill", model, *args, stdout=out)
    return out.getvalue()


def forget_events() -> None:
    """As after switching from Redis: the results are there, their queue is not."""
    OutboxEvent.objects.all().delete()


def test_backfilled_event_is_exactly_the_one_the_trigger_writes() -> None:
    result = make_result(price=Decimal("12.34"), confidence=0.875, source="html_ml")
    written = OutboxEvent.objects.get()
    forget_events()
    assert run() == (
        f"Enqueued 1 {CRAWL_RESULT_CREATED} event(s) for 1 row(s) (results not processed yet: history_record_status "
        "is NULL); 0 already had a pending event or stopped matching meanwhile.\n"
    )
    event = OutboxEvent.objects.get()
    assert (event.topic, event.key, event.status, event.attempts) == (
        CRAWL_RESULT_CREATED,
        str(result.pk),
        "pending",
        0,
    )
    assert event.payload == written.payload
    assert event.bucket == written.bucket is not None, "the order bucket of its product, as the trigger wrote it"
    assert set(event.payload) == {"product_id", "source", "price", "currency", "confidence", "crawled_at"}


def test_idempotent_never_a_second_pending_event() -> None:
    make_result()  # its trigger event is pending
    other = make_result()
    OutboxEvent.objects.filter(key=str(other.pk)).delete()
    result = backfill()
    assert (result.selected, result.enqueued, result.skipped) == (2, 1, 1)
    again = backfill()
    assert (again.selected, again.enqueued, again.skipped) == (2, 0, 2)
    assert OutboxEvent.objects.filter(status="pending").count() == 2
    assert sorted(OutboxEvent.objects.values_list("key", flat=True)) == sorted(
        str(pk) for pk in CrawlResult.objects.values_list("pk", flat=True)
    )


def test_predicate_status_since_and_source() -> None:
    product = make_product()
    old = timezone.now() - dt.timedelta(days=10)
    unprocessed = make_result(product, crawled_at=old)
    failed = make_result(product, crawled_at=old, history_record_status="failed")
    skipped = make_result(product, source="html_rules", history_record_status="skipped")
    recorded = make_result(product, history_record_status="recorded")
    recent = make_result(product, source="html_rules")
    forget_events()

    def keys() -> set[str]:
        return set(OutboxEvent.objects.values_list("key", flat=True))

    assert run("--dry-run") == (
        f"Would enqueue {CRAWL_RESULT_CREATED} events for up to 2 row(s) (results not processed yet: "
        "history_record_status is NULL).\n"
    )
    assert not OutboxEvent.objects.exists(), "a dry run wrote events"
    run("--filter", "history_record_status__isnull=true", "--filter", "crawled_at__gte=2d")
    assert keys() == {str(recent.pk)}
    run("--filter", "history_record_status__in=failed,skipped", "--filter", "source=html_ml")
    assert keys() == {str(recent.pk), str(failed.pk)}
    run("--filter", "history_record_status=skipped", "--exclude", "source=html_ml")
    assert keys() == {str(recent.pk), str(failed.pk), str(skipped.pk)}
    run()
    assert keys() == {str(recent.pk), str(failed.pk), str(skipped.pk), str(unprocessed.pk)}
    assert str(recorded.pk) not in keys(), "a recorded result is never replayed"


def test_events_are_written_in_crawl_order_across_chunks() -> None:
    product = make_product()
    base = timezone.now() - dt.timedelta(hours=1)
    minutes = [7, 3, 9, 1, 5, 2, 8]
    results = {make_result(product, crawled_at=base + dt.timedelta(minutes=m)).pk: m for m in minutes}
    forget_events()
    assert backfill(chunk=2).enqueued == 7
    order = [
        results[CrawlResult.objects.get(pk=key).pk]
        for key in OutboxEvent.objects.order_by("id").values_list("key", flat=True)
    ]
    assert order == sorted(minutes)


def test_backfill_then_drain_records_history_oldest_first() -> None:
    product = make_product()
    base = timezone.now() - dt.timedelta(hours=1)
    newer = make_result(product, price=Decimal("11.00"), crawled_at=base + dt.timedelta(minutes=5))
    older = make_result(product, price=Decimal("10.00"), crawled_at=base)
    forget_events()
    backfill(chunk=1)
    drainer = Drainer(DrainerConfig.from_settings(batch_size=1))
    try:
        assert drainer.drain().done == 2
    finally:
        drainer.close()
    assert list(PriceHistory.objects.order_by("id").values_list("crawl_result_id", flat=True)) == [older.pk, newer.pk]


def test_progress_callbacks() -> None:
    product = make_product()
    for _ in range(5):
        make_result(product)
    forget_events()
    totals: list[int] = []
    done: list[int] = []
    backfill(chunk=2, on_selected=totals.append, progress=done.append)
    assert (totals, done) == ([5], [2, 4, 5])


def test_backfill_notifies_the_drainers() -> None:
    make_result()
    forget_events()
    with psycopg.connect(current_database_url(), autocommit=True) as listener:
        listener.execute("LISTEN outbox")
        backfill()
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notes] == [("outbox", CRAWL_RESULT_CREATED)]


@pytest.fixture
def other() -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(current_database_url())
    try:
        yield conn
    finally:
        conn.close()


def test_concurrent_backfills_take_turns_and_never_duplicate(other: psycopg.Connection) -> None:
    """The other session is a second backfill caught between its lock and its commit."""
    result = make_result()
    forget_events()
    other.execute("SELECT pg_advisory_xact_lock(hashtext('outbox.backfill:' || %s))", [CRAWL_RESULT_CREATED])
    other.execute(
        "INSERT INTO outbox_event (topic, key) VALUES (%s, %s)",
        [CRAWL_RESULT_CREATED, str(result.pk)],
    )
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            outcome["result"] = backfill()
        finally:
            connection.close()

    thread = threading.Thread(target=second)
    thread.start()

    def waiting() -> int:
        with connection.cursor() as cursor:  # autocommit: a fresh pg_stat_activity each time
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' AND datname = current_database()"
            )
            return cursor.fetchone()[0]

    wait_until(waiting, message="the second backfill to wait for the first one's lock")
    other.commit()  # the first one's event is committed, its lock released
    thread.join(30)
    assert outcome["result"].enqueued == 0  # type: ignore[attr-defined]
    assert OutboxEvent.objects.filter(key=str(result.pk)).count() == 1


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--filter", "crawled_at__gte=last week"], "--filter crawled_at__gte: must be a date or time such as"),
        (["--filter", "source"], "--filter: must be LOOKUP=VALUE"),
        (["--filter", "colour=red"], "Cannot resolve keyword 'colour' into field"),
        (["--filter", "history_record_status__isnull=maybe"], "must be true or false, got 'maybe'"),
        (["--chunk-size", "0"], "--chunk-size: must be from 1 to 100000, got 0"),
        (["--id", ""], "--id: must not be empty"),
        (["--all", "--filter", "source=x"], "--all chooses every row"),
        (["--ids-from", "/nonexistent/ids.txt"], "--ids-from /nonexistent/ids.txt: No such file or directory"),
        (["--topic", "stock.level.counted"], "has no outbox trigger for topic 'stock.level.counted'"),
    ],
)
def test_bad_arguments(args: list[str], text: str) -> None:
    with pytest.raises(CommandError, match=text):
        run(*args)
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        # the server refuses it when the rows are chosen: one line, not a DataError traceback
        (["--filter", "source__regex=("], "the database refused it: invalid regular expression"),
        # Python cannot build the year's bounds: an OverflowError before
        (["--filter", "crawled_at__year=99999999999"], "a --filter/--exclude value is out of range"),
        # CrawlResult's key is a UUID: a ValidationError traceback before
        (["--id", "abc"], "--id/--ids-from: not a key of pricing.CrawlResult: “abc” is not a valid UUID"),
        (["--id", str(2**64)], "not a valid UUID"),
    ],
)
def test_values_refused_past_the_parser_are_one_line(args: list[str], text: str) -> None:
    make_result(make_product())
    forget_events()
    with pytest.raises(CommandError, match=text) as excinfo:
        run(*args)
    assert "\n" not in str(excinfo.value)
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"\xff\xfe\n", r"not UTF-8 text \(byte 0xff at offset 0\)"),
        (b"1\n\x00\x00\x00", r"not a text file of keys \(it holds NUL bytes\)"),
    ],
)
def test_an_ids_file_that_is_not_text_is_one_line(tmp_path: Path, content: bytes, text: str) -> None:
    ids = tmp_path / "ids.bin"
    ids.write_bytes(content)
    with pytest.raises(CommandError, match=text):
        run("--ids-from", str(ids))


def test_ids_from_dev_zero_is_refused_not_read_for_ever() -> None:
    with pytest.raises(CommandError, match="--ids-from /dev/zero: not a text file of keys"):
        run("--ids-from", "/dev/zero")


def test_bad_models() -> None:
    with pytest.raises(CommandError, match="pricing.Product has no outbox trigger"):
        run("--all", model="pricing.Product")
    with pytest.raises(CommandError, match="models with an outbox trigger: pricing.CrawlResult, stockapp.StockLevel"):
        run("--all", model="pricing.Nothing")


def test_ids_from_a_file_the_cut_over_from_a_queue_of_ids(tmp_path: Path) -> None:
    """The ids left in the old queue, dumped to a file, become events; the rest do not."""
    product = make_product()
    queued = [make_result(product, history_record_status="failed") for _ in range(3)]
    other = make_result(product)
    forget_events()
    ids = tmp_path / "ids.txt"
    ids.write_text("# LRANGE auto_record_queue 0 -1\n" + "\n".join(str(r.pk) for r in queued) + "\n\n")
    out = run("--ids-from", str(ids))
    assert "Enqueued 3" in out and "3 key(s) given" in out, out
    assert set(OutboxEvent.objects.values_list("key", flat=True)) == {str(r.pk) for r in queued}
    assert str(other.pk) not in set(OutboxEvent.objects.values_list("key", flat=True))


def test_any_model_with_an_outbox_trigger_in_primary_key_order() -> None:
    """Nothing pricing: the stock app's model, no registered default, its own payload."""
    levels = [StockLevel.objects.create(sku=f"SKU-{i}", warehouse="north", quantity=i) for i in range(5)]
    written = {e.key: e.payload for e in OutboxEvent.objects.filter(topic=STOCK_LEVEL_COUNTED)}
    OutboxEvent.objects.filter(topic=STOCK_LEVEL_COUNTED).delete()
    with pytest.raises(CommandError, match="choose the rows of stockapp.StockLevel"):
        run(model="stockapp.StockLevel")
    out = run("--all", "--chunk-size", "2", model="stockapp.StockLevel")
    assert out.startswith(f"Enqueued 5 {STOCK_LEVEL_COUNTED} event(s) for 5 row(s) (all rows)"), out
    events = list(OutboxEvent.objects.filter(topic=STOCK_LEVEL_COUNTED).order_by("id"))
    assert [e.key for e in events] == [str(level.pk) for level in levels]
    assert {e.key: e.payload for e in events} == written
    assert "Enqueued 0" in run("--all", model="stockapp.StockLevel")  # idempotent
