"""The drainer's claim / handle / ack cycle on a real database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from outbox.drainer import Drainer, DrainerConfig
from outbox.handlers import Event, HandlerRegistry
from outbox.models import OutboxEvent
from pricing.models import CrawlResult
from tests.factories import make_event, make_result

pytestmark = pytest.mark.django_db(transaction=True)


def drainer(**overrides: object) -> Drainer:
    overrides.setdefault("backoff_base", 0.0)
    overrides.setdefault("backoff_jitter", 0.0)
    return Drainer(DrainerConfig.from_settings(**overrides))  # type: ignore[arg-type]


def make_available(*events: OutboxEvent) -> None:
    """Fast-forward: backoffs and leases of these (default: all pending) events are over."""
    pending = OutboxEvent.objects.filter(status="pending")
    if events:
        pending = pending.filter(pk__in=[e.pk for e in events])
    pending.update(available_at=timezone.now())


def test_handler_error_retries_with_backoff_then_fails(handlers: HandlerRegistry) -> None:
    calls: list[int] = []

    def boom(event: Event) -> None:
        calls.append(event.attempts)
        raise ValueError(f"cannot handle {event.key}")

    handlers.register("test.boom", boom)
    event = make_event("test.boom", "k1")
    d = drainer(max_attempts=3, backoff_base=10.0, backoff_cap=25.0)
    before = timezone.now()
    result = d.run_once()
    assert (result.claimed, result.retried, result.failed) == (1, 1, 0)
    event.refresh_from_db()
    assert event.status == "pending" and event.attempts == 1
    assert event.locked_by is None and event.locked_until is None
    assert event.last_error == "builtins.ValueError: cannot handle k1"
    delay = (event.available_at - before).total_seconds()
    assert 10.0 <= delay <= 10.0 * 1.2 + 1, f"first backoff was {delay}s, expected 10-12s"
    assert d.run_once().claimed == 0, "an event in backoff was claimed early"

    make_available(event)
    d.run_once()
    event.refresh_from_db()
    delay = (event.available_at - timezone.now()).total_seconds()
    assert event.attempts == 2 and 15 < delay <= 25 * 1.2 + 1, f"second backoff {delay}s (cap 25)"

    make_available(event)
    result = d.run_once()
    event.refresh_from_db()
    assert (result.failed, event.status, event.attempts) == (1, "failed", 3)
    assert event.processed_at is not None
    assert calls == [1, 2, 3]
    make_available(event)
    assert d.run_once().claimed == 0, "a failed event was claimed again"
    d.close()


def test_one_failing_event_does_not_undo_the_others(handlers: HandlerRegistry) -> None:
    seen: list[list[str]] = []

    def batch(events: Sequence[Event]) -> dict[str, int]:
        seen.append([e.key for e in events])
        with connection.cursor() as cursor:
            for e in events:
                cursor.execute("INSERT INTO test_effects (key) VALUES (%s)", [e.key])
        if any(e.key == "poison" for e in events):
            raise RuntimeError("poison")
        return {"ok": len(events)}

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS test_effects (key text)")
    try:
        handlers.register("test.batch", batch, batch=True)
        keys = [f"e{i}" for i in range(7)] + ["poison"] + [f"f{i}" for i in range(8)]
        for key in keys:
            make_event("test.batch", key)
        d = drainer(batch_size=100)
        result = d.run_once()
        d.close()
        assert (result.claimed, result.done, result.retried) == (16, 15, 1)
        assert result.outcomes["ok"] == 15
        with connection.cursor() as cursor:
            cursor.execute("SELECT key FROM test_effects ORDER BY key")
            effects = [row[0] for row in cursor.fetchall()]
        # Effects of the failed tries were rolled back with their savepoints: once each.
        assert sorted(effects) == sorted(k for k in keys if k != "poison"), effects
        assert len(seen) <= 2 * 4 + 1, f"bisection ran the handler {len(seen)} times for 16 events"
        statuses = dict(OutboxEvent.objects.values_list("key", "status"))
        assert statuses.pop("poison") == "pending" and set(statuses.values()) == {"done"}
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS test_effects")


def test_unknown_topic_fails_with_a_clear_error_and_the_drainer_goes_on() -> None:
    stray = make_event("nobody.handles.this", "x")
    result_row = make_result()
    d = drainer(max_attempts=1)
    result = d.drain()
    d.close()
    stray.refresh_from_db()
    assert stray.status == "failed"
    assert "no handler is registered for topic 'nobody.handles.this'" in stray.last_error
    assert "pricing.crawl_result.created" in stray.last_error
    result_row.refresh_from_db()
    assert result_row.history_record_status == "recorded"
    assert result.failed == 1 and result.done == 1


def test_final_failure_marks_the_crawl_result_failed() -> None:
    result_row = make_result()
    # Break the event's payload: the per-product lock key cannot be read.
    OutboxEvent.objects.update(payload={"garbage": True})
    d = drainer(max_attempts=2)
    d.run_once()
    make_available()
    d.run_once()
    d.close()
    event = OutboxEvent.objects.get()
    assert event.status == "failed" and event.attempts == 2
    assert "event payload has no integer product_id" in event.last_error
    result_row.refresh_from_db()
    assert result_row.history_record_status == "failed"
    assert "no integer product_id" in result_row.history_record_reason


def test_event_for_a_deleted_result_fails_readably() -> None:
    result_row = make_result()
    CrawlResult.objects.filter(pk=result_row.pk).delete()
    d = drainer(max_attempts=1)
    d.drain()
    d.close()
    event = OutboxEvent.objects.get()
    assert event.status == "failed"
    assert f"CrawlResult {result_row.pk} does not exist" in event.last_error


def test_lease_lost_means_nothing_applied(handlers: HandlerRegistry) -> None:
    calls: list[str] = []
    handlers.register("test.lease", lambda e: calls.append(e.key))
    make_event("test.lease", "a")
    d = drainer()
    events = d._claim()
    assert [e.key for e in events] == ["a"]
    # Another drainer reclaims it after our lease ran out.
    OutboxEvent.objects.update(locked_by="someone-else")
    result = d._process(events)
    d.close()
    assert result.lost == 1 and result.done == 0
    assert calls == [], "a drainer that lost its lease still ran the handler"
    assert OutboxEvent.objects.get().status == "pending"


def test_claim_sets_lease_and_counts_the_attempt(handlers: HandlerRegistry) -> None:
    handlers.register("test.claim", lambda e: None)
    make_event("test.claim", "a")
    d = drainer(lease=45)
    before = timezone.now()
    d._claim()
    event = OutboxEvent.objects.get()
    assert event.attempts == 1 and event.locked_by == d.identity
    assert event.locked_until is not None
    assert dt.timedelta(seconds=44) < event.locked_until - before < dt.timedelta(seconds=47)
    assert event.available_at == event.locked_until
    assert len(d.identity) <= 63
    d.close()


def test_claims_are_in_id_order_and_respect_the_batch_size(handlers: HandlerRegistry) -> None:
    handlers.register("test.order", lambda e: None)
    events = [make_event("test.order", str(i)) for i in range(10)]
    d = drainer(batch_size=4)
    assert [e.id for e in d._claim()] == [e.id for e in events[:4]]
    assert [e.id for e in d._claim()] == [e.id for e in events[4:8]]
    d.close()


def test_topic_filter(handlers: HandlerRegistry) -> None:
    handlers.register("test.a", lambda e: None)
    handlers.register("test.b", lambda e: None)
    make_event("test.a", "1")
    make_event("test.b", "2")
    d = Drainer(DrainerConfig.from_settings(topics=["test.b"]))
    d.drain()
    d.close()
    assert dict(OutboxEvent.objects.values_list("topic", "status")) == {"test.a": "pending", "test.b": "done"}


def test_log_line_keeps_the_old_format(outbox_logs: pytest.LogCaptureFixture) -> None:
    caplog = outbox_logs
    make_result()
    make_result(source="other")
    make_event("pricing.crawl_result.created", "not-a-uuid", payload={"product_id": 1})
    d = drainer(max_attempts=1)
    d.run_once()
    d.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Auto-record:")]
    assert lines == ["Auto-record: processed=3 recorded=1 duplicates=0 skipped=1 failed=1 queue_remaining=0"], lines


def test_retry_failed_puts_failed_events_back(handlers: HandlerRegistry) -> None:
    handlers.register("test.flaky", lambda e: None)
    event = make_event("test.flaky", "a", status="failed", attempts=3, last_error="x")
    d = drainer()
    assert d.retry_failed() == 1
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("pending", 0)
    d.drain()
    event.refresh_from_db()
    assert event.status == "done"
    d.close()


def test_purge_removes_only_expired_done_events() -> None:
    old = make_event("t", "old", status="done", processed_at=timezone.now() - dt.timedelta(days=8))
    recent = make_event("t", "recent", status="done", processed_at=timezone.now() - dt.timedelta(days=1))
    failed = make_event("t", "failed", status="failed", processed_at=timezone.now() - dt.timedelta(days=30))
    d = drainer(purge_chunk=1)
    assert d.purge_done() == 1
    d.close()
    assert set(OutboxEvent.objects.values_list("key", flat=True)) == {recent.key, failed.key}
    assert not OutboxEvent.objects.filter(pk=old.pk).exists()


def test_claim_plan_uses_the_partial_index() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO outbox_event (topic, key, status, processed_at) "
            "SELECT 't', g::text, 'done', now() FROM generate_series(1, 20000) g"
        )
        cursor.execute("INSERT INTO outbox_event (topic, key) SELECT 't', g::text FROM generate_series(1, 50) g")
        cursor.execute("ANALYZE outbox_event")
        from outbox.sql import queries

        cursor.execute(
            "EXPLAIN " + queries.event_claim_batch,
            {"batch": 10, "me": "x", "lease": 60, "topics": None},
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "outbox_event_claim_idx" in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--batch-size", "0"], "--batch-size: must be from 1 to 100000, got 0"),
        (["--batch-size", "ten"], "--batch-size: must be a whole number, got 'ten'"),
        (["--interval", "-1"], "--interval: must be from 0.01 to 2147483 seconds .*, got -1"),
        (["--interval", "0"], "--interval: must be from 0.01 to 2147483 seconds .*, got 0"),
        (["--max-attempts", "0"], "--max-attempts: must be from 1 to 1000, got 0"),
        (["--lease", "abc"], "--lease: must be a number of seconds, got 'abc'"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], text: str) -> None:
    with pytest.raises(CommandError, match=text):
        call_command("drain_outbox", "--once", *args)
