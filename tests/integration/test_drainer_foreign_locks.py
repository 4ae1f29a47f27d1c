"""A foreign session's row locks hold back only their own bucket, and nothing waits on them.

The in-process counterpart of tests/fault/test_foreign_locks.py (fast, one drainer
that owns every bucket before the lock is taken). A drainer that waited on the
foreign lock would hit its lock_timeout (3 s) again and again and give up after
``give_up_after`` (5 s) with DatabaseUnavailable.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from outbox.drainer import Drainer, DrainerConfig
from outbox.models import OutboxEvent
from pricing.models import CRAWL_RESULT_CREATED
from tests.factories import make_product, make_results_sql
from tests.support import current_database_url

# A drainer waiting on the foreign lock would wait forever: fail it within a minute.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
def foreign() -> Iterator[psycopg.Connection]:
    """Another session, in an open transaction."""
    with psycopg.connect(current_database_url()) as conn:
        yield conn


def owning_drainer() -> Drainer:
    """A drainer that owns every bucket already (its rows made and taken)."""
    drainer = Drainer(DrainerConfig.from_settings(lock_timeout=3, give_up_after=5))
    drainer.buckets.prepare()
    drainer.buckets.rebalance()
    return drainer


def drain(drainer: Drainer | None = None) -> None:
    drainer = drainer or owning_drainer()
    try:
        drainer.drain()
    finally:
        drainer.close()


def setup_events() -> tuple[int, int]:
    """Results of 20 products; (a bucket with events, its first event)."""
    make_results_sql([make_product().id for _ in range(20)], 200, price_mod=100_000)
    first = OutboxEvent.objects.order_by("id").first()
    assert first is not None and first.bucket is not None
    return first.bucket, first.id


def pending_by_bucket() -> dict[int, int]:
    rows = OutboxEvent.objects.filter(status="pending").values_list("bucket", flat=True)
    counts: dict[int, int] = {}
    for bucket in rows:
        counts[bucket] = counts.get(bucket, 0) + 1
    return counts


@pytest.mark.parametrize("mode", ["FOR UPDATE", "FOR SHARE"])
def test_a_locked_event_holds_back_its_bucket_behind_it_and_nothing_else(
    foreign: psycopg.Connection, mode: str
) -> None:
    bucket, first_event = setup_events()
    in_bucket = OutboxEvent.objects.filter(bucket=bucket).count()
    drainer = owning_drainer()
    foreign.execute(f"SELECT id FROM outbox_event WHERE id = %s {mode}", [first_event])
    drain(drainer)
    assert pending_by_bucket() == {bucket: in_bucket}, "only the locked event's bucket may wait, all of it"
    untouched = OutboxEvent.objects.filter(bucket=bucket, attempts=0, locked_by__isnull=True).count()
    assert untouched == in_bucket, "the held-back events were claimed"
    foreign.commit()
    drain()
    assert pending_by_bucket() == {}


@pytest.mark.parametrize("mode", ["FOR UPDATE", "FOR SHARE"])
def test_a_locked_bucket_row_holds_back_at_most_that_bucket(foreign: psycopg.Connection, mode: str) -> None:
    bucket, _ = setup_events()
    in_bucket = OutboxEvent.objects.filter(bucket=bucket).count()
    drainer = owning_drainer()
    foreign.execute(
        f"SELECT 1 FROM outbox_bucket WHERE topic = %s AND bucket = %s {mode}", [CRAWL_RESULT_CREATED, bucket]
    )
    drain(drainer)
    # FOR SHARE does not stop its owner; FOR UPDATE holds the bucket back, whole.
    assert pending_by_bucket() == ({bucket: in_bucket} if mode == "FOR UPDATE" else {})
    foreign.commit()
    drain()
    assert pending_by_bucket() == {}
