"""Pricing operations shared by the commands and the admin.

``backfill()`` enqueues outbox events for existing CrawlResult rows: the migration
path from the Redis design, whose queue is lost when Redis is switched off. The
source of truth is ``pricing_crawlresult`` itself, so the results that were never
processed (or that failed, or were skipped under an old config) are chosen by a
predicate over it and get the event the trigger would have written, with exactly
the trigger's payload. It is idempotent: a result that already has a pending
event gets no second one, so it can be re-run, or run while drainers and writers
work. ``manage.py outbox_backfill`` and the CrawlResult admin's action call it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from outbox.triggers import NOTIFY_CHANNEL
from pricing.auto_record import queries
from pricing.models import CRAWL_RESULT_CREATED, HistoryRecordStatus

#: What --status accepts: results not processed yet, or processed with this outcome.
#: Recorded and duplicate results are left out on purpose: their history exists,
#: and a replay would only turn "recorded" into "duplicate".
UNPROCESSED = "unprocessed"
REPLAYABLE = (UNPROCESSED, HistoryRecordStatus.FAILED.value, HistoryRecordStatus.SKIPPED.value)
DEFAULT_CHUNK = 1000


@dataclass(frozen=True)
class BackfillResult:
    #: Results the predicate chose.
    selected: int
    #: Events written.
    enqueued: int
    #: Chosen results that got no event: one was already pending, or a drainer
    #: processed the result in the meantime.
    skipped: int


def backfill(
    *,
    statuses: Sequence[str] = (UNPROCESSED,),
    since: dt.datetime | None = None,
    sources: Sequence[str] | None = None,
    ids: Iterable[uuid.UUID | str] | None = None,
    chunk: int = DEFAULT_CHUNK,
    dry_run: bool = False,
    on_selected: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> BackfillResult:
    """Enqueue an event for each chosen CrawlResult that has no pending one.

    ``statuses``: any of ``unprocessed`` (history_record_status NULL), ``failed``,
    ``skipped``. ``since``: crawled at or after. ``sources`` / ``ids``: only these.
    ``on_selected(total)`` is called once the choice is made and
    ``progress(done)`` after each chunk (each chunk is one transaction).
    """
    wrong = [s for s in statuses if s not in REPLAYABLE]
    if wrong or not statuses:
        raise ValueError(f"statuses must be some of {', '.join(REPLAYABLE)}, got {list(statuses)!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    params: dict[str, Any] = {
        "unprocessed": UNPROCESSED in statuses,
        "statuses": [s for s in statuses if s != UNPROCESSED] or None,
        "since": since,
        "sources": list(sources) if sources else None,
        "ids": [uuid.UUID(str(i)) for i in ids] if ids is not None else None,
        "topic": CRAWL_RESULT_CREATED,
    }
    if params["ids"] is not None and not params["ids"]:
        return BackfillResult(0, 0, 0)
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute(queries.crawl_result_backfill_drop, {})
        try:
            # The selection lives in a temporary table of this session: one sort
            # in crawl order, then cheap chunks.
            cursor.execute(queries.crawl_result_backfill_select, params)
            selected = cursor.rowcount
            if on_selected is not None:
                on_selected(selected)
            if dry_run:
                return BackfillResult(selected, 0, 0)
            cursor.execute(queries.crawl_result_backfill_index, {})
            enqueued = 0
            after = 0
            while after < selected:
                with transaction.atomic(using=using):
                    cursor.execute(queries.crawl_result_backfill_lock, {})
                    cursor.execute(queries.crawl_result_backfill_chunk, {**params, "after": after, "chunk": chunk})
                    _, written = cursor.fetchone()
                    if written:
                        cursor.execute(
                            queries.crawl_result_backfill_notify, {"channel": NOTIFY_CHANNEL, "topic": params["topic"]}
                        )
                enqueued += int(written)
                after += chunk
                if progress is not None:
                    progress(min(after, selected))
            return BackfillResult(selected, enqueued, selected - enqueued)
        finally:
            cursor.execute(queries.crawl_result_backfill_drop, {})
