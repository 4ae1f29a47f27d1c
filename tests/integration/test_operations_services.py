"""outbox.services on a real database: status, retry, mark_failed, delete_done, purge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from outbox import services
from outbox.models import OutboxEvent
from outbox.sql import queries
from pricing.models import CrawlResult
from tests.factories import make_event, make_result
from tests.support import current_database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def other_connection() -> Iterator[psycopg.Connection]:
    """A second session on the test database (a drainer holding row locks, say)."""
    conn = psycopg.connect(current_database_url())
    try:
        yield conn
    finally:
        conn.close()


def ago(**kwargs: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kwargs)


def test_status_counts_per_status_with_leases_and_lag() -> None:
    make_event("a", "1")  # pending, available
    make_event("a", "2", locked_by="outbox:h:1:x", locked_until=ago(seconds=-60), available_at=ago(seconds=-60))
    make_event("a", "3", locked_by="outbox:h:1:x", locked_until=ago(seconds=5), available_at=ago(seconds=5))
    make_event("b", "4", status="failed", attempts=3, last_error="boom", processed_at=ago(minutes=1))
    make_event("b", "5", status="done", attempts=1, processed_at=ago(minutes=1))
    make_event("b", "6", status="done", attempts=2, processed_at=ago(minutes=1))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE outbox_event SET created_at = now() - interval '90 seconds' WHERE key = '1'")

    result = services.status()

    assert result.counts == {"pending": 3, "done": 2, "failed": 1}
    assert result.estimated == frozenset()
    assert result.processing == 1, "only the lease that has not run out counts as processing"
    assert result.queue_size == 2
    assert 89 <= (result.oldest_pending_age_seconds or 0) < 150
    data = result.as_dict()
    assert (data["pending"], data["done"], data["failed"]) == (3, 2, 1)
    assert (data["queue_size"], data["processing_size"], data["failed_size"]) == (2, 1, 1)
    assert data["oldest_pending_age_seconds"] == result.oldest_pending_age_seconds
    by_key = {(row["topic"], row["status"]): row for row in data["topics"]}
    assert by_key[("b", "done")]["max_attempts_seen"] == 2
    assert set(by_key) == {("a", "pending"), ("b", "failed"), ("b", "done")}

    only_b = services.status(topics=["b"])
    assert only_b.counts == {"pending": 0, "done": 2, "failed": 1}
    assert only_b.oldest_pending_age_seconds is None


def test_status_of_an_empty_outbox() -> None:
    result = services.status()
    assert result.counts == {"pending": 0, "done": 0, "failed": 0}
    assert result.oldest_pending_age_seconds is None and result.rows == ()


def test_retry_puts_failed_events_back_and_keeps_the_error() -> None:
    failed = [
        make_event("t", str(i), status="failed", attempts=3, last_error=f"err {i}", processed_at=ago(hours=1))
        for i in range(5)
    ]
    pending = make_event("t", "p")
    assert services.retry(dry_run=True) == 5
    assert OutboxEvent.objects.filter(status="failed").count() == 5, "a dry run changed something"

    assert services.retry(limit=2, chunk=1) == 2
    retried = list(OutboxEvent.objects.filter(status="pending").exclude(pk=pending.pk).order_by("id"))
    assert [e.pk for e in retried] == [failed[0].pk, failed[1].pk], "retry goes oldest first"
    for event in retried:
        assert (event.attempts, event.locked_by, event.processed_at) == (0, None, None)
        assert event.available_at <= timezone.now()
        assert event.last_error.startswith("err "), "the last error is kept until the next attempt"

    assert services.retry(chunk=2) == 3, "chunks of 2 until no failed event is left"
    assert not OutboxEvent.objects.filter(status="failed").exists()


def test_retry_by_topic_and_by_id() -> None:
    a = make_event("a", "1", status="failed", attempts=3)
    b = make_event("b", "2", status="failed", attempts=3)
    c = make_event("b", "3", status="failed", attempts=3)
    done = make_event("b", "4", status="done")
    assert services.retry(topics=["a"]) == 1
    assert services.retry(ids=[c.pk, done.pk]) == 1, "ids that are not failed are left alone"
    assert services.retry(ids=[]) == 0
    statuses = dict(OutboxEvent.objects.values_list("id", "status"))
    assert statuses == {a.pk: "pending", b.pk: "failed", c.pk: "pending", done.pk: "done"}
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        services.retry(limit=0)


def test_retry_skips_an_event_locked_by_another_session(other_connection: psycopg.Connection) -> None:
    locked = make_event("t", "locked", status="failed", attempts=3)
    free = make_event("t", "free", status="failed", attempts=3)
    with other_connection.transaction():
        other_connection.execute("SELECT 1 FROM outbox_event WHERE id = %s FOR UPDATE", [locked.pk])
        assert services.retry() == 1, "retry must not wait on a row another session holds"
    assert dict(OutboxEvent.objects.values_list("id", "status")) == {locked.pk: "failed", free.pk: "pending"}


def test_mark_failed_records_the_reason_and_runs_the_domain_callback() -> None:
    result = make_result()
    event = OutboxEvent.objects.get(key=str(result.pk))
    OutboxEvent.objects.filter(pk=event.pk).update(last_error="builtins.TimeoutError: slow", attempts=1)
    done = make_event("t", "done", status="done")

    assert services.mark_failed([event.pk, done.pk], reason="given up by ops") == 1

    event.refresh_from_db()
    assert event.status == "failed" and event.processed_at is not None
    assert event.last_error == "given up by ops\nprevious error: builtins.TimeoutError: slow"
    assert OutboxEvent.objects.get(pk=done.pk).status == "done"
    result.refresh_from_db()
    assert (result.history_record_status, result.history_record_reason) == ("failed", "given up by ops")


def test_mark_failed_beats_a_drainer_that_claimed_but_has_not_locked_yet() -> None:
    event = make_event("t", "k", locked_by="outbox:h:1:x", locked_until=ago(seconds=-60), available_at=ago(seconds=-60))
    assert services.mark_failed([event.pk]) == 1
    # The drainer's processing transaction re-locks only what it still owns: nothing.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(queries.event_lock_batch, {"ids": [event.pk], "ordered": [], "me": "outbox:h:1:x"})
        assert cursor.fetchall() == []


def test_mark_failed_skips_an_event_a_drainer_is_processing(other_connection: psycopg.Connection) -> None:
    event = make_event("t", "k")
    with other_connection.transaction():
        other_connection.execute("SELECT 1 FROM outbox_event WHERE id = %s FOR UPDATE", [event.pk])
        assert services.mark_failed([event.pk]) == 0
    assert OutboxEvent.objects.get(pk=event.pk).status == "pending"


def test_delete_done_deletes_only_done_events() -> None:
    done = make_event("t", "1", status="done")
    pending = make_event("t", "2")
    failed = make_event("t", "3", status="failed")
    assert services.delete_done([done.pk, pending.pk, failed.pk], chunk=1) == 1
    assert set(OutboxEvent.objects.values_list("id", flat=True)) == {pending.pk, failed.pk}


def test_purge_done_in_chunks_with_progress() -> None:
    old = [make_event("t", f"old{i}", status="done", processed_at=ago(days=8)) for i in range(5)]
    recent = make_event("t", "recent", status="done", processed_at=ago(days=1))
    old_failed = make_event("t", "failed", status="failed", processed_at=ago(days=30))
    pending = make_event("t", "pending", created_at=ago(days=30))
    assert services.purge(dry_run=True) == 5
    seen: list[int] = []
    assert services.purge(chunk=2, progress=seen.append) == 5
    assert seen == [2, 4, 5], "one progress call per chunk of 2"
    remaining = set(OutboxEvent.objects.values_list("id", flat=True))
    assert remaining == {recent.pk, old_failed.pk, pending.pk}
    assert not any(OutboxEvent.objects.filter(pk=e.pk).exists() for e in old)


def test_purge_failed_and_never_pending() -> None:
    old_failed = make_event("t", "1", status="failed", processed_at=ago(days=3))
    new_failed = make_event("t", "2", status="failed", processed_at=ago(hours=1))
    assert services.purge(status="failed", older_than=dt.timedelta(days=1), dry_run=True) == 1
    assert services.purge(status="failed", older_than=86400) == 1
    assert set(OutboxEvent.objects.values_list("id", flat=True)) == {new_failed.pk}
    assert not OutboxEvent.objects.filter(pk=old_failed.pk).exists()
    with pytest.raises(ValueError, match="pending events are never purged"):
        services.purge(status="pending")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="older_than must be >= 0 seconds"):
        services.purge(older_than=-1)


def test_purge_max_chunks_bounds_one_call() -> None:
    for i in range(5):
        make_event("t", str(i), status="done", processed_at=ago(days=8))
    assert services.purge(chunk=2, max_chunks=1) == 2
    assert OutboxEvent.objects.count() == 3


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (42.9, "42s"), (303, "5m 3s"), (7500, "2h 5m"), (3 * 86400 + 4 * 3600, "3d 4h")],
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert services.format_age(seconds) == text


def test_crawl_result_of_mark_failed_keeps_other_results_alone() -> None:
    first, second = make_result(), make_result()
    ids = list(OutboxEvent.objects.filter(key=str(first.pk)).values_list("id", flat=True))
    services.mark_failed(ids)
    assert CrawlResult.objects.get(pk=second.pk).history_record_status is None


def test_package_level_api_for_code_written_against_the_old_functions() -> None:
    import outbox
    from outbox import services

    assert (outbox.status, outbox.retry, outbox.purge) == (services.status, services.retry, services.purge)
    with pytest.raises(AttributeError, match="no attribute 'clear'"):
        outbox.clear  # noqa: B018
