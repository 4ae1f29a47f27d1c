"""Fixtures and assertions shared by the fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from outbox.models import OutboxEvent
from tests.poison.apps import TRACE_ENV


@pytest.fixture
def poison_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The table the poison handler writes its effect into (one row per applied event).

    Also a trace file of every handler run (tests.poison.apps), named in the
    environment the drainer subprocesses inherit; yields its path.
    """
    trace = tmp_path / "poison-trace"
    trace.touch()
    monkeypatch.setenv(TRACE_ENV, str(trace))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS poison_effect")
        cursor.execute("CREATE TABLE poison_effect (event_id bigint NOT NULL, pid int NOT NULL)")
    try:
        yield trace
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS poison_effect")


def sleeping_backend(identity: str) -> bool:
    """Is this drainer's session inside a pg_sleep right now (a handler busy mid-batch)?"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s AND state = 'active'",
            [identity, "%pg_sleep%"],
        )
        return cursor.fetchone() is not None


def lease_holder() -> str | None:
    """The identity of a drainer holding a lease now, if any."""
    return (
        OutboxEvent.objects.filter(status="pending", locked_by__isnull=False, locked_until__isnull=False)
        .values_list("locked_by", flat=True)
        .first()
    )


def status_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM outbox_event GROUP BY status")
        return dict(cursor.fetchall())


def all_settled() -> bool:
    """No event is pending any more (each is done or failed)."""
    return not OutboxEvent.objects.filter(status="pending").exists()


def assert_queue_settled(*, allow_failed: bool = False) -> None:
    """Every event ended, none under a lease; the message names what was left behind."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, status, attempts, locked_by, locked_until, left(last_error, 200) FROM outbox_event "
            "WHERE status = 'pending' OR locked_until IS NOT NULL OR (status = 'failed' AND NOT %s) "
            "ORDER BY id LIMIT 10",
            [allow_failed],
        )
        stuck = cursor.fetchall()
        cursor.execute(
            "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE locked_until IS NOT NULL), "
            "count(*) FILTER (WHERE status = 'failed') FROM outbox_event"
        )
        pending, leased, failed = cursor.fetchone()
    assert not stuck, (
        f"events left behind: {pending} still pending, {leased} still under a lease"
        + ("" if allow_failed else f", {failed} failed")
        + f"; first ones (id, status, attempts, locked_by, locked_until, last_error): {stuck}"
    )
