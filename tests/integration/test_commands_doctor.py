"""outbox_doctor: each check seen failing for its real cause, and passing without it."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections.abc import Iterator

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from outbox import services
from outbox.services import DoctorLimits
from outbox.triggers import outbox_triggers
from pricing.models import CrawlResult
from tests.factories import make_event
from tests.support import current_database_url, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def checks(limits: DoctorLimits | None = None) -> dict[str, services.Check]:
    return {check.name: check for check in services.doctor(limits).checks}


def doctor_json(*args: str) -> list[dict[str, object]]:
    out = io.StringIO()
    try:
        call_command("outbox_doctor", "--json", *args, stdout=out)
    except CommandError:
        pass
    return json.loads(out.getvalue())


@pytest.fixture
def session() -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(current_database_url(), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def test_a_healthy_outbox_passes_every_check() -> None:
    make_event("t", "done", status="done", processed_at=timezone.now())
    report = services.doctor()
    states = {check.name: check.state for check in report.checks}
    assert report.ok(), report.checks
    assert states["drainers"] == "warn", "no drainer connected, nothing pending: only a warning"
    assert not report.ok(strict=True)
    assert {name for name, state in states.items() if state != "ok"} == {"drainers"}
    assert states["trigger on pricing_crawlresult"] == "ok"
    out = io.StringIO()
    call_command("outbox_doctor", stdout=out)
    for name in ("claim plan", "idle in transaction", "old snapshots", "dead rows", "autovacuum", "retention"):
        assert name in out.getvalue()


def test_claim_plan_uses_the_partial_index_on_a_grown_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO outbox_event (topic, key, status, processed_at) "
            "SELECT 't', g::text, 'done', now() FROM generate_series(1, 20000) g"
        )
        cursor.execute("INSERT INTO outbox_event (topic, key) SELECT 't', g::text FROM generate_series(1, 50) g")
        cursor.execute("ANALYZE outbox_event")
    check = checks(DoctorLimits(small_table_pages=1))["claim plan"]
    assert (check.state, check.summary) == (
        "ok",
        "the claim reads outbox_event_claim_idx: O(batch) however many done rows there are",
    )


def test_claim_plan_is_explained_in_a_drainer_like_session_that_is_then_undone() -> None:
    settings = "SELECT current_setting('application_name'), current_setting('statement_timeout')"
    with connection.cursor() as cursor:
        cursor.execute(settings)
        before = cursor.fetchone()
        services.doctor()
        cursor.execute(settings)
        assert cursor.fetchone() == before, "the drainer's session settings leaked into this session"
    assert before[0] != "outbox-doctor"


@pytest.mark.django_db(transaction=False)
def test_claim_plan_fails_without_its_index() -> None:
    # transaction=False: the DROP INDEX is rolled back with the test's transaction.
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX outbox_event_claim_idx")
    check = checks()["claim plan"]
    assert check.state == "fail" and "outbox_event_claim_idx is missing" in check.summary


def test_idle_in_transaction_session_fails(session: psycopg.Connection) -> None:
    session.execute("BEGIN")
    session.execute("SELECT count(*) FROM outbox_event")
    pid = session.info.backend_pid
    wait_until(
        lambda: checks(DoctorLimits(max_transaction_age=0))["idle in transaction"].state == "fail",
        message="the idle-in-transaction session to be reported",
    )
    check = checks(DoctorLimits(max_transaction_age=0))["idle in transaction"]
    assert any(f"pid {pid} " in detail for detail in check.details), check.details
    assert checks()["idle in transaction"].state == "ok", "younger than the default 5 minutes"
    session.execute("ROLLBACK")
    assert checks(DoctorLimits(max_transaction_age=0))["idle in transaction"].state == "ok"


def test_long_running_transaction_is_an_old_snapshot(session: psycopg.Connection) -> None:
    pid = session.info.backend_pid
    worker = threading.Thread(target=lambda: _sleep_quietly(session), daemon=True)
    worker.start()
    try:
        check = wait_until(
            lambda: (c := checks(DoctorLimits(max_transaction_age=0))["old snapshots"]).state == "fail" and c,
            message="the running transaction to be reported",
        )
        assert any(f"pid {pid} " in d and "pg_sleep" in d for d in check.details), check.details
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_cancel_backend(%s)", [pid])
        worker.join(10)


def _sleep_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.execute("SELECT pg_sleep(60)")
    except psycopg.errors.QueryCanceled:
        pass


@pytest.fixture
def no_autovacuum() -> Iterator[None]:
    """Autovacuum off for outbox_event, so it cannot clear the dead rows under the test."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE outbox_event SET (autovacuum_enabled = false)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE outbox_event RESET (autovacuum_enabled)")


@pytest.mark.usefixtures("no_autovacuum")
def test_dead_rows_are_reported() -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO outbox_event (topic, key) SELECT 't', g::text FROM generate_series(1, 300) g")
        cursor.execute("DELETE FROM outbox_event WHERE key::int > 50")
        # Statistics counters reach pg_stat_user_tables shortly after a transaction ends.
        cursor.execute("SELECT pg_stat_force_next_flush()")
    limits = DoctorLimits(min_dead_rows=100)
    check = wait_until(
        lambda: (c := checks(limits)["dead rows"]).state == "fail" and c,
        message="250 dead row versions over 50 live to be reported",
    )
    assert check.summary.startswith("250 dead / 50 live row versions (83%): more dead than live")
    assert checks(limits)["autovacuum"].state in {"ok", "warn"}
    with connection.cursor() as cursor:
        cursor.execute("VACUUM outbox_event")
    wait_until(lambda: checks(limits)["dead rows"].state == "ok", message="VACUUM to clear the dead rows")


def test_lease_of_a_gone_drainer_fails_when_no_drainer_runs(session: psycopg.Connection) -> None:
    later = timezone.now() + dt.timedelta(minutes=5)
    make_event("t", "k", locked_by="outbox:gone:1:abc", locked_until=later, available_at=later, attempts=1)
    found = checks()
    assert found["orphaned leases"].state == "fail"
    assert found["orphaned leases"].details == ("outbox:gone:1:abc",)
    assert found["drainers"].state == "fail", "an event waits and no drainer is connected"

    # A session named like a drainer: the doctor sees a drainer connected, which
    # will rescue the orphaned lease within RESCUE_INTERVAL.
    session.execute("SET application_name = 'outbox:live:2:def'")
    found = checks()
    assert found["drainers"].state == "ok" and found["drainers"].details[0].startswith("outbox:live:2:def since")
    assert found["orphaned leases"].state == "warn"


def test_disabled_trigger_fails() -> None:
    trigger = next(t for m, t in outbox_triggers() if m is CrawlResult)
    pgid = trigger.get_pgid(CrawlResult)
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE pricing_crawlresult DISABLE TRIGGER "{pgid}"')
    try:
        check = checks()["trigger on pricing_crawlresult"]
        assert check.state == "fail" and "disabled: inserts write no event" in check.summary
        assert f"ENABLE TRIGGER {pgid}" in check.summary
        with pytest.raises(CommandError, match="check\\(s\\) not ok: trigger on pricing_crawlresult") as info:
            call_command("outbox_doctor", stdout=io.StringIO())
        assert info.value.returncode == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE pricing_crawlresult ENABLE TRIGGER "{pgid}"')
    assert checks()["trigger on pricing_crawlresult"].state == "ok"


def test_every_outbox_trigger_is_checked() -> None:
    names = set(checks())
    assert {"trigger on pricing_crawlresult", "trigger on stockapp_stocklevel"} <= names


def test_overdue_retention_warns() -> None:
    make_event("t", "old", status="done", processed_at=timezone.now() - dt.timedelta(days=30))
    check = checks()["retention"]
    assert check.state == "warn" and "expired events are not being purged" in check.summary


def test_json_output_and_strict_exit() -> None:
    rows = doctor_json()
    assert {"name", "state", "summary", "details"} <= set(rows[0])
    assert {row["name"]: row["state"] for row in rows}["drainers"] == "warn"
    call_command("outbox_doctor", stdout=io.StringIO())  # warnings only: exit 0
    with pytest.raises(CommandError, match="1 check\\(s\\) not ok: drainers") as info:
        call_command("outbox_doctor", "--strict", stdout=io.StringIO())
    assert info.value.returncode == 1


def test_pending_events_of_a_topic_no_live_drainer_handles_fail(session: psycopg.Connection) -> None:
    # A drainer of one topic only (as in a rolling deploy, before the new topic's drainers).
    session.execute("SET application_name = 'outbox:old:3:aaa'")
    session.execute(
        "INSERT INTO outbox_drainer (name, topics, host, pid, direct) "
        "VALUES ('outbox:old:3:aaa', ARRAY['t.old'], 'h', 3, true)"
    )
    make_event("t.old", "k1")
    assert checks()["topics without a drainer"].state == "ok"
    make_event("t.new", "k2")
    found = checks()["topics without a drainer"]
    assert found.state == "fail" and "pending events of t.new, which no drainer alive handles" in found.summary
    session.execute("SET application_name = 'psql'")  # its session is gone: no drainer alive handles t.old either
    assert "topics without a drainer" not in checks(), "with no drainer at all, the drainers check says so"
