"""The claim stays O(batch) behind a large backlog it skips: a rolling deploy's new topic,
or the other topics of a ``--topic`` drainer, pending ahead of the handled events.

Counted in rows, not time: with 100,000 pending events of a topic no drainer handles
ahead of the handled ones, no scan of outbox_event in the claim's plan (EXPLAIN
ANALYZE) reads more than a few batches' worth of rows, where reading the backlog
would be 100,000 (dropping the claim index, for one, makes it so).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from outbox.conf import BUCKETS
from outbox.drainer.buckets import mask_hex
from outbox.drainer.store import claim_params
from outbox.sql import queries
from pricing.models import CRAWL_RESULT_CREATED

pytestmark = pytest.mark.django_db  # in the test's transaction: the claims are rolled back

BACKLOG = 100_000
BATCH = 100
ME = "outbox:test:1:claimbacklog"


def pending(topic: str, count: int, *, bucketed: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            # available_at: the column's default is the statement's time, later than the
            # claim's now() (this test's transaction began before the inserts).
            "INSERT INTO outbox_event (topic, key, bucket, available_at) "
            "SELECT %s, g::text, CASE WHEN %s THEN (g %% %s)::smallint END, now() "
            "FROM generate_series(1, %s) AS g",
            [topic, bucketed, BUCKETS, count],
        )


def scans(node: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """(node, rows it read) for every scan of outbox_event in a plan: rows returned
    and rows it filtered out, over all its loops."""
    if node.get("Relation Name") == "outbox_event" and "Scan" in node["Node Type"]:
        per_loop = (
            node["Actual Rows"] + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        )
        yield f"{node['Node Type']} {node.get('Index Name', '')}".strip(), int(per_loop * node["Actual Loops"])
    for child in node.get("Plans", []):
        yield from scans(child)


def test_a_large_backlog_of_a_topic_nobody_handles_is_not_read_by_the_claim() -> None:
    with connection.cursor() as cursor:
        cursor.execute(queries.bucket_ensure_rows, {"topics": [CRAWL_RESULT_CREATED], "buckets": BUCKETS})
        cursor.execute("UPDATE outbox_bucket SET owner = %s WHERE topic = %s", [ME, CRAWL_RESULT_CREATED])
    pending("rollout.new_topic", BACKLOG, bucketed=False)  # older than every handled event
    pending("t", BATCH, bucketed=False)
    pending(CRAWL_RESULT_CREATED, BATCH, bucketed=True)
    # A drainer handling pricing (ordered, every bucket its own) and the unordered "t".
    params = claim_params(
        ME, ordered={CRAWL_RESULT_CREATED: mask_hex(frozenset(range(BUCKETS)))}, unordered=["t"], batch=BATCH, lease=60
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_event")
        cursor.execute("SET LOCAL enable_incremental_sort = off")  # as drainer_session_setup does
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + queries.event_claim_batch, params)
        plan = cursor.fetchone()[0]
        cursor.execute("SELECT topic, count(*) FROM outbox_event WHERE locked_by = %s GROUP BY 1", [ME])
        claimed = dict(cursor.fetchall())
    plan = plan if isinstance(plan, list) else json.loads(plan)
    read = list(scans(plan[0]["Plan"]))
    print(f"claim of {BATCH} behind {BACKLOG:,} pending of another topic: rows read per scan {read}")
    assert claimed == {"t": BATCH}, claimed  # the oldest handled events, none of the backlog
    assert read, "no scan of outbox_event in the claim's plan"
    assert max(rows for _, rows in read) <= 10 * BATCH, f"the claim read the backlog: {read}"
