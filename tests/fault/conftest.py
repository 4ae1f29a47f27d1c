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
from tests.support import PrivateServer, Supervisor, current_database_url


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


@pytest.fixture(scope="module")
def private_url(private_server: PrivateServer) -> str:
    """A migrated database on the private server, for this module's tests."""
    return private_server.create_database("faults_private")


@pytest.fixture
def private_db(private_server: PrivateServer, private_url: str) -> str:
    """The private database, emptied, with its server up; its URL."""
    private_server.start()
    with psycopg.connect(private_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE outbox_event, outbox_task_result, outbox_bucket, outbox_drainer, pricing_pricehistory, "
            "pricing_crawlresult, pricing_product"
        )
    return private_url


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

    def stop(self, bound: float | None = None) -> dict[int, float]:
        """Stop watching; pid -> seconds to recovery for every drainer that went down.

        With ``bound``, first keep watching until each drainer that went down has
        recovered or ``bound`` s have passed since its death: a drainer killed just
        before the queue settled has had no time to be taken over yet, and stopping
        at once would report it as never recovered.
        """
        if bound is not None:
            deadline = max((down_at for _, down_at in self.supervisor.downs), default=0.0) + bound + 2 * self.poll
            while time.monotonic() < deadline and self.is_alive():
                if all(pid in self.recovered for pid, _ in self.supervisor.downs):
                    break
                time.sleep(self.poll)
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


# ------------------------------------------------ results with unique prices, by plain SQL


def insert_unique_results(url: str, product_ids: list[int], count: int, *, first: int) -> None:
    """``count`` results over ``product_ids`` in one statement (one crawled_at), by plain SQL.

    Prices ``first + g`` cents: unique over a test whose calls use disjoint ranges, so
    no eligible result is an unchanged price and each must end in exactly one history
    row; every 10th result is from an untrusted source and must not be recorded.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence)
            SELECT (%(products)s::bigint[])[1 + (g %% cardinality(%(products)s::bigint[]))],
                   CASE WHEN g %% 10 = 0 THEN 'manual' ELSE 'html_ml' END,
                   (%(first)s + g) / 100.0, 'EUR', 0.95
            FROM generate_series(1, %(count)s) AS g
            ORDER BY g
            """,
            {"products": product_ids, "count": count, "first": first},
        )


def make_products_sql(url: str, prefix: str, count: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "INSERT INTO pricing_product (sku, name, url) SELECT %(p)s || g, %(p)s || g, '' "
            "FROM generate_series(1, %(n)s) AS g RETURNING id",
            {"p": prefix, "n": count},
        ).fetchall()
    return [row[0] for row in rows]


def assert_recorded_once_in_outbox_order(url: str, *, results: int) -> None:
    """Exactly once and per-product order, for results of insert_unique_results.

    The sequential model (one drainer taking the events one by one in outbox order)
    records every eligible result, once, each product's in outbox order: so no
    result twice, none eligible left out, no untrusted one recorded, and each
    product's history rows written in the order of their events.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        total, eligible, recorded, history, untrusted = conn.execute(
            """
            SELECT (SELECT count(*) FROM pricing_crawlresult),
                   (SELECT count(*) FROM pricing_crawlresult WHERE source = 'html_ml'),
                   (SELECT count(*) FROM pricing_crawlresult WHERE history_record_status = 'recorded'),
                   (SELECT count(*) FROM pricing_pricehistory),
                   (SELECT count(*) FROM pricing_pricehistory AS h
                    JOIN pricing_crawlresult AS cr ON cr.id = h.crawl_result_id WHERE cr.source <> 'html_ml')
            """
        ).fetchone()
        doubled = conn.execute(
            "SELECT crawl_result_id, count(*) FROM pricing_pricehistory GROUP BY 1 HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
        lost = conn.execute(
            "SELECT id, history_record_status, history_record_reason FROM pricing_crawlresult "
            "WHERE source = 'html_ml' AND history_record_status IS DISTINCT FROM 'recorded' ORDER BY id LIMIT 5"
        ).fetchall()
        out_of_order = conn.execute(
            """
            SELECT product_id, count(*) FROM (
                SELECT h.product_id, e.id AS event_id,
                       lag(e.id) OVER (PARTITION BY h.product_id ORDER BY h.id) AS previous_event_id
                FROM pricing_pricehistory AS h
                JOIN outbox_event AS e ON e.key = h.crawl_result_id::text
            ) AS h
            WHERE event_id < previous_event_id
            GROUP BY 1 ORDER BY 2 DESC LIMIT 5
            """
        ).fetchall()
    assert total == results, f"{total} results in the table, the test inserted {results}"
    assert not doubled, f"results recorded more than once (result id, history rows): {doubled}"
    assert not lost, f"eligible results not recorded (id, status, reason): {lost}"
    assert untrusted == 0, f"{untrusted} untrusted results recorded"
    assert history == recorded == eligible == results * 9 // 10, (
        f"{history} history rows, {recorded} results marked recorded, {eligible} eligible of {results}"
    )
    assert not out_of_order, (
        f"products whose history was written out of outbox order (product, rows after a later result): {out_of_order}"
    )


def event_counts(url: str) -> dict[str, int]:
    """Events by status, plus ``leased`` (under a lease) and ``max_attempts`` (most of one event)."""
    with psycopg.connect(url, autocommit=True) as conn:
        counts = dict(conn.execute("SELECT status, count(*) FROM outbox_event GROUP BY 1").fetchall())
        leased, most = conn.execute(
            "SELECT count(*) FILTER (WHERE locked_until IS NOT NULL), coalesce(max(attempts), 0) FROM outbox_event"
        ).fetchone()
    return {"pending": 0, "done": 0, "failed": 0, **counts, "leased": leased, "max_attempts": most}


def bucket_owners(url: str, topic: str) -> dict[str | None, int]:
    """How many of ``topic``'s buckets each owner holds (None: free)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return dict(
            conn.execute("SELECT owner, count(*) FROM outbox_bucket WHERE topic = %s GROUP BY 1", [topic]).fetchall()
        )
