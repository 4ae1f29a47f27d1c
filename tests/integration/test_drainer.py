"""The drainer's claim / handle / ack cycle on a real database, through its public API.

Faults are injected through the drainer's signals (``outbox.signals``), never by
patching its private methods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from outbox.drainer import Drainer, DrainerConfig
from outbox.exceptions import HandlerStartFailed
from outbox.handlers import BatchResult, Event, HandlerRegistry
from outbox.models import OutboxEvent
from outbox.signals import batch_claimed
from pricing.auto_record import mark_failed
from pricing.models import CRAWL_RESULT_CREATED, CrawlResult
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


@pytest.fixture
def effects() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS test_effects (key text)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS test_effects")


def effect_keys() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM test_effects ORDER BY key")
        return [row[0] for row in cursor.fetchall()]


def write_effect(key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO test_effects (key) VALUES (%s)", [key])


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
    assert calls == [1, 2, 3], "a handler that raises runs once per attempt"
    make_available(event)
    assert d.run_once().claimed == 0, "a failed event was claimed again"
    d.close()


def test_one_failing_event_does_not_undo_the_others(handlers: HandlerRegistry, effects: None) -> None:
    seen: list[list[str]] = []

    def batch(events: Sequence[Event]) -> dict[str, int]:
        seen.append([e.key for e in events])
        for e in events:
            write_effect(e.key)
        if any(e.key == "poison" for e in events):
            raise RuntimeError("poison")
        return {"ok": len(events)}

    handlers.register("test.batch", batch, batch=True)
    keys = [f"e{i}" for i in range(7)] + ["poison"] + [f"f{i}" for i in range(8)]
    for key in keys:
        make_event("test.batch", key)
    d = drainer(batch_size=100)
    result = d.run_once()
    d.close()
    assert (result.claimed, result.done, result.retried) == (16, 15, 1)
    assert result.outcomes["ok"] == 15
    # Effects of the failed tries were rolled back with their transaction or savepoints: once each.
    assert effect_keys() == sorted(k for k in keys if k != "poison")
    # The first run, then halves down to the poison alone: never the whole batch again.
    assert len(seen) <= 1 + 2 * 4, f"bisection ran the handler {len(seen)} times for 16 events"
    assert seen.count(keys) == 1, "the failed first run was repeated"
    statuses = dict(OutboxEvent.objects.values_list("key", "status"))
    assert statuses.pop("poison") == "pending" and set(statuses.values()) == {"done"}


def test_a_deferred_constraint_broken_at_commit_fails_its_event_only(handlers: HandlerRegistry, effects: None) -> None:
    """A write whose foreign key is checked only at COMMIT (Django's are DEFERRABLE INITIALLY
    DEFERRED) fails the batch's COMMIT: the drainer bisects with the checks made per run,
    and only the event that broke it fails; the drainer itself goes on."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS test_parent (id int PRIMARY KEY);"
            "CREATE TABLE IF NOT EXISTS test_child (parent int REFERENCES test_parent DEFERRABLE INITIALLY DEFERRED)"
        )
    try:

        def batch(events: Sequence[Event]) -> None:
            for e in events:
                write_effect(e.key)
                with connection.cursor() as cursor:
                    if e.key == "orphan":  # no such parent: legal until COMMIT
                        cursor.execute("INSERT INTO test_child (parent) VALUES (-1)")

        handlers.register("test.deferred", batch, batch=True)
        keys = ["a", "b", "orphan", "c", "d"]
        for key in keys:
            make_event("test.deferred", key)
        d = drainer(batch_size=100, max_attempts=2)
        first = d.run_once()
        make_available()
        second = d.run_once()
        d.close()
        assert (first.claimed, first.done, first.retried) == (5, 4, 1)
        assert (second.claimed, second.failed) == (1, 1)
        assert effect_keys() == ["a", "b", "c", "d"], "each good event's writes once, the orphan's never"
        orphan = OutboxEvent.objects.get(key="orphan")
        assert (orphan.status, orphan.attempts) == ("failed", 2)
        assert orphan.last_error.startswith("django.db.utils.IntegrityError") or "ForeignKeyViolation" in (
            orphan.last_error
        ), orphan.last_error
        assert "test_child" in orphan.last_error
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS test_child, test_parent")


def test_batch_result_fails_some_events_without_undoing_the_others(handlers: HandlerRegistry, effects: None) -> None:
    calls: list[int] = []

    def batch(events: Sequence[Event]) -> BatchResult:
        calls.append(len(events))
        for e in events:
            if e.key != "bad":
                write_effect(e.key)
        return BatchResult(outcomes={"ok": len(events) - 1}, failed={e.id: "bad row" for e in events if e.key == "bad"})

    handlers.register("test.partial", batch, batch=True)
    for key in ("a", "bad", "c"):
        make_event("test.partial", key)
    d = drainer(max_attempts=1)
    result = d.run_once()
    d.close()
    assert calls == [3], "a handler that names its failures is not bisected"
    assert (result.done, result.failed) == (2, 1)
    assert effect_keys() == ["a", "c"]
    bad = OutboxEvent.objects.get(key="bad")
    assert (bad.status, bad.last_error, bad.attempts) == ("failed", "bad row", 1)


def test_an_unregistered_topic_stays_pending_and_the_drainer_goes_on() -> None:
    stray = make_event("nobody.handles.this", "x")
    result_row = make_result()
    d = drainer(max_attempts=1)
    result = d.drain()
    d.close()
    stray.refresh_from_db()
    assert (stray.status, stray.attempts, stray.locked_by, stray.last_error) == ("pending", 0, None, "")
    result_row.refresh_from_db()
    assert result_row.history_record_status == "recorded"
    assert (result.claimed, result.done, result.failed) == (1, 1, 0)


def test_final_failure_marks_the_crawl_result_failed(handlers: HandlerRegistry) -> None:
    def refuse(events: Sequence[Event]) -> None:
        raise RuntimeError("the price service is down")

    handlers.register(CRAWL_RESULT_CREATED, refuse, batch=True, on_failed=mark_failed, replace=True)
    result_row = make_result()
    d = drainer(max_attempts=2)
    d.run_once()
    make_available()
    d.run_once()
    d.close()
    event = OutboxEvent.objects.get()
    assert event.status == "failed" and event.attempts == 2
    assert event.last_error == "builtins.RuntimeError: the price service is down"
    result_row.refresh_from_db()
    assert result_row.history_record_status == "failed"
    assert "the price service is down" in result_row.history_record_reason


def test_event_for_a_deleted_result_fails_readably() -> None:
    result_row = make_result()
    CrawlResult.objects.filter(pk=result_row.pk).delete()
    d = drainer(max_attempts=1)
    d.drain()
    d.close()
    event = OutboxEvent.objects.get()
    assert event.status == "failed"
    assert event.last_error == f"CrawlResult {result_row.pk} does not exist (deleted after its event was written?)"


def test_lease_lost_between_claim_and_processing_applies_nothing(handlers: HandlerRegistry) -> None:
    calls: list[str] = []
    handlers.register("test.lease", lambda e: calls.append(e.key))
    make_event("test.lease", "a")

    def steal(sender: Any, events: Sequence[Event], **kwargs: Any) -> None:
        # Another drainer takes the event over after our lease ran out.
        OutboxEvent.objects.filter(pk__in=[e.id for e in events]).update(locked_by="someone-else")

    d = drainer()
    batch_claimed.connect(steal)
    try:
        result = d.run_once()
    finally:
        batch_claimed.disconnect(steal)
        d.close()
    assert (result.claimed, result.lost, result.done) == (1, 1, 0)
    assert calls == [], "a drainer that lost its lease still ran the handler"
    assert OutboxEvent.objects.get().status == "pending"


def test_claim_sets_a_lease_and_the_ack_counts_the_attempt(handlers: HandlerRegistry) -> None:
    seen: list[tuple[int, int, str | None, dt.timedelta]] = []

    def inspect(event: Event) -> None:
        row = OutboxEvent.objects.get(pk=event.id)
        assert row.locked_until is not None
        with connection.cursor() as cursor:  # the claim's commit may skip its WAL flush; the ack's must not
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
        seen.append((event.attempts, row.attempts, row.locked_by, row.locked_until - timezone.now()))

    handlers.register("test.claim", inspect)
    make_event("test.claim", "a")
    d = drainer(lease=45)
    d.run_once()
    d.close()
    [(run, stored, holder, lease_left)] = seen
    assert (run, stored, holder) == (1, 0, d.identity), "the claim counts nothing: the run is attempt 1"
    assert dt.timedelta(seconds=40) < lease_left < dt.timedelta(seconds=46)
    event = OutboxEvent.objects.get()
    assert (event.status, event.attempts, event.locked_until) == ("done", 1, None)
    assert len(d.identity) <= 63


def test_claims_are_in_id_order_and_respect_the_batch_size(handlers: HandlerRegistry) -> None:
    batches: list[list[str]] = []
    handlers.register("test.order", lambda events: batches.append([e.key for e in events]), batch=True)
    for i in range(10):
        make_event("test.order", str(i))
    d = drainer(batch_size=4)
    d.run_once()
    d.run_once()
    d.close()
    assert batches == [["0", "1", "2", "3"], ["4", "5", "6", "7"]]
    # The full second batch claimed the third with its COMMIT; close() gave it back.
    leftover = OutboxEvent.objects.filter(status="pending").values_list("key", "locked_by", "attempts")
    assert sorted(leftover) == [("8", None, 0), ("9", None, 0)]


def test_suspects_run_alone_first_with_their_attempt_counted_before(handlers: HandlerRegistry) -> None:
    runs: list[tuple[list[str], list[int]]] = []

    def record(events: Sequence[Event]) -> None:
        stored = [OutboxEvent.objects.get(pk=e.id).attempts for e in events]
        runs.append(([e.key for e in events], stored))

    handlers.register("test.suspects", record, batch=True)
    # Two events a dead drainer had claimed (lease over), then two fresh ones.
    for key in ("s1", "s2"):
        make_event("test.suspects", key, locked_by="outbox:gone:1:dead", attempts=1)
    for key in ("f1", "f2"):
        make_event("test.suspects", key)
    make_available()
    d = drainer()
    d.run_once()
    d.close()
    assert runs == [(["s1"], [2]), (["s2"], [2]), (["f1", "f2"], [0, 0])], runs
    assert dict(OutboxEvent.objects.values_list("key", "attempts")) == {"s1": 2, "s2": 2, "f1": 1, "f2": 1}


def test_a_suspect_out_of_attempts_fails_without_running(handlers: HandlerRegistry) -> None:
    calls: list[str] = []
    handlers.register("test.abandoned", lambda e: calls.append(e.key))
    make_event("test.abandoned", "x", locked_by="outbox:gone:1:dead", attempts=3)
    make_available()
    d = drainer(max_attempts=3)
    result = d.run_once()
    d.close()
    event = OutboxEvent.objects.get()
    assert calls == [] and result.failed == 1
    assert (event.status, event.attempts) == ("failed", 3)
    assert event.last_error.startswith("outbox.exceptions.AbandonedEvent: 3 run(s) of it (max_attempts=3) never")


def test_a_stop_during_suspects_gives_the_rest_back(handlers: HandlerRegistry) -> None:
    drainers: list[Drainer] = []

    def stop_after_this(event: Event) -> None:
        drainers[0].request_stop()

    handlers.register("test.stop", stop_after_this)
    d = drainer()
    drainers.append(d)
    for key in ("s1", "s2"):
        make_event("test.stop", key, locked_by="outbox:gone:1:dead")
    make_event("test.stop", "f1")
    make_available()
    result = d.run_once()
    d.close()
    rows = {
        key: (status, holder) for key, status, holder in OutboxEvent.objects.values_list("key", "status", "locked_by")
    }
    assert rows["s1"][0] == "done"
    assert rows["s2"][0] == "pending" and rows["s2"][1] is not None, "a suspect given back stays a suspect"
    assert rows["f1"] == ("pending", None)
    assert (result.done, result.released) == (1, 2)


def test_on_start_runs_once_before_the_first_claim_and_a_failure_claims_nothing(handlers: HandlerRegistry) -> None:
    starts: list[str] = []

    def broken_config() -> None:
        starts.append("start")
        raise ValueError("auto-record config: 'min_confidence' must be from 0 to 1, got 2")

    handlers.register("test.start", lambda e: None, on_start=broken_config)
    make_event("test.start", "a")
    d = drainer()
    with pytest.raises(HandlerStartFailed, match="the handler of test.start cannot start: auto-record config"):
        d.drain()
    d.close()
    assert starts == ["start"]
    assert OutboxEvent.objects.get().locked_by is None, "a drainer whose handler cannot start claimed an event"


def test_handlers_may_use_savepoints_and_on_commit(handlers: HandlerRegistry, effects: None) -> None:
    committed: list[int] = []

    def careful(event: Event) -> None:
        write_effect(f"{event.key}-kept")
        try:
            with transaction.atomic():
                write_effect(f"{event.key}-undone")
                raise LookupError("roll back this part only")
        except LookupError:
            pass
        transaction.on_commit(lambda: committed.append(event.id))
        assert committed == [], "on_commit ran before the commit"

    handlers.register("test.careful", careful)
    event = make_event("test.careful", "a")
    d = drainer()
    d.run_once()
    d.close()
    assert effect_keys() == ["a-kept"]
    assert committed == [event.id]
    assert OutboxEvent.objects.get().status == "done"
    assert not connection.in_atomic_block and connection.get_autocommit()


def test_topic_filter(handlers: HandlerRegistry) -> None:
    handlers.register("test.a", lambda e: None)
    handlers.register("test.b", lambda e: None)
    make_event("test.a", "1")
    make_event("test.b", "2")
    d = Drainer(DrainerConfig.from_settings(topics=["test.b"]))
    d.drain()
    d.close()
    assert dict(OutboxEvent.objects.values_list("topic", "status")) == {"test.a": "pending", "test.b": "done"}


def test_a_topic_filter_without_a_handler_is_refused() -> None:
    with pytest.raises(CommandError, match=r"no handler is registered for topic\(s\) 'nope' \(registered: "):
        call_command("drain_outbox", "--once", "--topic", "nope")


def test_log_line_keeps_the_old_format(outbox_logs: pytest.LogCaptureFixture) -> None:
    caplog = outbox_logs
    make_result()
    make_result(source="other")
    make_event(CRAWL_RESULT_CREATED, "not-a-uuid", payload={"product_id": 1})
    d = drainer(max_attempts=1)
    d.run_once()
    d.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Auto-record:")]
    assert lines == ["Auto-record: processed=3 recorded=1 duplicates=0 skipped=1 failed=1 queue_remaining=0"], lines


def test_retry_failed_every_puts_failed_events_back(handlers: HandlerRegistry) -> None:
    handlers.register("test.flaky", lambda e: None)
    event = make_event("test.flaky", "a", status="failed", attempts=3, last_error="x")
    d = Drainer(DrainerConfig.from_settings(retry_failed_every=3600))
    d.drain()
    d.close()
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("done", 1)


def test_purge_removes_only_expired_done_events() -> None:
    old = make_event("t", "old", status="done", processed_at=timezone.now() - dt.timedelta(days=8))
    recent = make_event("t", "recent", status="done", processed_at=timezone.now() - dt.timedelta(days=1))
    failed = make_event("t", "failed", status="failed", processed_at=timezone.now() - dt.timedelta(days=30))
    d = drainer(purge_chunk=1)
    d.drain()
    d.close()
    assert set(OutboxEvent.objects.values_list("key", flat=True)) == {recent.key, failed.key}
    assert not OutboxEvent.objects.filter(pk=old.pk).exists()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--batch-size", "0"], "--batch-size: must be from 1 to 100000, got 0"),
        (["--batch-size", "ten"], "--batch-size: must be a whole number, got 'ten'"),
        (["--interval", "-1"], "--interval: must be from 0.01 to 2147483 seconds .*, got -1"),
        (["--interval", "0"], "--interval: must be from 0.01 to 2147483 seconds .*, got 0"),
        (["--max-attempts", "0"], "--max-attempts: must be from 1 to 1000, got 0"),
        (["--lease", "abc"], "--lease: must be a number of seconds, got 'abc'"),
        # What int() and float() would take but no one means: other scripts' digits, "_".
        (["--batch-size", "\u0665"], "--batch-size: must be a whole number, got '\u0665'"),
        (["--batch-size", "5_0"], "--batch-size: must be a whole number, got '5_0'"),
        (["--lease", "6_0"], "--lease: must be a number of seconds, got '6_0'"),
        (["--retry-failed-every", "1e-300"], r"--retry-failed-every: must be from 1 to 3153600000 seconds"),
        (["--retry-failed-every", "nan"], "--retry-failed-every: must be a finite number of seconds >= 0, got nan"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], text: str) -> None:
    with pytest.raises(CommandError, match=text):
        call_command("drain_outbox", "--once", *args)
