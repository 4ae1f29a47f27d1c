"""Payloads a drainer cannot decode fail their own event, never the drainer or the batch."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from django.db import connection

from outbox import handlers as handlers_module
from outbox.drainer import Drainer, DrainerConfig
from outbox.drainer import store as store_module
from outbox.handlers import Event, HandlerRegistry
from outbox.models import OutboxEvent
from tests.factories import make_event

pytestmark = pytest.mark.django_db(transaction=True)

TOPIC = "test.payloads"


def insert_payload(key: str, json_sql: str) -> None:
    """An event whose payload is the jsonb the SQL expression ``json_sql`` builds (trusted, a test constant)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO outbox_event (topic, key, payload) VALUES (%s, %s, ({json_sql})::jsonb)",  # noqa: S608
            [TOPIC, key],
        )


@pytest.fixture
def readers(handlers: HandlerRegistry) -> list[str]:
    """A batch handler that reads every payload; returns the keys it handled."""
    seen: list[str] = []

    def read(events: Sequence[Event]) -> None:
        for event in events:
            assert isinstance(event.payload, dict)
        seen.extend(event.key for event in events)

    handlers.register(TOPIC, read, batch=True)
    return seen


def drain_until_settled() -> None:
    """One drain: with no backoff, a retried event is claimable again at once."""
    d = Drainer(DrainerConfig.from_settings(max_attempts=2, backoff_base=0.0, backoff_jitter=0.0))
    try:
        d.drain()
    finally:
        d.close()
    assert not OutboxEvent.objects.filter(status="pending").exists()


def test_undecodable_payloads_fail_alone_with_a_readable_error(readers: list[str]) -> None:
    make_event(TOPIC, "fine-1", payload={"n": 1})
    insert_payload("deep", "repeat('[', 2000) || repeat(']', 2000)")  # a list 2,000 deep
    # 513 deep: over the outbox's own limit, under any interpreter's recursion limit.
    insert_payload("deep-object", "repeat('{\"a\":', 513) || '1' || repeat('}', 513)")
    insert_payload("deep-but-allowed", "repeat('{\"a\":', 511) || '[1]' || repeat('}', 511)")  # 512 levels
    insert_payload("huge-number", "'{\"n\": ' || repeat('9', 5000) || '}'")
    insert_payload("not-an-object", "'[1, 2, 3]'")
    make_event(TOPIC, "fine-2", payload={"n": 2})
    drain_until_settled()
    rows = {
        key: (status, attempts, error)
        for key, status, attempts, error in OutboxEvent.objects.values_list("key", "status", "attempts", "last_error")
    }
    assert rows["fine-1"][0] == rows["fine-2"][0] == rows["deep-but-allowed"][0] == "done"
    assert sorted(readers) == ["deep-but-allowed", "fine-1", "fine-2"], "a good event ran more than once, or not at all"
    expected = {
        "deep": "payload cannot be decoded: nested deeper than 512 levels",
        "deep-object": "payload cannot be decoded: nested deeper than 512 levels",
        "huge-number": "payload cannot be decoded: Exceeds the limit (4300 digits)",
        "not-an-object": "payload is a JSON list, not an object",
    }
    for key, text in expected.items():
        status, attempts, error = rows[key]
        assert (status, attempts) == ("failed", 2), (key, rows[key])
        assert error.startswith("outbox.exceptions.PayloadError: event ") and text in error, (key, error)


def test_a_payload_larger_than_the_limit_is_never_read(readers: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_PAYLOAD_BYTES", 1000)
    monkeypatch.setattr(handlers_module, "MAX_PAYLOAD_BYTES", 1000)
    insert_payload("big", "jsonb_build_object('s', repeat('x', 5000))")
    make_event(TOPIC, "small", payload={"s": "x"})
    drain_until_settled()
    big = OutboxEvent.objects.get(key="big")
    assert big.status == "failed"
    assert "payload of 5009 bytes is larger than the 1000 bytes a drainer reads" in big.last_error
    assert OutboxEvent.objects.get(key="small").status == "done" and readers == ["small"]
