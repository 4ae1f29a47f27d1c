"""OUTBOX settings whose effect no other test shows (issue 16 point 9):
ERROR_MAX_LENGTH cuts a long error, PURGE_INTERVAL = 0 leaves purging to a cron job."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from outbox.drainer import Drainer, DrainerConfig
from outbox.handlers import Event, HandlerRegistry
from outbox.models import OutboxEvent
from tests.factories import make_event

pytestmark = pytest.mark.django_db(transaction=True)


def test_error_max_length_cuts_last_error_and_says_how_much_was_left_out(handlers: HandlerRegistry) -> None:
    def handle(event: Event) -> None:
        raise ValueError("x" * 5000)

    handlers.register("test.verbose", handle)
    event = make_event("test.verbose", "a")
    d = Drainer(DrainerConfig.from_settings(error_max_length=200, max_attempts=1))
    try:
        d.drain()
    finally:
        d.close()
    event.refresh_from_db()
    assert event.status == "failed"
    assert len(event.last_error) <= 200, len(event.last_error)
    assert event.last_error.startswith("builtins.ValueError: xxx"), event.last_error[:60]
    # The full text is "builtins.ValueError: " (21) + 5000 characters; 180 of them are kept.
    assert event.last_error.endswith(f"... [{21 + 5000 - 180} more]"), event.last_error[-40:]


def test_purge_interval_0_leaves_expired_done_events_in_place() -> None:
    old = make_event("t", "old", status="done", processed_at=timezone.now() - dt.timedelta(days=30))
    d = Drainer(DrainerConfig.from_settings(purge_interval=0))
    try:
        d.drain()  # runs every due duty first: with 0, the purge is never due
    finally:
        d.close()
    assert OutboxEvent.objects.filter(pk=old.pk).exists(), "a drainer with PURGE_INTERVAL = 0 purged"
