"""Operating the outbox: status, retry, mark failed, delete done events, purge.

One path for every operator tool: the admin's actions, the ``outbox_*`` commands and
code that called the old Redis design's functions all call these, and these run the
named SQL blocks of ``outbox/sql/queries.sql`` (section "operations"):

=====================================  =============================================
old design                             here
=====================================  =============================================
``get_auto_record_queue_status()``     ``status()`` (``.as_dict()`` keeps the old
                                       ``queue_size`` / ``processing_size`` /
                                       ``failed_size`` keys)
``retry_failed_recordings(limit)``     ``retry(limit=...)``
``clear_auto_record_queue()``          ``purge()``: done (or failed) events past a
                                       cut-off; pending events are never deleted
=====================================  =============================================

Writes go in chunks of ``chunk`` rows, each in a transaction of its own, and skip
rows a drainer holds locked at that instant (``SKIP LOCKED``): an operator never
waits on a drainer nor makes one wait, and never holds many row locks for long.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from outbox.conf import get_settings
from outbox.handlers import Event, HandlerRegistry, registry
from outbox.models import EventStatus
from outbox.sql import queries

logger = logging.getLogger(__name__)

#: Rows per statement (and per transaction) of retry / mark_failed / delete_done.
DEFAULT_CHUNK = 1000
#: The statuses ``purge`` may delete. Pending events are work not yet done: never.
PURGEABLE = (EventStatus.DONE.value, EventStatus.FAILED.value)
#: The index the claim must use (see OutboxEvent.Meta.indexes).
CLAIM_INDEX = "outbox_event_claim_idx"
#: Below this many pages a sequential scan of outbox_event is cheaper than any
#: index, and the planner rightly prefers it: the doctor does not flag it then.
SMALL_TABLE_PAGES = 1000

Seconds = float | int | dt.timedelta


def _seconds(value: Seconds, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if seconds < 0 or seconds != seconds:  # NaN
        raise ValueError(f"{what} must be >= 0 seconds, got {value!r}")
    return seconds


def _chunks(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    for event_id in ids:
        chunk.append(int(event_id))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def format_age(seconds: float | None) -> str:
    """``42s``, ``5m 3s``, ``2h 5m``, ``3d 4h``; ``-`` for None."""
    if seconds is None:
        return "-"
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


# --------------------------------------------------------------------- status


@dataclass(frozen=True)
class TopicStats:
    """One row of the ``outbox_stats`` view."""

    topic: str | None
    status: str
    #: None: an estimate was due but the table has no statistics yet (run ANALYZE).
    events: int | None
    leased: int
    oldest_created_at: dt.datetime | None
    oldest_age_seconds: float | None
    max_attempts_seen: int | None
    estimated: bool
    #: Pending rows: since when the oldest event claimable now (not leased, not in a
    #: backoff) has been claimable, and for how long. None: nothing claimable.
    oldest_available_at: dt.datetime | None = None
    lag_seconds: float | None = None


@dataclass(frozen=True)
class OutboxStatus:
    """Counts per status and the lag, read from ``outbox_stats`` in one query."""

    rows: tuple[TopicStats, ...]
    #: Events per status, every status present. Done is an estimate on a large
    #: table (``estimated``), None when that estimate is not available yet.
    counts: dict[str, int | None]
    #: Statuses whose count is an estimate.
    estimated: frozenset[str]
    #: Pending events under a live lease: a drainer is working on them.
    processing: int
    #: Age of the oldest pending event since it was created, in seconds (None: nothing pending).
    oldest_pending_age_seconds: float | None
    #: The lag: how long the oldest event claimable now has waited for a drainer, in
    #: seconds (None: nothing claimable). A retried or backed-off event counts from
    #: when it became claimable again, not from its creation.
    lag_seconds: float | None = None
    #: Drainers alive now per topic they handle (outbox_drainer), and in all (key None).
    drainers: dict[str | None, int] = field(default_factory=dict)

    @property
    def unhandled(self) -> dict[str, int]:
        """Pending events of topics no drainer alive handles (nothing will process them)."""
        pending: dict[str, int] = {}
        for row in self.rows:
            if row.status == EventStatus.PENDING and row.topic is not None and not self.drainers.get(row.topic):
                pending[row.topic] = pending.get(row.topic, 0) + (row.events or 0)
        return {topic: count for topic, count in sorted(pending.items()) if count}

    @property
    def pending(self) -> int:
        return self.counts[EventStatus.PENDING] or 0

    @property
    def failed(self) -> int:
        return self.counts[EventStatus.FAILED] or 0

    @property
    def queue_size(self) -> int:
        """Pending events no drainer holds: the old design's ``LLEN`` of the queue."""
        return max(self.pending - self.processing, 0)

    def topics(self) -> list[str]:
        return sorted({row.topic for row in self.rows if row.topic is not None})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: per-status counts and the old design's keys."""
        return {
            **{status: self.counts[status] for status in EventStatus.values},
            "estimated": sorted(self.estimated),
            "queue_size": self.queue_size,
            "processing_size": self.processing,
            "failed_size": self.failed,
            "oldest_pending_age_seconds": self.oldest_pending_age_seconds,
            "lag_seconds": self.lag_seconds,
            "drainers": self.drainers.get(None, 0),
            "unhandled": self.unhandled,
            "topics": [
                {
                    "topic": row.topic,
                    "status": row.status,
                    "events": row.events,
                    "leased": row.leased,
                    "oldest_created_at": row.oldest_created_at.isoformat() if row.oldest_created_at else None,
                    "oldest_age_seconds": row.oldest_age_seconds,
                    "max_attempts_seen": row.max_attempts_seen,
                    "estimated": row.estimated,
                    "oldest_available_at": row.oldest_available_at.isoformat() if row.oldest_available_at else None,
                    "lag_seconds": row.lag_seconds,
                }
                for row in self.rows
            ],
        }


def status(*, topics: Sequence[str] | None = None, using: str = DEFAULT_DB_ALIAS) -> OutboxStatus:
    """Counts per status and the lag (the ``outbox_stats`` view), and the drainers alive."""
    with connections[using].cursor() as cursor:
        cursor.execute(queries.stats_by_topic_status, {"topics": list(topics) if topics else None})
        rows = tuple(TopicStats(*row) for row in cursor.fetchall())
        cursor.execute(queries.drainer_live_by_topic, {"expiry": get_settings().lease})
        drainers = {topic: int(count) for topic, count in cursor.fetchall()}
    counts: dict[str, int | None] = dict.fromkeys(EventStatus.values, 0)
    estimated: set[str] = set()
    processing = 0
    oldest: float | None = None
    lag: float | None = None
    for row in rows:
        current = counts.get(row.status, 0)
        counts[row.status] = None if current is None or row.events is None else current + row.events
        if row.estimated:
            estimated.add(row.status)
        if row.status == EventStatus.PENDING:
            processing += row.leased
            if row.oldest_age_seconds is not None:
                oldest = max(oldest or 0.0, row.oldest_age_seconds)
            if row.lag_seconds is not None:
                lag = max(lag or 0.0, row.lag_seconds)
    return OutboxStatus(
        rows=rows,
        counts=counts,
        estimated=frozenset(estimated),
        processing=processing,
        oldest_pending_age_seconds=oldest,
        lag_seconds=lag,
        drainers=drainers,
    )


# --------------------------------------------------------------------- actions


def retry(
    *,
    limit: int | None = None,
    topics: Sequence[str] | None = None,
    ids: Iterable[int] | None = None,
    dry_run: bool = False,
    chunk: int = DEFAULT_CHUNK,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """Put failed events back to pending: available now, attempts reset, lease cleared.

    ``last_error`` is kept, so the reason stays visible until the next attempt
    replaces it. Oldest first; at most ``limit``; only ``topics`` / ``ids`` when
    given (events among ``ids`` that are not failed are left alone). Returns how
    many were (with ``dry_run``: would be) put back.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    topic_list = list(topics) if topics else None
    id_list = sorted({int(i) for i in ids}) if ids is not None else None
    if id_list is not None and not id_list:
        return 0
    conn = connections[using]
    if dry_run:
        with conn.cursor() as cursor:
            cursor.execute(queries.event_retry_failed_count, {"topics": topic_list, "ids": id_list, "limit": limit})
            row = cursor.fetchone()
        return int(row[0]) if row else 0
    # Explicit ids: one statement per chunk of them. A filter: repeat until a
    # statement finds fewer than it may take.
    batches: Iterable[list[int] | None] = _chunks(id_list, chunk) if id_list is not None else itertools.repeat(None)
    retried = 0
    for batch in batches:
        remaining = None if limit is None else limit - retried
        if remaining is not None and remaining <= 0:
            break
        size = chunk if remaining is None else min(chunk, remaining)
        with transaction.atomic(using=using), conn.cursor() as cursor:
            cursor.execute(
                queries.event_retry_failed_chunk,
                {"topics": topic_list, "ids": batch, "limit": size},
            )
            count = cursor.rowcount
        retried += count
        if batch is None and count < size:
            break  # no more failed events (or the rest are locked right now)
    if retried:
        logger.info("retried=%d failed event(s) put back to pending", retried)
    return retried


def mark_failed(
    ids: Iterable[int],
    *,
    reason: str = "marked failed by an operator",
    handlers: HandlerRegistry | None = None,
    chunk: int = DEFAULT_CHUNK,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """Give up on pending events: ``failed`` with ``reason``, as if out of attempts.

    Each topic's ``on_failed`` runs in the same transaction, as when the drainer
    fails an event, so the domain records the failure too (pricing marks the
    CrawlResult failed). Events that are not pending, or that a drainer is
    processing at this instant, are left alone. Returns how many were marked.
    """
    reg = handlers or registry
    max_length = get_settings().error_max_length
    marked = 0
    conn = connections[using]
    for batch in _chunks(ids, chunk):
        with transaction.atomic(using=using):
            with conn.cursor() as cursor:
                cursor.execute(
                    queries.event_mark_failed,
                    {"ids": batch, "reason": reason, "max_length": max_length},
                )
                rows = cursor.fetchall()
            marked += len(rows)
            by_topic: dict[str, list[Event]] = {}
            for event_id, topic, key, payload, attempts, created_at in rows:
                data = json.loads(payload) if isinstance(payload, str | bytes) else (payload or {})
                by_topic.setdefault(topic, []).append(Event(event_id, topic, key, data, attempts, created_at))
            for topic, events in by_topic.items():
                registration = reg.get(topic)
                if registration is not None and registration.on_failed is not None:
                    registration.on_failed(events, reason)
    if marked:
        logger.info("marked_failed=%d event(s): %s", marked, reason)
    return marked


def delete_done(ids: Iterable[int], *, chunk: int = DEFAULT_CHUNK, using: str = DEFAULT_DB_ALIAS) -> int:
    """Delete the given events that are done; anything else is left alone. Returns how many."""
    deleted = 0
    conn = connections[using]
    for batch in _chunks(ids, chunk):
        with transaction.atomic(using=using), conn.cursor() as cursor:
            cursor.execute(queries.event_delete_done, {"ids": batch})
            deleted += cursor.rowcount
    if deleted:
        logger.info("deleted=%d done event(s)", deleted)
    return deleted


def purge(
    *,
    older_than: Seconds | None = None,
    status: Literal["done", "failed"] = "done",
    chunk: int | None = None,
    max_chunks: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """Delete ``done`` (or ``failed``) events finished more than ``older_than`` ago.

    ``older_than`` defaults to ``OUTBOX['RETENTION']``; ``chunk`` to
    ``OUTBOX['PURGE_CHUNK']``. Each chunk is one short transaction (the drainer's
    periodic purge runs the same statement), so a purge of millions of rows never
    holds many locks or a long transaction. ``progress(deleted_so_far)`` is called
    after each chunk. Pending events are never purged. Returns how many rows were
    (with ``dry_run``: would be) deleted.
    """
    if status not in PURGEABLE:
        raise ValueError(
            f"status must be one of {', '.join(PURGEABLE)}, got {status!r}; pending events are never purged"
        )
    s = get_settings()
    seconds = _seconds(s.retention if older_than is None else older_than, "older_than")
    size = s.purge_chunk if chunk is None else chunk
    if size < 1:
        raise ValueError(f"chunk must be >= 1, got {size!r}")
    conn = connections[using]
    if dry_run:
        count_sql = queries.event_purge_done_count if status == "done" else queries.event_purge_failed_count
        with conn.cursor() as cursor:
            cursor.execute(count_sql, {"older_than": seconds})
            row = cursor.fetchone()
        return int(row[0]) if row else 0
    sql = queries.event_purge_done if status == "done" else queries.event_purge_failed
    deleted = 0
    chunks = 0
    while max_chunks is None or chunks < max_chunks:
        with transaction.atomic(using=using), conn.cursor() as cursor:
            cursor.execute(sql, {"older_than": seconds, "chunk": size})
            count = cursor.rowcount
        deleted += count
        chunks += 1
        if progress is not None:
            progress(deleted)
        if count < size:
            break
    if deleted:
        logger.info("purged=%d %s event(s) older than %ss", deleted, status, seconds)
    return deleted
