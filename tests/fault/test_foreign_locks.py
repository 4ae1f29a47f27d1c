"""Foreign sessions holding locks the drainers might need (issue 10: a hostile or careless role).

* Advisory locks on every key an attacker could guess (each product id, its hashes,
  the bucket numbers, the namespace of the old per-key lock): the drainers take no
  advisory lock, so nothing waits on them; with a lock_timeout far longer than the
  drain, everything still drains within a bound set by the work, and no drainer
  backend is ever seen waiting on a lock.
* A row lock (``FOR UPDATE`` / ``FOR SHARE``) on one outbox_event row or on one
  outbox_bucket row, taken before the drainers start and held past their
  lock_timeout, while a second drainer joins (so the locked bucket must change
  hands): every other bucket drains; the locked event (and, for ``FOR UPDATE``,
  the events of its bucket behind it) waits without being stepped over; once the
  lock is released everything completes, exactly once, in per-product order, no
  event failed, no drainer died, and the buckets end shared fairly.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from outbox.conf import BUCKETS
from outbox.triggers import bucket_sql
from pricing.models import CRAWL_RESULT_CREATED
from tests.fault.conftest import (
    assert_queue_settled,
    assert_recorded_once_in_outbox_order,
    bucket_owners,
    event_counts,
    insert_unique_results,
    make_products_sql,
)
from tests.support import DrainerProcess, current_database_url, drainer_env, identity_pid, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.fault]

PRODUCTS = 200
RESULTS = 3_000
ARGS = ["--batch-size", "50", "--interval", "0.2"]
#: The advisory-lock namespace of the old per-key lock: crc32 of its lock group, a public string.
OLD_NAMESPACE = zlib.crc32(b"pricing.product") & 0x7FFFFFFF


def locks_env(lock_timeout: float) -> dict[str, str]:
    return drainer_env("tests.settings_locks", OUTBOX_TEST_LOCK_TIMEOUT=str(lock_timeout))


class LockWatch(threading.Thread):
    """Samples the drainers' backends every 20 ms: any one seen waiting on a lock of
    session ``foreign`` is kept (drainers waiting on each other do not count)."""

    def __init__(self, url: str, foreign: int) -> None:
        super().__init__(name="lock-watch", daemon=True)
        self.url = url
        self.foreign = foreign
        self.waits: list[tuple[str, str, str]] = []
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop_event.wait(0.02):
                self.samples += 1
                self.waits += conn.execute(
                    "SELECT application_name, wait_event, left(query, 80) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'outbox:%%' "
                    "AND %s = ANY(pg_blocking_pids(pid))",
                    [self.foreign],
                ).fetchall()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


@contextmanager
def drainers(count: int, env: dict[str, str]) -> Iterator[list[DrainerProcess]]:
    started = [DrainerProcess(ARGS, env=env) for _ in range(count)]
    try:
        yield started
    except BaseException:
        for d in started:
            print(f"--- drainer {d.pid} exit={d.exit_code}\n{d.tail(40)}")
        raise
    finally:
        outputs = [d.output() for d in started]
        for d in started:
            d.close()
        assert not any("Traceback" in out for out in outputs), outputs


def test_foreign_advisory_locks_on_every_guessable_key_slow_nothing() -> None:
    url = current_database_url()
    products = make_products_sql(url, "FA", PRODUCTS)
    with psycopg.connect(url, autocommit=True) as foreign:
        (pid,) = foreign.execute("SELECT pg_backend_pid()").fetchone()
        # Session-level advisory locks on: each product id alone and under the old
        # namespace (crc32 of 'pricing.product'), its text hashes, and every bucket number.
        foreign.execute(
            """
            SELECT count(pg_advisory_lock(k))
            FROM (SELECT DISTINCT k FROM (
                SELECT unnest(ARRAY[p, hashtext(p::text)::bigint, hashtextextended(p::text, 0),
                                    hashtextextended(p::text, 0) & %(mask)s]) AS k
                FROM unnest(%(products)s::bigint[]) AS p
                UNION ALL SELECT generate_series(0, %(buckets)s - 1)
            ) AS keys(k)) AS d
            """,
            {"products": products, "mask": BUCKETS - 1, "buckets": BUCKETS},
        )
        foreign.execute(
            "SELECT count(pg_advisory_lock(%(ns)s, (p %% 2147483647)::int)) FROM unnest(%(products)s::bigint[]) AS p",
            {"ns": OLD_NAMESPACE, "products": products},
        )
        held = foreign.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s AND granted", [pid]
        ).fetchone()[0]
        assert held >= 4 * PRODUCTS, f"the foreign session holds only {held} advisory locks"
        watch = LockWatch(url, pid)
        watch.start()
        try:
            # A lock_timeout longer than the whole bound: a drainer that waited on any
            # of these locks would stall past it.
            with drainers(2, locks_env(120)) as fleet:
                insert_unique_results(url, products, RESULTS, first=100_000)
                wait_until(
                    lambda: event_counts(url)["pending"] == 0,
                    timeout=60,
                    message="everything drained while the advisory locks are held",
                )
                assert [d.stop(30) for d in fleet] == [0, 0]
        finally:
            watch.stop()
        still = foreign.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s AND granted", [pid]
        ).fetchone()[0]
    assert still == held, "the foreign session lost advisory locks during the drain"
    assert watch.samples > 10, f"the lock watch took only {watch.samples} samples"
    assert not watch.waits, f"drainer backends waited on a lock of the foreign session: {watch.waits[:5]}"
    assert_queue_settled()
    assert_recorded_once_in_outbox_order(url, results=RESULTS)


#: The drainers' lock_timeout in the row-lock tests, and how long the foreign lock is
#: held at least: past it, so that a drainer waiting on the lock would have hit it.
ROW_LOCK_TIMEOUT = 2.0
HOLD_AT_LEAST = 3 * ROW_LOCK_TIMEOUT


def highest_bucket(conn: psycopg.Connection, products: list[int]) -> int:
    """The highest bucket the products' events fall in: the first one a drainer that
    owns every bucket gives away when another joins."""
    row = conn.execute(f"SELECT max({bucket_sql('p')}) FROM unnest(%s::bigint[]) AS p", [products]).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("target", "mode"),
    [("event", "FOR UPDATE"), ("event", "FOR SHARE"), ("bucket", "FOR UPDATE"), ("bucket", "FOR SHARE")],
)
def test_foreign_row_lock_holds_back_only_its_own_bucket(target: str, mode: str) -> None:
    url = current_database_url()
    products = make_products_sql(url, "FR", PRODUCTS)
    lock_sql = {
        "event": "SELECT id FROM outbox_event WHERE bucket = %(bucket)s ORDER BY id LIMIT 1",
        "bucket": "SELECT bucket FROM outbox_bucket WHERE topic = %(topic)s AND bucket = %(bucket)s",
    }[target] + f" {mode}"
    params = {"topic": CRAWL_RESULT_CREATED}
    with psycopg.connect(url, autocommit=True) as check, psycopg.connect(url) as foreign:
        params["bucket"] = bucket = highest_bucket(check, products)
        env = locks_env(ROW_LOCK_TIMEOUT)
        if target == "event":
            # The event's row is locked before any drainer can take it.
            insert_unique_results(url, products, RESULTS, first=100_000)
            foreign.execute(lock_sql, params)
        with drainers(1, env) as fleet:
            wait_until(
                lambda: bucket_owners(url, CRAWL_RESULT_CREATED) == {identity(fleet[0]): BUCKETS},
                timeout=60,
                message="the first drainer owns every bucket",
            )
            if target == "bucket":
                # The bucket row exists and is owned now; its events come after the lock.
                foreign.execute(lock_sql, params)
                insert_unique_results(url, products, RESULTS, first=100_000)
            locked_at = time.monotonic()
            second = DrainerProcess(ARGS, env=env)
            fleet.append(second)

            def rest_drained() -> bool:
                (left,) = check.execute(
                    "SELECT count(*) FROM outbox_event WHERE status = 'pending' AND bucket <> %s", [bucket]
                ).fetchone()
                return left == 0 and time.monotonic() - locked_at >= HOLD_AT_LEAST

            wait_until(rest_drained, timeout=60, message=f"every bucket but {bucket} drained while {target} is locked")
            done_in_bucket = check.execute(
                "SELECT id FROM outbox_event WHERE bucket = %s AND status = 'done' ORDER BY id LIMIT 5", [bucket]
            ).fetchall()
            if mode == "FOR UPDATE" or target == "event":
                # Its first event cannot be claimed: no later event of its bucket may go first.
                assert not done_in_bucket, f"events of bucket {bucket} went past the locked {target}: {done_in_bucket}"
            assert all(d.exit_code is None for d in fleet), "a drainer died while the row was locked"
            waited = [d.pid for d in fleet if "lock timeout" in d.output()]
            assert not waited, f"drainers {waited} waited on the foreign lock until their lock_timeout"
            foreign.commit()
            wait_until(lambda: event_counts(url)["pending"] == 0, timeout=60, message="drained once the lock went")
            wait_until(
                lambda: sorted(bucket_owners(url, CRAWL_RESULT_CREATED).values()) == [BUCKETS // 2] * 2,
                timeout=30,
                message="the buckets shared fairly once the lock went",
            )
            assert [d.stop(30) for d in fleet] == [0, 0]
    assert_queue_settled()
    assert_recorded_once_in_outbox_order(url, results=RESULTS)
    counts = event_counts(url)
    assert counts["failed"] == 0 and counts["max_attempts"] == 1, counts


def identity(process: DrainerProcess) -> str | None:
    """The identity of a drainer process, once it has joined (its row in outbox_drainer)."""
    for owner in bucket_owners(current_database_url(), CRAWL_RESULT_CREATED):
        if identity_pid(owner) == process.pid:
            return owner
    return None
