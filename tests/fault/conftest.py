"""Fixtures and assertions shared by the fault tests."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from outbox.models import OutboxEvent
from tests.poison.apps import TRACE_ENV
from tests.support import Supervisor, current_database_url


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


@pytest.fixture
def held_lock() -> Iterator[tuple[psycopg.Connection, int]]:
    """An advisory lock held by the test's own session: (that session, the lock's key)."""
    key = random.randrange(1, 2**31)  # noqa: S311
    conn = psycopg.connect(current_database_url(), autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield conn, key
    finally:
        conn.close()


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


class RecoveryWatch(threading.Thread):
    """Measures, for each drainer a Supervisor saw go down, how long until what it held
    is claimable again: it owns no order bucket any more (another drainer took them, and
    with them its claimed events as suspects) and none of the unordered events it held
    is under a lease (the rescue ended them). Polls every ``poll`` s on its own session.
    """

    def __init__(self, supervisor: Supervisor, database_url: str, poll: float = 0.05) -> None:
        super().__init__(name="recovery-watch", daemon=True)
        self.supervisor = supervisor
        self.database_url = database_url
        self.poll = poll
        self.recovered: dict[int, float] = {}  # pid -> seconds from its death to claimable
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                while not self._stop_event.wait(self.poll):
                    self._look(conn)
                self._look(conn)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def _look(self, conn: psycopg.Connection) -> None:
        for pid, down_at in list(self.supervisor.downs):
            if pid in self.recovered:
                continue
            holder = f"outbox:%:{pid}:%"
            row = conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM outbox_bucket WHERE owner LIKE %(h)s) "
                "AND NOT EXISTS (SELECT 1 FROM outbox_event WHERE status = 'pending' AND bucket IS NULL "
                "AND locked_by LIKE %(h)s AND locked_until > now())",
                {"h": holder},
            ).fetchone()
            if row and row[0]:
                self.recovered[pid] = time.monotonic() - down_at

    def stop(self) -> dict[int, float]:
        """Stop watching; pid -> seconds to recovery for every drainer that went down."""
        self._stop_event.set()
        self.join(30)
        if self.error is not None:
            raise AssertionError(f"the recovery watch failed: {self.error!r}") from self.error
        return self.recovered


def assert_prompt_recovery(supervisor: Supervisor, recovered: dict[int, float], bound: float) -> None:
    """Every drainer that went down had its events claimable again within ``bound`` s."""
    downs = [pid for pid, _ in supervisor.downs]
    missing = [pid for pid in downs if pid not in recovered]
    assert not missing, f"drainers {missing} went down and what they held never became claimable again"
    slow = {pid: round(recovered[pid], 2) for pid in downs if recovered[pid] > bound}
    assert not slow, f"events of dead drainers claimable again only after (pid: s) {slow}, bound {bound} s"
