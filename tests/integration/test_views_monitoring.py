"""The monitoring views outbox_stats, outbox_failures and outbox_throughput, and their plans."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.factories import make_event

pytestmark = pytest.mark.django_db(transaction=True)


def fetch(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        names = [col.name for col in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def ago(**kwargs: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**kwargs)


def test_outbox_stats_one_row_per_topic_and_status() -> None:
    make_event("a", "1", attempts=2, locked_by="outbox:h:1:x", locked_until=ago(seconds=-30))
    make_event("a", "2")
    make_event("a", "3", status="failed", attempts=5, processed_at=ago(minutes=2))
    make_event("b", "4", status="done", attempts=1, processed_at=ago(minutes=1))
    with connection.cursor() as cursor:
        # Created an hour ago, claimable for ten minutes (a retry or a backoff made it wait).
        cursor.execute(
            "UPDATE outbox_event SET created_at = now() - interval '1 hour', "
            "available_at = now() - interval '10 minutes' WHERE key = '2'"
        )
        # Leased: claimable again only when its lease ends, so no lag of its own.
        cursor.execute("UPDATE outbox_event SET available_at = locked_until WHERE key = '1'")
    rows = {(r["topic"], r["status"]): r for r in fetch("SELECT * FROM outbox_stats")}
    assert set(rows) == {("a", "pending"), ("a", "failed"), ("b", "done")}
    pending = rows[("a", "pending")]
    assert (pending["events"], pending["leased"], pending["max_attempts_seen"], pending["estimated"]) == (
        2,
        1,
        2,
        False,
    )
    assert 3600 <= pending["oldest_age_seconds"] < 3700
    assert 600 <= pending["lag_seconds"] < 700, "the lag counts from when the event became claimable"
    assert pending["oldest_available_at"] <= ago(minutes=10) + dt.timedelta(seconds=1)
    assert rows[("a", "failed")]["lag_seconds"] is None and rows[("b", "done")]["lag_seconds"] is None
    assert pending["oldest_created_at"] <= ago(hours=1) + dt.timedelta(seconds=1)
    assert (rows[("a", "failed")]["events"], rows[("a", "failed")]["max_attempts_seen"]) == (1, 5)
    assert (rows[("b", "done")]["events"], rows[("b", "done")]["estimated"]) == (1, False)
    assert list(fetch("SELECT * FROM outbox_stats LIMIT 0")) == []
    columns = [
        c["column_name"]
        for c in fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'outbox_stats' ORDER BY ordinal_position"
        )
    ]
    assert columns == [
        "topic",
        "status",
        "events",
        "leased",
        "oldest_created_at",
        "oldest_age_seconds",
        "max_attempts_seen",
        "estimated",
        "oldest_available_at",
        "lag_seconds",
    ]


#: As on a large table: every done count estimated, whatever the size.
ESTIMATE_ALWAYS = "SET LOCAL outbox.stats_exact_max_pages = 0; SET LOCAL outbox.stats_exact_max_rows = 0"


@pytest.fixture
def estimating() -> Iterator[None]:
    """outbox_stats as on a large table: done rows estimated, whatever the size."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(ESTIMATE_ALWAYS)
        yield


def fill_done(topic_counts: dict[str, int]) -> None:
    with connection.cursor() as cursor:
        for topic, count in topic_counts.items():
            cursor.execute(
                "INSERT INTO outbox_event (topic, key, status, attempts, processed_at) "
                "SELECT %s, g::text, 'done', 1, now() FROM generate_series(1, %s) g",
                [topic, count],
            )


def test_outbox_stats_estimates_done_rows_from_statistics() -> None:
    fill_done({"big": 6000, "small": 2000})
    make_event("big", "p1")
    make_event("big", "f1", status="failed")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_event")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(ESTIMATE_ALWAYS)
        rows = {(r["topic"], r["status"]): r for r in fetch("SELECT * FROM outbox_stats")}
    done_big, done_small = rows[("big", "done")], rows[("small", "done")]
    assert done_big["estimated"] and done_small["estimated"]
    assert done_big["oldest_created_at"] is None and done_big["max_attempts_seen"] is None
    # ANALYZE of an 8,000-row table reads all of it: shares and total are exact here.
    assert abs(done_big["events"] - 6000) <= 60 and abs(done_small["events"] - 2000) <= 60
    assert (rows[("big", "pending")]["events"], rows[("big", "pending")]["estimated"]) == (1, False)
    assert (rows[("big", "failed")]["events"], rows[("big", "failed")]["estimated"]) == (1, False)


@pytest.mark.django_db(transaction=False)
@pytest.mark.usefixtures("estimating")
def test_outbox_stats_without_statistics_counts_exactly() -> None:
    """Nothing to estimate from (never analyzed): exact counts, never a row without a count."""
    make_event("t", "d", status="done")
    with connection.cursor() as cursor:
        # As on a table never vacuumed nor analyzed (the test's transaction undoes it).
        cursor.execute("UPDATE pg_class SET reltuples = -1 WHERE oid = 'outbox_event'::regclass")
        cursor.execute("DELETE FROM pg_statistic WHERE starelid = 'outbox_event'::regclass")
    rows = fetch("SELECT topic, status, events, estimated FROM outbox_stats WHERE status = 'done'")
    assert rows == [{"topic": "t", "status": "done", "events": 1, "estimated": False}]


def test_estimated_done_rows_all_have_a_topic_and_add_up() -> None:
    """Rare topics below the statistics' horizon: their share goes to the common ones."""
    fill_done({"big": 6000, "small": 2000, **{f"rare-{i}": 1 for i in range(5)}})
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE outbox_event ALTER COLUMN topic SET STATISTICS 2")  # only 2 common values
        cursor.execute("ANALYZE outbox_event")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(ESTIMATE_ALWAYS)
            rows = fetch("SELECT topic, events, estimated FROM outbox_stats WHERE status = 'done'")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE outbox_event ALTER COLUMN topic SET STATISTICS -1")
    assert all(r["topic"] and r["events"] and r["estimated"] for r in rows), rows
    assert {r["topic"] for r in rows} == {"big", "small"}
    assert abs(sum(r["events"] for r in rows) - 8005) <= 80, rows


@pytest.mark.django_db(transaction=False)
@pytest.mark.usefixtures("estimating")
def test_a_bloated_table_of_few_rows_is_counted_exactly() -> None:
    """Over the page limit but under the row limit (a demo table after a few runs): exact."""
    fill_done({"t": 500})
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_event")
    query = "SELECT topic, estimated FROM outbox_stats WHERE status = 'done'"
    assert fetch(query) == [{"topic": "t", "estimated": True}]  # both limits 0: estimated
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL outbox.stats_exact_max_rows = 200000")  # pages still over their limit
    assert fetch("SELECT topic, events, estimated FROM outbox_stats WHERE status = 'done'") == [
        {"topic": "t", "events": 500, "estimated": False}
    ]


def _reads(cursor: Any) -> tuple[int, int, int]:
    """This transaction's sequential scans, rows they read, and rows fetched by index, of outbox_event."""
    cursor.execute(
        "SELECT seq_scan, seq_tup_read, coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
        "WHERE relid = 'outbox_event'::regclass"
    )
    return cursor.fetchone()


def test_outbox_stats_on_a_large_table_reads_no_done_row() -> None:
    fill_done({"t": 20000})
    make_event("t", "p")
    make_event("t", "f", status="failed")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_event")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(ESTIMATE_ALWAYS)
        before = _reads(cursor)
        cursor.execute("SELECT * FROM outbox_stats")
        rows = cursor.fetchall()
        after = _reads(cursor)
    assert len(rows) == 3
    seq_scans, seq_rows, fetched = (a - b for a, b in zip(after, before, strict=True))
    assert (seq_scans, seq_rows) == (0, 0), "a large table is never scanned"
    assert fetched == 2, "only the pending and the failed row were read, through their partial indexes"


def test_outbox_failures_newest_first() -> None:
    make_event("t", "done", status="done")
    first = make_event("t", "k1", status="failed", attempts=3, last_error="e1", processed_at=ago(minutes=5))
    second = make_event("u", "k2", status="failed", attempts=2, last_error="e2", processed_at=ago(minutes=1))
    rows = fetch("SELECT * FROM outbox_failures")
    assert [(r["id"], r["topic"], r["key"], r["attempts"], r["last_error"]) for r in rows] == [
        (second.pk, "u", "k2", 2, "e2"),
        (first.pk, "t", "k1", 3, "e1"),
    ]
    assert set(rows[0]) == {"id", "topic", "key", "attempts", "last_error", "created_at", "failed_at"}
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN SELECT * FROM outbox_failures LIMIT 20")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "outbox_event_failed_idx" in plan, plan


def test_outbox_throughput_per_minute_over_the_last_hour() -> None:
    for minutes, count in ((3, 2), (30, 1), (90, 5)):
        for i in range(count):
            make_event("t", f"{minutes}-{i}", status="done", processed_at=ago(minutes=minutes))
    make_event("t", "f", status="failed", processed_at=ago(minutes=3))
    rows = fetch("SELECT * FROM outbox_throughput")
    assert len(rows) == 60
    assert [r["minute"] for r in rows] == sorted(r["minute"] for r in rows)
    assert sum(r["done"] for r in rows) == 3, "the event of 90 minutes ago is out of the window"
    assert sum(r["failed"] for r in rows) == 1
    by_minute = {r["minute"]: r for r in rows}
    three = ago(minutes=3).replace(second=0, microsecond=0)
    assert (by_minute[three]["done"], by_minute[three]["failed"]) == (2, 1)
