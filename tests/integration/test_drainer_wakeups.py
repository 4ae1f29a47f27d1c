"""A flood of NOTIFYs from any session cannot turn an idle drainer into a busy loop.

Wake-ups are coalesced (one claim however many notifications are queued) and claims
that find nothing are rate-limited (EMPTY_CLAIMS_PER_SECOND, bursts of
EMPTY_CLAIM_BURST): outbox/drainer/wakeup.py.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connections

from outbox.drainer import Drainer, DrainerConfig
from outbox.drainer.config import EMPTY_CLAIM_BURST, EMPTY_CLAIMS_PER_SECOND
from outbox.drainer.store import Store
from outbox.models import OutboxEvent
from outbox.triggers import NOTIFY_CHANNEL
from tests.factories import make_event
from tests.support import current_database_url, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_notify_flood_costs_a_bounded_number_of_empty_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    claims: list[float] = []
    real_claim = Store.claim

    def counted(self: Store, **kwargs: object) -> object:
        claims.append(time.monotonic())
        return real_claim(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "claim", counted)
    drainer = Drainer(DrainerConfig.from_settings(poll_interval=30.0))

    def run() -> None:
        try:
            drainer.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(claims) >= 1, timeout=30, message="the drainer's first claim")
        time.sleep(0.5)  # idle now, on LISTEN with a 30 s poll
        before = len(claims)
        with psycopg.connect(current_database_url(), autocommit=True) as flooder:
            started = time.monotonic()
            sent = 0
            while time.monotonic() - started < 1.5:  # one notification per transaction: none coalesced away
                flooder.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(sent)])  # any role can
                sent += 1
            time.sleep(0.5)
            elapsed = time.monotonic() - started
        empty = len(claims) - before
        bound = EMPTY_CLAIM_BURST + EMPTY_CLAIMS_PER_SECOND * elapsed
        assert sent > 2 * bound, f"the flood was too slow to test anything: {sent} notifications"
        assert 1 <= empty <= bound, f"{empty} claims for {sent} notifications in {elapsed:.2f}s (bound {bound:.0f})"
        # Still awake to real work: an event written now is claimed at its NOTIFY.
        make_event("pricing.crawl_result.created", "k")
        with psycopg.connect(current_database_url(), autocommit=True) as writer:
            writer.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        wait_until(  # its key is no CrawlResult id: it ran, and failed its first attempt
            lambda: OutboxEvent.objects.filter(key="k", attempts__gte=1).exists(),
            timeout=10,
            message="the event written after the flood to be handled (poll interval 30 s)",
        )
    finally:
        drainer.request_stop()
        thread.join(30)
        drainer.close()
    assert not thread.is_alive()
