"""Pricing operations shared by the admin and code: which CrawlResults to enqueue again.

``backfill()`` chooses CrawlResult rows by what they are about (their outcome, when
they were crawled, their extractor) and hands them to ``outbox.backfill``, which
writes the trigger's event for each, in crawl order, idempotently (docs/operations.md,
"Backfill"). ``manage.py outbox_backfill pricing.CrawlResult`` uses the default that
``PricingConfig.ready()`` registers: every result not processed yet.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q

from outbox import backfill as outbox_backfill
from outbox.backfill import BackfillResult
from pricing.models import HistoryRecordStatus

#: What ``statuses`` accepts: results not processed yet, or processed with this outcome.
#: Recorded and duplicate results are left out on purpose: their history exists,
#: and a replay would only turn "recorded" into "duplicate".
UNPROCESSED = "unprocessed"
REPLAYABLE = (UNPROCESSED, HistoryRecordStatus.FAILED.value, HistoryRecordStatus.SKIPPED.value)
#: Results not processed yet: the default of outbox_backfill pricing.CrawlResult.
NOT_PROCESSED = Q(history_record_status__isnull=True)
#: The order the old design's queue had them: history is written oldest first, and no
#: result is skipped as stale because a newer one of its product went ahead of it.
CRAWL_ORDER = ("crawled_at", "id")
DEFAULT_CHUNK = outbox_backfill.DEFAULT_CHUNK


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
    """Enqueue an event, in crawl order, for each chosen CrawlResult that has no pending one.

    ``statuses``: any of ``unprocessed`` (history_record_status NULL), ``failed``,
    ``skipped``. ``since``: crawled at or after. ``sources`` / ``ids``: only these.
    """
    from pricing.models import CrawlResult

    wrong = [s for s in statuses if s not in REPLAYABLE]
    if wrong or not statuses:
        raise ValueError(f"statuses must be some of {', '.join(REPLAYABLE)}, got {list(statuses)!r}")
    outcome = Q(history_record_status__in=[s for s in statuses if s != UNPROCESSED])
    if UNPROCESSED in statuses:
        outcome |= NOT_PROCESSED
    queryset = CrawlResult.objects.using(using).filter(outcome)
    if since is not None:
        queryset = queryset.filter(crawled_at__gte=since)
    if sources:
        queryset = queryset.filter(source__in=list(sources))
    if ids is not None:
        wanted = [uuid.UUID(str(i)) for i in ids]
        if not wanted:
            return BackfillResult(0, 0, 0)
        queryset = queryset.filter(id__in=wanted)
    return outbox_backfill.backfill(
        queryset, order_by=CRAWL_ORDER, chunk=chunk, dry_run=dry_run, on_selected=on_selected, progress=progress
    )
