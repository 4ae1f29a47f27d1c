"""Operating the outbox: status, retry, mark failed, delete, purge, and a health check.

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

import pgtrigger
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from pgtrigger.core import OUTDATED, UNINSTALLED

from outbox.conf import get_settings
from outbox.handlers import Event, HandlerRegistry, registry
from outbox.models import EventStatus
from outbox.schema import not_migrated_message, unapplied_migrations
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
    """Counts per status and the lag, from the ``outbox_stats`` view (one cheap query)."""
    with connections[using].cursor() as cursor:
        cursor.execute(queries.stats_by_topic_status, {"topics": list(topics) if topics else None})
        rows = tuple(TopicStats(*row) for row in cursor.fetchall())
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


# --------------------------------------------------------------------- doctor

CheckState = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One line of ``outbox_doctor``: what was checked, how it stands, and why."""

    name: str
    state: CheckState
    summary: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class DoctorLimits:
    """Thresholds of the health checks (seconds, fractions, rows)."""

    #: A transaction open longer than this pins dead rows: fail.
    max_transaction_age: float = 300.0
    #: Dead row versions above this fraction of the table: warn (above 0.5: fail).
    max_dead_ratio: float = 0.2
    #: Dead-row checks only count once the table has this many dead rows.
    min_dead_rows: int = 10_000
    #: With that many dead rows, no vacuum for this long: warn.
    max_vacuum_age: float = 86_400.0
    #: Claim-plan check: below this many pages a sequential scan is fine.
    small_table_pages: int = SMALL_TABLE_PAGES
    #: Extra slack past RETENTION before the oldest done event counts as overdue.
    retention_slack: float = 3600.0


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.state == "fail"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.state == "warn"]

    def ok(self, *, strict: bool = False) -> bool:
        return not self.failed and not (strict and self.warnings)


def _index_names(plan: Any) -> Iterator[tuple[str, str]]:
    """(node type, index name) of every node of an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan["Node Type"], plan.get("Index Name", "")
        for value in plan.values():
            yield from _index_names(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _index_names(item)


def _claim_params_of_every_topic() -> dict[str, Any]:
    """The claim of a drainer that handles every registered topic and owns every bucket."""
    from outbox.conf import BUCKETS
    from outbox.drainer.buckets import mask_hex
    from outbox.drainer.store import claim_params
    from outbox.handlers import ordered_topics_of_triggers

    s = get_settings()
    ordered_triggers = ordered_topics_of_triggers()
    ordered, unordered = {}, []
    for topic, registration in registry.snapshot().items():
        if registration.ordered or (registration.ordered is None and topic in ordered_triggers):
            ordered[topic] = mask_hex(frozenset(range(BUCKETS)))
        else:
            unordered.append(topic)
    return claim_params("outbox-doctor", ordered=ordered, unordered=unordered, batch=s.batch_size, lease=s.lease)


def _check_claim_plan(cursor: Any, limits: DoctorLimits, using: str) -> Check:
    name = "claim plan"
    cursor.execute(queries.doctor_claim_index, {})
    valid, pages = cursor.fetchone()
    if valid is None:
        return Check(name, "fail", f"index {CLAIM_INDEX} is missing: run manage.py migrate")
    if not valid:
        return Check(
            name,
            "fail",
            f"index {CLAIM_INDEX} is INVALID (a failed CREATE INDEX CONCURRENTLY?): "
            f"REINDEX INDEX CONCURRENTLY {CLAIM_INDEX}",
        )
    s = get_settings()
    # EXPLAIN (no ANALYZE: nothing runs) of the drainers' own claim statement, in a
    # session set up the way a drainer sets up its own (drainer_session_setup: its
    # timeouts and planner settings change plans), inside a transaction that is then
    # rolled back, which undoes those settings.
    with transaction.atomic(using=using):
        cursor.execute(
            queries.drainer_session_setup,
            {
                "application_name": "outbox-doctor",
                "statement_timeout": str(int(s.statement_timeout * 1000)),
                "lock_timeout": str(int(s.lock_timeout * 1000)),
                "idle_timeout": str(int(s.lease * 1000)),
            },
        )
        cursor.execute(queries.doctor_explain + "\n" + queries.event_claim_batch, _claim_params_of_every_topic())
        raw = cursor.fetchone()[0]
        transaction.set_rollback(True, using=using)
    plan = json.loads(raw) if isinstance(raw, str | bytes) else raw
    nodes = list(_index_names(plan))
    if any(index == CLAIM_INDEX for _, index in nodes):
        return Check(name, "ok", f"the claim reads {CLAIM_INDEX}: O(batch) however many done rows there are")
    scans = ", ".join(f"{node} {index}".strip() for node, index in nodes if "Scan" in node)
    if pages < limits.small_table_pages:
        return Check(
            name,
            "ok",
            f"outbox_event is small ({pages} pages): the planner scans it directly ({scans}); "
            f"it switches to {CLAIM_INDEX} as the table grows",
        )
    return Check(
        name,
        "fail",
        f"the claim does not use {CLAIM_INDEX} ({scans}) on a table of {pages} pages: every claim reads "
        "the done rows; run ANALYZE outbox_event, check the index",
    )


def _check_transactions(cursor: Any, limits: DoctorLimits) -> list[Check]:
    age = limits.max_transaction_age
    cursor.execute(queries.doctor_old_transactions, {"max_age": age})
    sessions = cursor.fetchall()
    idle = [s for s in sessions if s[3].startswith("idle in transaction")]
    busy = [s for s in sessions if not s[3].startswith("idle in transaction")]

    def describe(row: Sequence[Any]) -> str:
        pid, app, user, state, xact_age, xmin_age, query = row
        xmin = f", xmin age {xmin_age} transactions" if xmin_age is not None else ""
        return f"pid {pid} ({app or 'no application_name'}, user {user}): {state} for {format_age(xact_age)}{xmin}; last query: {query}"  # noqa: E501

    checks = []
    if idle:
        checks.append(
            Check(
                "idle in transaction",
                "fail",
                f"{len(idle)} session(s) idle in a transaction open for over {format_age(age)}: VACUUM cannot "
                "remove any row version of outbox_event deleted since; end them (pg_terminate_backend) "
                "and set idle_in_transaction_session_timeout",
                tuple(describe(s) for s in idle),
            )
        )
    else:
        checks.append(
            Check("idle in transaction", "ok", f"no session idle in a transaction for over {format_age(age)}")
        )
    if busy:
        checks.append(
            Check(
                "old snapshots",
                "fail",
                f"{len(busy)} transaction(s) running for over {format_age(age)} hold the xmin horizon back: "
                "dead claims and acks pile up until they end",
                tuple(describe(s) for s in busy),
            )
        )
    else:
        checks.append(Check("old snapshots", "ok", f"no transaction of this database older than {format_age(age)}"))

    cursor.execute(queries.doctor_prepared_transactions, {"max_age": age})
    prepared = cursor.fetchall()
    if prepared:
        checks.append(
            Check(
                "prepared transactions",
                "fail",
                f"{len(prepared)} prepared transaction(s) older than {format_age(age)} hold the xmin horizon "
                "back: COMMIT PREPARED or ROLLBACK PREPARED them",
                tuple(f"{gid} (owner {owner}, {format_age(secs)})" for gid, owner, secs in prepared),
            )
        )
    cursor.execute(queries.doctor_replication_slots, {})
    slots = cursor.fetchall()
    inactive = [s for s in slots if not s[1]]
    if inactive:
        checks.append(
            Check(
                "replication slots",
                "fail",
                f"{len(inactive)} inactive replication slot(s) hold an xmin: dead rows are kept until "
                "they are dropped (pg_drop_replication_slot) or their standby reconnects",
                tuple(f"{name}: xmin age {xmin_age}" for name, _, xmin_age in inactive),
            )
        )
    elif slots:
        checks.append(
            Check(
                "replication slots",
                "ok",
                f"{len(slots)} active slot(s) with an xmin (standby feedback); oldest xmin age {slots[0][2]}",
            )
        )
    return checks


def _check_table(cursor: Any, limits: DoctorLimits) -> list[Check]:
    cursor.execute(queries.doctor_table_health, {})
    row = cursor.fetchone()
    if row is None:
        return [Check("dead rows", "warn", "no statistics for outbox_event yet")]
    live, dead, last_vacuum, vacuum_age, vacuums = row
    live, dead = int(live or 0), int(dead or 0)
    ratio = dead / (live + dead) if live + dead else 0.0
    text = f"{dead:,} dead / {live:,} live row versions ({ratio:.0%})"
    if dead >= limits.min_dead_rows and ratio > 0.5:
        dead_check = Check(
            "dead rows",
            "fail",
            f"{text}: more dead than live; claims and counts read through them. Look for old transactions "
            "above, then VACUUM (VERBOSE) outbox_event",
        )
    elif dead >= limits.min_dead_rows and ratio > limits.max_dead_ratio:
        dead_check = Check(
            "dead rows",
            "warn",
            f"{text}, above {limits.max_dead_ratio:.0%}: autovacuum is behind; see docs/operations.md "
            "for per-table autovacuum settings",
        )
    else:
        dead_check = Check("dead rows", "ok", text)
    if vacuum_age is None:
        when = "never vacuumed"
    else:
        when = f"last vacuumed {format_age(vacuum_age)} ago ({vacuums} vacuums since statistics reset)"
    overdue = vacuum_age is None or vacuum_age > limits.max_vacuum_age
    if dead >= limits.min_dead_rows and overdue:
        vacuum_check = Check(
            "autovacuum",
            "warn",
            f"{when} with {dead:,} dead row versions: is autovacuum off, or blocked by a long transaction?",
        )
    else:
        vacuum_check = Check("autovacuum", "ok", when)
    return [dead_check, vacuum_check]


def _check_leases_and_drainers(cursor: Any) -> list[Check]:
    cursor.execute(queries.doctor_drainers, {})
    drainers = cursor.fetchall()
    cursor.execute(queries.event_count_pending_capped, {"cap": 10_000})
    pending = int(cursor.fetchone()[0])
    cursor.execute(queries.doctor_orphaned_leases, {})
    orphaned, holders = cursor.fetchone()
    checks = []
    pending_text = f"{pending:,}{'+' if pending >= 10_000 else ''} pending"
    if drainers:
        checks.append(
            Check(
                "drainers",
                "ok",
                f"{len(drainers)} drainer(s) connected; {pending_text}",
                tuple(f"{app} since {start:%Y-%m-%d %H:%M:%S}" for app, _, start in drainers),
            )
        )
    elif pending:
        checks.append(
            Check(
                "drainers",
                "fail",
                f"no drainer connected to this database and {pending_text} event(s) wait: start drain_outbox",
            )
        )
    else:
        checks.append(Check("drainers", "warn", "no drainer connected to this database (nothing pending)"))
    if orphaned:
        state: CheckState = "warn" if drainers else "fail"
        fix = (
            "a running drainer frees them within OUTBOX['RESCUE_INTERVAL']"
            if drainers
            else "no drainer is running to free them; they wait for their lease to end"
        )
        checks.append(
            Check(
                "orphaned leases",
                state,
                f"{orphaned} event(s) leased by drainer(s) whose session is gone: {fix}",
                tuple(holders),
            )
        )
    else:
        checks.append(Check("orphaned leases", "ok", "every lease is held by a connected session"))
    return checks


def _check_retention(cursor: Any, limits: DoctorLimits) -> Check:
    s = get_settings()
    cursor.execute(queries.doctor_oldest_done, {})
    oldest, age = cursor.fetchone()
    if oldest is None:
        return Check("retention", "ok", "no done events")
    overdue_after = s.retention + max(2 * s.purge_interval, limits.retention_slack)
    text = f"oldest done event processed {format_age(age)} ago; RETENTION is {format_age(s.retention)}"
    if age > overdue_after:
        who = (
            "the drainers purge every OUTBOX['PURGE_INTERVAL']: is one running?"
            if s.purge_interval
            else "OUTBOX['PURGE_INTERVAL'] is 0: run manage.py outbox_purge from cron"
        )
        return Check("retention", "warn", f"{text}: expired events are not being purged; {who}")
    return Check("retention", "ok", text)


def _outbox_triggers() -> list[tuple[Any, pgtrigger.Trigger]]:
    """Every installed model's trigger that writes outbox events (outbox_trigger())."""
    found = []
    for model, trigger in pgtrigger.registered():
        func = getattr(trigger, "func", None)
        body = getattr(func, "func", func)
        if isinstance(body, str) and "INSERT INTO outbox_event" in body:
            found.append((model, trigger))
    return found


@dataclass(frozen=True)
class TriggerState:
    """One outbox trigger as the database has it (the doctor's check, a metrics gauge)."""

    table: str
    name: str
    pgid: str
    #: pgtrigger's installation status: INSTALLED, UNINSTALLED or OUTDATED.
    installation: str
    #: pg_trigger.tgenabled: O or A (fires), R (replica sessions only), D (disabled); None: missing.
    enabled: str | None

    @property
    def installed(self) -> bool:
        """There, and the version the code declares."""
        return self.installation not in (UNINSTALLED, OUTDATED) and self.enabled is not None

    @property
    def fires(self) -> bool:
        """Fires for ordinary sessions' inserts."""
        return self.enabled in ("O", "A")


def trigger_states(cursor: Any, using: str = DEFAULT_DB_ALIAS) -> list[TriggerState]:
    """Every installed model's outbox trigger, as the database has it."""
    states = []
    for model, trigger in _outbox_triggers():
        table = model._meta.db_table
        pgid = trigger.get_pgid(model)
        installation, _ = trigger.get_installation_status(model, database=using)
        cursor.execute(queries.doctor_trigger_state, {"table": table, "name": pgid})
        row = cursor.fetchone()
        states.append(TriggerState(table, trigger.name, pgid, installation, row[0] if row else None))
    return states


def _check_triggers(cursor: Any, using: str) -> list[Check]:
    states = trigger_states(cursor, using)
    if not states:
        return [Check("triggers", "warn", "no installed model carries an outbox trigger: nothing writes events")]
    checks = []
    for t in states:
        if t.installation == UNINSTALLED or t.enabled is None:
            state, text = "fail", "missing: inserts write no event; run manage.py migrate"
        elif t.enabled == "D":
            state, text = (
                "fail",
                f"disabled: inserts write no event; ALTER TABLE {t.table} ENABLE TRIGGER {t.pgid}, "
                "then outbox_backfill for the rows written meanwhile",
            )
        elif t.enabled == "R":
            state, text = "fail", "enabled for replica sessions only: normal inserts write no event"
        elif t.installation == OUTDATED:
            state, text = "fail", "installed, but differs from the code (an old version): run manage.py migrate"
        else:
            state, text = "ok", "installed and enabled"
        checks.append(Check(f"trigger on {t.table}", state, f"{t.name} ({t.pgid}): {text}"))
    return checks


def doctor(limits: DoctorLimits | None = None, *, using: str = DEFAULT_DB_ALIAS) -> DoctorReport:
    """Check what counts alone do not show: the schema (migrations applied; nothing
    else is checked without it), the claim plan, the xmin horizon, dead rows and
    vacuum, leases of dead drainers, retention, the outbox triggers."""
    limits = limits or DoctorLimits()
    report = DoctorReport()
    unapplied = unapplied_migrations(("outbox",), using=using)
    if unapplied:  # every other check reads the outbox's tables and views
        report.checks.append(Check("schema", "fail", not_migrated_message(unapplied, using=using)))
        return report
    report.checks.append(Check("schema", "ok", "every outbox migration is applied"))
    with connections[using].cursor() as cursor:
        report.checks.append(_check_claim_plan(cursor, limits, using))
        report.checks.extend(_check_transactions(cursor, limits))
        report.checks.extend(_check_table(cursor, limits))
        report.checks.extend(_check_leases_and_drainers(cursor))
        report.checks.append(_check_retention(cursor, limits))
        report.checks.extend(_check_triggers(cursor, using))
    return report
