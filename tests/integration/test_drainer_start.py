"""What a drainer does before its first claim: each handler's on_start (the auto-record
config is read there, once: a file broken after that changes nothing), and drain_outbox's
own checks, which leave no connection behind for the drainer to claim with unnamed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from outbox.drainer import Drainer, DrainerConfig
from outbox.handlers import Event, HandlerRegistry, registry
from outbox.models import OutboxEvent
from pricing import auto_record
from pricing.models import CRAWL_RESULT_CREATED
from tests.factories import make_event, make_result

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_file_broken_after_start_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "auto_record.json"
    path.write_text(json.dumps({"min_confidence": 0.5}))
    monkeypatch.setenv("AUTO_RECORD_CONFIG", str(path))
    monkeypatch.setattr(auto_record, "_config", None)
    registry.start([CRAWL_RESULT_CREATED])  # what a drainer does before its first claim
    path.write_text("{broken")
    result = make_result(confidence=0.6)
    drainer = Drainer(DrainerConfig.from_settings())
    try:
        drainer.drain()
    finally:
        drainer.close()
    result.refresh_from_db()
    assert (result.history_record_status, result.history_record_reason) == ("recorded", "eligible"), (
        "the handler read the file again instead of the config loaded at start"
    )


def test_drain_once_claims_with_its_named_session(handlers: HandlerRegistry) -> None:
    seen: list[str] = []

    def handle(event: Event) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('application_name'), current_setting('lock_timeout')")
            seen.extend(cursor.fetchone())
        return "seen"

    handlers.register("test.session", handle)
    make_event("test.session", "k")
    call_command("drain_outbox", "--once", "--topic", "test.session")
    assert OutboxEvent.objects.get().status == "done"
    name, lock_timeout = seen
    assert name.startswith("outbox:") and lock_timeout == "10s", (
        f"the drainer claimed on a session it did not set up ({name!r}, lock_timeout {lock_timeout})"
    )
