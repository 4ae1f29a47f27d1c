"""The drainer's session timeouts, each run out for real (docs/guarantees.md, tuning).

* STATEMENT_TIMEOUT: a handler statement that runs past it fails that run with the
  server's error, as any handler error: retried, then failed with that error; the
  rest of the batch is done. The session is not treated as lost.
* LOCK_TIMEOUT is never waited out by the claim: an event row held by another session
  (an operator's open transaction) is skipped with the rest of its bucket behind it,
  and handled, charged one attempt, once the row is free
  (tests/integration/test_drainer_foreign_locks.py has the bucket rows too).
* LOCK_TIMEOUT is waited out by the batch lock alone: a row of its own claimed batch
  that another session locked after the claim. That statement fails past it, the
  drainer logs it, reconnects, takes the event back as a suspect and runs it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from outbox.drainer import Drainer, DrainerConfig
from outbox.handlers import Event, HandlerRegistry
from outbox.models import OutboxEvent
from outbox.signals import batch_claimed
from tests.factories import make_event, make_result
from tests.support import current_database_url, receiving

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_session() -> Iterator[None]:
    """Close the drainer's session after the test, so no other test inherits its timeouts."""
    try:
        yield
    finally:
        connection.close()


def drainer(**overrides: object) -> Drainer:
    """A drainer on a session of its own making: it sets the session up when it connects
    (as drain_outbox's does, which starts from a closed connection too)."""
    connection.close()
    return Drainer(DrainerConfig.from_settings(backoff_base=0.0, backoff_jitter=0.0, **overrides))  # type: ignore[arg-type]


def test_a_handler_statement_past_statement_timeout_fails_its_run_with_its_error(handlers: HandlerRegistry) -> None:
    def handle(event: Event) -> str:
        if event.key == "slow":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(10)")
        return "ok"

    handlers.register("test.slow", handle)
    slow, fast = make_event("test.slow", "slow"), make_event("test.slow", "fast")
    d = drainer(statement_timeout=0.5, max_attempts=2)
    try:
        first = d.run_once()
        slow.refresh_from_db()
        assert (slow.status, slow.attempts) == ("pending", 1), (slow.status, slow.attempts, slow.last_error)
        assert "statement timeout" in slow.last_error, slow.last_error
        OutboxEvent.objects.filter(pk=slow.pk).update(available_at=slow.created_at)  # its backoff is over
        second = d.run_once()
    finally:
        d.close()
    assert (first.done, first.retried, first.lost) == (1, 1, 0), first
    assert (second.failed, second.lost) == (1, 0), second
    slow.refresh_from_db()
    fast.refresh_from_db()
    assert fast.status == "done" and fast.attempts == 1, (fast.status, fast.attempts)
    assert (slow.status, slow.attempts) == ("failed", 2), (slow.status, slow.attempts)
    assert "statement timeout" in slow.last_error and "AbandonedEvent" not in slow.last_error, slow.last_error


def test_a_row_held_by_another_session_is_skipped_not_waited_for_then_done(
    outbox_logs: pytest.LogCaptureFixture,
) -> None:
    result = make_result()
    event = OutboxEvent.objects.get(key=str(result.id))
    operator = psycopg.connect(current_database_url())  # an open transaction, as in psql
    operator.execute("SELECT 1 FROM outbox_event WHERE id = %s FOR UPDATE", [event.id])
    try:
        d = drainer(lock_timeout=5.0)
        try:
            held = d.drain()  # returns: nothing it may take is claimable
        finally:
            d.close()
    finally:
        operator.rollback()
        operator.close()
    warnings = [r.getMessage() for r in outbox_logs.records if r.levelname == "WARNING"]
    assert not [w for w in warnings if "lock timeout" in w], f"the claim waited for the held row: {warnings}"
    event.refresh_from_db()
    assert (held.claimed, event.status, event.attempts) == (0, "pending", 0), (held, event.status)
    d = drainer(lock_timeout=5.0)
    try:
        total = d.drain()
    finally:
        d.close()
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("done", 1), (event.status, event.attempts, event.last_error)
    assert total.done == 1, total


class _ReleaseOnLockTimeout(logging.Handler):
    """Ends the foreign session's transaction once the drainer logged its lock timeout:
    the lock is held exactly until the drainer gave up waiting for it."""

    def __init__(self, foreign: psycopg.Connection[Any]) -> None:
        super().__init__(logging.WARNING)
        self.foreign = foreign
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "lock timeout" in message and not self.seen:
            self.seen.append(message)
            self.foreign.rollback()


def test_a_claimed_row_locked_by_another_session_runs_out_lock_timeout_then_runs_once(
    handlers: HandlerRegistry,
) -> None:
    ran: list[int] = []
    handlers.register("test.locked", lambda event: ran.append(event.id) or "ok")
    event = make_event("test.locked", "k")
    foreign = psycopg.connect(current_database_url())  # an open transaction, as in psql
    locked: list[int] = []

    def lock_after_claim(sender: object, events: list[Event], **kwargs: object) -> None:
        if not locked and event.id in [e.id for e in events]:  # the first claim only
            locked.append(event.id)
            foreign.execute("SELECT 1 FROM outbox_event WHERE id = %s FOR UPDATE", [event.id])

    release = _ReleaseOnLockTimeout(foreign)
    logger = logging.getLogger("outbox")
    logger.addHandler(release)
    try:
        with receiving(batch_claimed, lock_after_claim):
            d = drainer(lock_timeout=0.3)
            try:
                total = d.drain()
            finally:
                d.close()
    finally:
        logger.removeHandler(release)
        foreign.close()
    assert release.seen, "the batch lock never ran out LOCK_TIMEOUT: the foreign lock was not in its way"
    assert "reconnecting" in release.seen[0], release.seen
    event.refresh_from_db()
    assert event.status == "done", (event.status, event.attempts, event.last_error)
    assert ran == [event.id], f"the handler ran {len(ran)} time(s) for the event"
    assert total.done == 1, total
