"""The outbox's health check (``outbox_doctor``, the admin, the metrics): each check a
Check with a state (ok, warn, fail), a one-line summary and what to do about it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from pgtrigger.core import OUTDATED, UNINSTALLED

from outbox.conf import get_settings
from outbox.handlers import registry
from outbox.operations import CLAIM_INDEX, SMALL_TABLE_PAGES, format_age
from outbox.schema import not_migrated_message, unapplied_migrations
from outbox.sql import queries
from outbox.triggers import trigger_states

logger = logging.getLogger(__name__)


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
    from outbox.triggers import ordered_topics

    s = get_settings()
    ordered_triggers = ordered_topics()
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
    cursor.execute(queries.drainer_live_by_topic, {"expiry": get_settings().lease})
    handled = {topic: count for topic, count in cursor.fetchall() if topic is not None}
    cursor.execute(queries.event_pending_topics, {})
    waiting = [topic for (topic,) in cursor.fetchall() if not handled.get(topic)]
    if drainers and waiting:
        checks.append(
            Check(
                "topics without a drainer",
                "fail",
                f"pending events of {', '.join(waiting)}, which no drainer alive handles: they wait unclaimed",
                ("start a drainer that has their handler (drain_outbox --topic TOPIC), or register it",),
            )
        )
    elif drainers:
        checks.append(Check("topics without a drainer", "ok", "every topic with pending events has a drainer"))
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
