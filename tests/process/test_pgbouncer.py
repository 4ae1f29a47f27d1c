"""Drainers through a real PgBouncer in transaction mode, LISTEN on a direct connection.

PgBouncer (Debian's 1.18, started here on a free port in front of the test server)
gives a client a server connection for one transaction at a time: a LISTEN through it
lands on a connection other clients then use, and prepared statements do not survive
the transaction. So the drainers' work goes through the pooler (DATABASE_URL), with
prepared statements off, and only their LISTEN goes straight to the server
(DATABASE_LISTEN_URL, which the settings turn into OUTBOX['LISTEN_URL']). Two
drainers record 5,000 results, each exactly once; then, idle with a poll interval far
longer than the test waits, they are woken by the trigger's NOTIFY through the direct
connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.db import connection

from outbox.models import OutboxEvent
from pricing.models import CrawlResult, PriceHistory
from tests.factories import make_product
from tests.servers import PgBouncer
from tests.support import DrainerProcess, current_database_url, drainer_env, wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

RESULTS = 5000
#: Far longer than any wait below: only a NOTIFY can wake an idle drainer in time.
POLL_INTERVAL = "60"


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    s = connection.settings_dict
    bouncer = PgBouncer(host=s["HOST"] or "localhost", port=int(s["PORT"] or 5432))
    try:
        yield bouncer
    finally:
        bouncer.close()


def pooled_url(bouncer: PgBouncer) -> str:
    """The test database's URL, through the pooler."""
    direct = urlsplit(current_database_url())
    return urlunsplit(direct._replace(netloc=f"postgres@127.0.0.1:{bouncer.port}"))


def write_results(url: str, products: list[int], count: int, offset: int = 0) -> None:
    """A crawler writing through the pooler: set-based inserts, no prepared statements."""
    with psycopg.connect(url, prepare_threshold=None) as conn:
        for start in range(0, count, 1000):
            conn.execute(
                # Prices all different and crawls in order: every result is recorded.
                "INSERT INTO pricing_crawlresult (product_id, source, price, currency, confidence, crawled_at) "
                "SELECT (%s::bigint[])[1 + (g %% %s)], 'html_ml', 10 + g, 'EUR', 0.95, "
                "       clock_timestamp() - interval '1 hour' + g * interval '1 ms' "
                "FROM generate_series(%s::int, %s::int) AS g",
                [products, len(products), offset + start, offset + min(start + 1000, count) - 1],
            )
            conn.commit()


def test_two_drainers_through_pgbouncer_record_each_result_once(pgbouncer: PgBouncer) -> None:
    products = [make_product().pk for _ in range(50)]
    env = drainer_env(DATABASE_URL=pooled_url(pgbouncer), DATABASE_LISTEN_URL=current_database_url())
    drainers = [DrainerProcess(["--interval", POLL_INTERVAL], env=env) for _ in range(2)]
    try:
        for drainer in drainers:
            wait_until(lambda d=drainer: "started" in d.output(), timeout=60, message="drainer started")
        write_results(pooled_url(pgbouncer), products, RESULTS)

        def done() -> int:
            return OutboxEvent.objects.filter(status="done").count()

        wait_until(lambda: done() == RESULTS, timeout=180, message=f"{RESULTS} events done")
        assert not OutboxEvent.objects.exclude(status="done").exists()
        recorded = CrawlResult.objects.filter(history_record_status="recorded").count()
        assert recorded == RESULTS == PriceHistory.objects.count(), "each result recorded exactly once"
        assert PriceHistory.objects.values("crawl_result").distinct().count() == RESULTS

        # The drainers are idle, polling every 60 s: a wake-up within seconds is a NOTIFY,
        # received on their direct LISTEN connection (through the pooler it would be lost).
        started = time.monotonic()
        write_results(pooled_url(pgbouncer), products, 1, offset=RESULTS)
        wait_until(lambda: done() == RESULTS + 1, timeout=20, message="a NOTIFY woke a drainer")
        woke_after = time.monotonic() - started
        assert woke_after < 10, f"woken after {woke_after:.1f}s: a poll, not a NOTIFY"
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE %s AND query LIKE %s",
                ["outbox:%", "LISTEN%"],
            )
            assert cursor.fetchone()[0] == 2, "each drainer LISTENs on a direct session"
    finally:
        codes = [d.stop(60) for d in drainers]
        outputs = "\n".join(d.output()[-3000:] for d in drainers)
        for drainer in drainers:
            drainer.close()
    assert codes == [0, 0], f"exit codes {codes}\n{outputs}\n{pgbouncer.log()}"
    assert "cannot LISTEN" not in outputs, outputs
