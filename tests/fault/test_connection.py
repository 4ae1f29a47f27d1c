"""Connection faults: a terminated backend, a restarted server, no server at all.

What it proves (DESIGN invariant 2 under database faults, and issue 4 point 3):
a drainer whose session is killed mid-batch, or whose server restarts under it,
logs the error, reconnects with backoff, hands back what it held, and carries on;
nothing is lost or applied twice, and its LISTEN connection comes back too (new
events are picked up by NOTIFY, well before the poll interval). A drainer that
cannot reach the database at start-up says so and keeps retrying until it can;
``--once`` gives up after ``--give-up-after`` seconds with a clear error, exit 1.

The server restart runs on a private embedded PostgreSQL (its own data directory,
started for this module): the test must not take down a server that other test
runs share (the system PostgreSQL 15, the project's .pgdata). It therefore runs the
same way whether the suite runs on DATABASE_URL or on the embedded server.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import psycopg
import pytest
from django.db import connection

from outbox.models import OutboxEvent
from pricing.models import CrawlResult
from tests.factories import make_result
from tests.fault.conftest import all_settled, assert_queue_settled, lease_holder, sleeping_backend
from tests.poison.apps import POISON_TOPIC
from tests.support import ROOT, DrainerProcess, PrivateServer, drainer_env, wait_until

pytestmark = [pytest.mark.process, pytest.mark.fault]

#: The poll fallback of the drainers here: far longer than any wait in these tests,
#: so a prompt pick-up of a new event proves the LISTEN connection works.
LONG_INTERVAL = "60"
#: A TCP port nothing listens on (connection refused at once).
DEAD_URL = "postgres://postgres@127.0.0.1:1/faults_nowhere"


def effects() -> Counter[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM poison_effect")
        return Counter(row[0] for row in cursor.fetchall())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("poison_effect")
def test_terminated_backend_mid_batch_reconnects_and_loses_nothing() -> None:
    events = OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                topic=POISON_TOPIC,
                key=f"t{i}",
                payload={"action": "sleep", "seconds": 20} if i == 5 else {"action": "ok"},
            )
            for i in range(40)
        ]
    )
    ids = [e.id for e in events]
    d = DrainerProcess(["--interval", LONG_INTERVAL], env=drainer_env("tests.settings_poison"))
    try:
        identity = wait_until(lease_holder, timeout=60, message="a claim")
        wait_until(lambda: sleeping_backend(identity), timeout=30, message="the drainer busy mid-batch")
        # Kill every session of the drainer: its working one and its LISTEN one.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [identity]
            )
        wait_until(all_settled, timeout=60, message="the drainer reconnected and finished the batch")
        output = d.output()
        assert d.process.poll() is None, f"the drainer exited after losing its connection:\n{output[-3000:]}"
        assert "database error, reconnecting in" in output, output[-3000:]
        assert "reconnected after 1 failure(s); released 40 event(s)" in output, output[-3000:]
        # Its LISTEN connection is back: a new result is picked up at once, not after the poll interval.
        wait_until(lambda: listening(identity), timeout=30, message="the drainer listening again")
        result = make_result()
        wait_until(
            lambda: CrawlResult.objects.filter(pk=result.pk, history_record_status="recorded").exists(),
            timeout=15,
            message="a new result recorded through NOTIFY after the reconnect",
        )
        assert d.stop(30) == 0, d.output()[-3000:]
    finally:
        output = d.output()
        d.close()
    applied = effects()
    assert not {i: n for i, n in applied.items() if n > 1}, f"applied twice: {applied.most_common(5)}"
    assert set(applied) == set(ids), f"never applied: {sorted(set(ids) - set(applied))}"
    assert_queue_settled()
    assert "Traceback" not in output, output


def listening(identity: str) -> bool:
    """Has this drainer a session whose last statement was its LISTEN?"""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s",
            [identity, "LISTEN%"],
        )
        return cursor.fetchone() is not None


# ---------------------------------------------------------------- private server (fixtures: conftest)


def private_env(url: str) -> dict[str, str]:
    env = drainer_env()
    env["DATABASE_URL"] = url
    return env


def insert_results(url: str, count: int, products: int = 200) -> None:
    """``count`` eligible results (distinct prices) over ``products`` products, by plain SQL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pricing_product (sku, name, url) SELECT 'R' || g, 'R' || g, '' "
            "FROM generate_series(1, %s) AS g ON CONFLICT (sku) DO NOTHING",
            [products],
        )
        conn.execute(
            """
            INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence)
            SELECT p.ids[1 + g %% cardinality(p.ids)], 'html_ml', 1 + g / 100.0, 'EUR', 0.95
            FROM generate_series(1, %s) AS g,
                 (SELECT array_agg(id ORDER BY id) AS ids FROM pricing_product) AS p
            """,
            [count],
        )


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            """
            SELECT (SELECT count(*) FROM pricing_crawlresult),
                   (SELECT count(*) FROM pricing_pricehistory),
                   (SELECT count(DISTINCT crawl_result_id) FROM pricing_pricehistory),
                   (SELECT count(*) FROM outbox_event WHERE status = 'done'),
                   (SELECT count(*) FROM outbox_event WHERE status <> 'done'),
                   (SELECT count(*) FROM outbox_event WHERE locked_until IS NOT NULL)
            """
        ).fetchone()
    assert row is not None
    return dict(zip(["results", "history", "recorded", "done", "not_done", "leased"], row, strict=True))


def test_server_restart_mid_drain_loses_nothing(private_server: PrivateServer, private_db: str) -> None:
    drainers = [
        DrainerProcess(["--batch-size", "50", "--interval", LONG_INTERVAL], env=private_env(private_db))
        for _ in range(2)
    ]
    try:
        wait_until(lambda: _listening(private_db) >= 2, timeout=60, message="both drainers listening")
        insert_results(private_db, 3000)
        wait_until(lambda: counts(private_db)["done"] >= 200, timeout=60, message="the drain under way")
        before = counts(private_db)
        private_server.restart()  # fast shutdown: every session terminated, transactions rolled back
        wait_until(lambda: counts(private_db)["not_done"] == 0, timeout=90, message="drained after the restart")
        assert before["not_done"] > 0, f"the drain was over before the restart: {before}"
        for d in drainers:
            assert d.process.poll() is None, f"a drainer exited after the restart:\n{d.output()[-3000:]}"
            assert "database error, reconnecting in" in d.output(), d.output()[-3000:]
            assert "reconnected after" in d.output(), d.output()[-3000:]
        # NOTIFY wakes them again: their LISTEN connections were made again too.
        wait_until(lambda: _listening(private_db) >= 2, timeout=30, message="both drainers listening again")
        insert_results(private_db, 10)
        wait_until(
            lambda: counts(private_db)["not_done"] == 0 and counts(private_db)["results"] == 3010,
            timeout=20,
            message="new results drained through NOTIFY after the restart",
        )
        codes = [d.stop(30) for d in drainers]
        assert codes == [0, 0], "\n".join(d.output()[-2000:] for d in drainers)
    finally:
        outputs = [d.output() for d in drainers]
        for d in drainers:
            d.close()
    after = counts(private_db)
    assert after["history"] == after["recorded"], f"results recorded twice: {after}"
    assert after["history"] == after["results"] == 3010, f"results not recorded (lost): {after}"
    assert after["done"] == 3010 and after["leased"] == 0, f"events left behind: {after}"
    assert not any("Traceback" in output for output in outputs), outputs


def _listening(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'outbox:%%' AND query LIKE 'LISTEN%%'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_drainer_started_before_its_database_waits_for_it(private_server: PrivateServer, private_db: str) -> None:
    private_server.stop()
    d = DrainerProcess(["--interval", LONG_INTERVAL], env=private_env(private_db))
    try:
        wait_until(
            lambda: d.output().count("cannot connect to the database") >= 3,
            timeout=30,
            message="three logged retries",
        )
        assert d.process.poll() is None, f"the drainer gave up:\n{d.output()}"
        private_server.start()
        wait_until(lambda: "connected to the database" in d.output(), timeout=60, message="connected once it could")
        wait_until(lambda: _listening(private_db) >= 1, timeout=30, message="the late drainer listening")
        insert_results(private_db, 20)
        wait_until(lambda: counts(private_db)["history"] == 20, timeout=20, message="the late drainer at work")
        assert d.stop(30) == 0, d.output()[-3000:]
    finally:
        private_server.start()  # never leave it stopped
        output = d.output()
        d.close()
    assert "Traceback" not in output, output
    delays = [float(line.split("retrying in ")[1].split("s")[0]) for line in output.splitlines() if "retry" in line]
    assert delays[:3] == sorted(delays[:3]) and delays[2] > delays[0], f"no backoff between retries: {delays}"


def test_drainer_without_a_database_retries_and_stops_cleanly() -> None:
    d = DrainerProcess([], env=drainer_env(DATABASE_URL=DEAD_URL))
    try:
        wait_until(lambda: d.output().count("cannot connect to the database") >= 2, timeout=30, message="retries")
        assert "127.0.0.1:1/faults_nowhere" in d.output(), d.output()
        assert d.stop(10) == 0, d.output()
    finally:
        output = d.output()
        d.close()
    assert "Traceback" not in output, output


def test_once_without_a_database_gives_up_with_a_clear_error() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "drain_outbox", "--once", "--give-up-after", "2"],
        cwd=ROOT,
        env=drainer_env(DATABASE_URL=DEAD_URL),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "CommandError: cannot reach the database 127.0.0.1:1/faults_nowhere: gave up after 2s" in done.stderr, (
        done.stderr
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert elapsed < 20, f"--give-up-after 2 took {elapsed:.1f}s"
