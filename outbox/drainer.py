"""The drainer: claim a batch, run its handlers, ack, in a loop that survives faults.

One cycle (``Drainer.run_once``):

1. **Claim** (one statement, its own transaction): up to ``batch_size`` claimable
   events in id order that nobody holds (``locked_by IS NULL``), ``FOR UPDATE SKIP
   LOCKED``; each gets ``attempts + 1`` and a lease (``locked_by`` = this drainer,
   ``locked_until`` = now + lease). The attempt is counted here so that a handler
   which kills the process still uses one up. About once a second (see
   SUSPECT_CLAIM_EVERY), up to ``SUSPECTS_PER_CLAIM`` **suspects** as well:
   claimable events whose previous claim never finished (``locked_by`` still set:
   the drainer died or stalled holding them). A suspect's attempt is not counted
   by the claim.
2. **Process the batch** (one transaction): re-lock the events this drainer still
   owns (a drainer that stalled past its lease finds the reclaimed ones gone), take
   the handlers' advisory locks in sorted order, hold back the events that have an
   earlier unfinished event of the same lock key (per-key order across drainers,
   see below), run each topic's batch handler in a savepoint, bisecting the batch
   when it raises so only the failing events are retried, then ack done / retry
   with backoff / failed, all in the transaction that holds the handler's writes.
   Events past ``max_attempts`` are failed without running.
3. **Process each suspect alone**: count its attempt in a transaction of its own,
   then process it as above. A poison event that kills its process is thus retried
   alone, uses up only its own attempts, and ends ``failed`` (abandoned) once they
   are gone; its neighbours in the batch that died with it cost nothing more.
4. **Held-back events**: while every earlier unfinished event of their key is in
   flight in another drainer, wait for it (polling, outside any transaction, up to
   WAIT_FOR_EARLIER), then process them; otherwise, or when the wait runs out,
   defer them (give them back unrun, attempt refunded, claimable again shortly).

Every ack is fenced by ``locked_by``; zero rows updated means the lease was lost,
and the effect is rolled back with the transaction, never applied twice.

Faults: a lost session (server restart, ``pg_terminate_backend``, the
``idle_in_transaction_session_timeout`` that ends the session of a drainer stopped
mid-transaction) is logged, the connection dropped and re-made with backoff, and
the events still leased to this drainer are released as suspects; the LISTEN
connection is re-made as soon as it is found broken. A drainer that cannot reach
the database at start-up says so and keeps trying; ``drain()`` (``--once``) gives
up after ``give_up_after`` seconds with ``DatabaseUnavailable``. A key lock that
stays busy past ``lock_timeout`` (another drainer stalled while holding it) gives
the batch back without using attempts. See docs/guarantees.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import secrets
import selectors
import signal
import socket
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from outbox.conf import OutboxSettings, get_settings
from outbox.exceptions import AbandonedEvent, OutboxError, UnknownTopic
from outbox.handlers import Event, HandlerRegistry, Registration, registry
from outbox.sql import array_literal, queries
from outbox.triggers import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)

#: Cap of the queue-depth count in the per-batch log line (it reads the claim index).
QUEUE_COUNT_CAP = 10_000
#: Recount the queue for the log line at most this often (seconds). In between,
#: the line shows the last count less the events this drainer finished since (or
#: "10000+" while at the cap). A count reads up to QUEUE_COUNT_CAP index entries:
#: 5-12 ms per batch in the bench, 1.4 ms of a 14 ms batch of one.
QUEUE_COUNT_EVERY = 1.0
#: Suspects (events whose last run never finished) are looked for at most this
#: often (seconds), in the next cycle after a full claim of them, and (in drain(),
#: before it returns) when a claim comes back empty: they exist only after a
#: drainer died, stalled or lost its connection, and the look costs a statement
#: (about 1 ms) in every cycle otherwise, on every drainer woken by a NOTIFY.
SUSPECT_CLAIM_EVERY = 1.0
#: Reconnect backoff after a lost connection, seconds.
RECONNECT_BACKOFF_BASE = 0.5
RECONNECT_BACKOFF_CAP = 30.0
#: Suspects claimed per cycle (each is then run alone, in its own transactions).
SUSPECTS_PER_CLAIM = 10
#: Per-key order: an event with an earlier unfinished event of its key waits for it.
#: While every such earlier event is in flight in another drainer (under a live
#: lease), this drainer keeps its own claim and looks again every WAIT_POLL seconds,
#: for at most WAIT_FOR_EARLIER seconds (and a quarter of the lease); the event in
#: the way is usually done within milliseconds. Otherwise (the earlier event is not
#: claimed yet, or the wait ran out: its drainer stalled), the event is deferred:
#: given back, claimable again after DEFER_DELAY_MIN seconds, doubled each time this
#: drainer defers it again, up to DEFER_DELAY_MAX, so blocked events do not crowd
#: every claim. A key lock that stayed busy past lock_timeout defers for the maximum.
WAIT_FOR_EARLIER = 2.0
WAIT_POLL = 0.01
DEFER_DELAY_MIN = 0.05
DEFER_DELAY_MAX = 1.0
#: Bound of the per-drainer memory of deferral counts (cleared when exceeded).
DEFER_MEMORY = 50_000
#: How long ``drain()`` (``drain_outbox --once``) keeps retrying an unreachable
#: database before it raises DatabaseUnavailable, unless the config says otherwise.
ONCE_GIVE_UP_AFTER = 60.0


class DatabaseUnavailable(OutboxError):
    """The database could not be reached; the drainer gave up."""


class _KeysBusy(Exception):
    """A key lock wait hit lock_timeout: another drainer holds the key (stalled?)."""


def make_identity() -> str:
    """``outbox:<host>:<pid>:<random>``, at most 63 characters (a Postgres name)."""
    host = socket.gethostname().split(".")[0][:32]
    return f"outbox:{host}:{os.getpid()}:{secrets.token_hex(3)}"[:63]


@dataclass(frozen=True)
class DrainerConfig:
    """One drainer's settings: the OUTBOX settings plus per-process choices."""

    settings: OutboxSettings = field(default_factory=OutboxSettings)
    topics: tuple[str, ...] | None = None
    retry_failed_every: float | None = None
    #: Seconds without a database connection after which the drainer stops trying
    #: and raises DatabaseUnavailable. None: ``drain()`` gives up after
    #: ONCE_GIVE_UP_AFTER, ``run()`` never does (it is meant to outlive outages).
    give_up_after: float | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        topics: Sequence[str] | None = None,
        retry_failed_every: float | None = None,
        give_up_after: float | None = None,
        **overrides: Any,
    ) -> DrainerConfig:
        base = get_settings()
        changes = {key: value for key, value in overrides.items() if value is not None}
        return cls(
            settings=base.replace(**changes) if changes else base,
            topics=tuple(topics) if topics else None,
            retry_failed_every=retry_failed_every,
            give_up_after=give_up_after,
        )


@dataclass
class DrainResult:
    """What one or more cycles did.

    ``lost``: leases another drainer took back. ``deferred``: events given back
    unrun (an earlier event of their key was unfinished, or a key lock was busy).
    """

    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0
    deferred: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def __iadd__(self, other: DrainResult) -> DrainResult:
        self.claimed += other.claimed
        self.done += other.done
        self.retried += other.retried
        self.failed += other.failed
        self.lost += other.lost
        self.deferred += other.deferred
        self.outcomes.update(other.outcomes)
        return self


@dataclass
class _GroupResult:
    """Per-topic outcome of one processing transaction."""

    registration: Registration | None
    label: str
    processed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    done: list[int] = field(default_factory=list)
    failures: dict[int, BaseException] = field(default_factory=dict)


def _format_error(exc: BaseException, limit: int) -> str:
    text = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    if len(text) > limit:
        text = text[: limit - 20] + f"... [{len(text) - limit + 20} more]"
    return text


#: SQLSTATEs (prefixes) of errors that end the session, whatever class psycopg
#: gives them: connection exceptions (08), operator intervention such as
#: pg_terminate_backend, a shutting-down or starting server (57P), and the
#: idle-in-transaction timeout (25P03, an InternalError) that hits a drainer which
#: was stopped in the middle of a transaction. Not 57014 (statement_timeout).
_SESSION_LOST_SQLSTATES = ("08", "57P", "25P03")


def _lost_connection(exc: BaseException) -> bool:
    """Did this error end the database session (as opposed to one statement)?"""
    for error in (exc, exc.__cause__):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_SESSION_LOST_SQLSTATES):
            return True
    return False


def _event_from_row(row: Sequence[Any]) -> Event:
    """An Event from ``id, topic, key, payload, attempts, created_at``."""
    payload = row[3]
    return Event(
        id=row[0],
        topic=row[1],
        key=row[2],
        payload=json.loads(payload) if isinstance(payload, str | bytes) else (payload or {}),
        attempts=row[4],
        created_at=row[5],
    )


@dataclass
class _Outage:
    """Consecutive connection failures of one loop, and whether it ever connected."""

    failures: int = 0
    since: float | None = None
    connected: bool = False


def _lock_namespace(group: str) -> int:
    """A stable int4 advisory-lock namespace for a lock group (a topic by default)."""
    return zlib.crc32(group.encode()) & 0x7FFFFFFF


class Drainer:
    """Drains the outbox with the handlers of ``registry``.

    ``run()`` loops until stopped (SIGTERM/SIGINT when run in the main thread);
    ``drain()`` processes everything available now and returns; ``run_once()`` is
    one claim-and-process cycle.
    """

    def __init__(
        self,
        config: DrainerConfig | None = None,
        *,
        handlers: HandlerRegistry | None = None,
        using: str = "default",
        identity: str | None = None,
    ) -> None:
        self.config = config or DrainerConfig.from_settings()
        self.settings = self.config.settings
        self.registry = handlers or registry
        self.using = using
        self.identity = identity or make_identity()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._listener: psycopg.Connection[Any] | None = None
        self._last_maintenance: dict[str, float] = {}
        self._deferrals: dict[int, int] = {}  # event id -> times this drainer deferred it
        self._shortest_defer: float | None = None  # since the last empty claim
        self._queue_counted: tuple[float, int] | None = None  # (when, count) of the last queue count
        self._suspects_claimed_at: float | None = None
        self._once = False  # in drain(): see _claim_batch
        self._previous_handlers: dict[int, Any] = {}
        connection_created.connect(self._on_connection_created, dispatch_uid=f"outbox-drainer-{id(self)}")

    # ------------------------------------------------------------------ lifecycle

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.using]

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self) -> None:
        """Finish the current batch, then return from ``run``/``drain``."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):  # pipe full or closed: already woken
            pass

    def close(self) -> None:
        connection_created.disconnect(dispatch_uid=f"outbox-drainer-{id(self)}")
        self._close_listener()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_connection_created(self, sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if connection.alias != self.using:
            return
        s = self.settings
        with connection.cursor() as cursor:
            cursor.execute(
                queries.drainer_session_setup,
                {
                    "application_name": self.identity,
                    "statement_timeout": str(int(s.statement_timeout * 1000)),
                    "lock_timeout": str(int(s.lock_timeout * 1000)),
                    "idle_timeout": str(int(s.lease * 1000)),
                },
            )

    @contextmanager
    def signals_handled(self) -> Iterator[None]:
        """SIGTERM/SIGINT: first one stops after the batch, a second one exits at once."""

        def handle(signum: int, frame: FrameType | None) -> None:
            if self._stopping:
                # Second signal: die now, by the same signal. The connection drops, the
                # open transaction rolls back and the lease hands the events back.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            logger.info(
                "drainer=%s signal=%s: finishing the current batch, then exiting (send it again to exit at once)",
                self.identity,
                signal.Signals(signum).name,
            )
            self.request_stop()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    # ------------------------------------------------------------------ loops

    def run(self) -> DrainResult:
        """Drain until ``request_stop()``; sleep on LISTEN (or poll) when idle."""
        total = DrainResult()
        logger.info(
            "drainer=%s started batch_size=%d max_attempts=%d lease=%ss interval=%ss notify=%s topics=%s",
            self.identity,
            self.settings.batch_size,
            self.settings.max_attempts,
            self.settings.lease,
            self.settings.poll_interval,
            self.settings.notify,
            ",".join(self.config.topics) if self.config.topics else "*",
        )
        outage = _Outage()
        while not self._stopping:
            try:
                self._connect(outage)
                self._maintenance()
                result = self.run_once()
                total += result
                if self._stopping:
                    break
                if result.claimed == 0:
                    # Events we deferred come back after their delay, and no NOTIFY
                    # announces them: look again then, not after the poll interval.
                    timeout = self.settings.poll_interval
                    if self._shortest_defer is not None:
                        timeout = min(timeout, self._shortest_defer)
                        self._shortest_defer = None
                    self._wait(timeout)
            except (DatabaseError, psycopg.Error) as exc:
                if not self._is_connection_fault(exc):
                    raise
                self._database_down(exc, outage, self.config.give_up_after)
        self._drop_connection()
        logger.info(
            "drainer=%s stopped claimed=%d done=%d retried=%d failed=%d lost=%d",
            self.identity,
            total.claimed,
            total.done,
            total.retried,
            total.failed,
            total.lost,
        )
        return total

    def drain(self) -> DrainResult:
        """Process every event available now, then return (``drain_outbox --once``).

        Events deferred on the way (behind an earlier event of their key) are waited
        for and taken too, so one ``drain()`` leaves nothing it could have done.
        """
        total = DrainResult()
        outage = _Outage()
        give_up_after = self.config.give_up_after
        if give_up_after is None:
            give_up_after = ONCE_GIVE_UP_AFTER
        maintained = False
        self._once = True  # an empty claim looks for suspects too, before drain() returns
        while not self._stopping:
            try:
                self._connect(outage)
                if not maintained:
                    self._maintenance(force=True)
                    maintained = True
                result = self.run_once()
                total += result
                if result.claimed == 0:
                    if self._shortest_defer is None:
                        break
                    # Some events we deferred are not claimable yet: wait for them.
                    self._sleep(self._shortest_defer)
                    self._shortest_defer = None
            except (DatabaseError, psycopg.Error) as exc:
                if not self._is_connection_fault(exc):
                    raise
                self._database_down(exc, outage, give_up_after)
        return total

    # ------------------------------------------------------------------ one cycle

    def run_once(self) -> DrainResult:
        """Claim one batch and process it. Returns what happened."""
        result = DrainResult()
        events, suspects = self._claim_batch()
        result.claimed = len(events) + len(suspects)
        if not result.claimed:
            return result
        max_attempts = self.settings.max_attempts
        # Counted at this claim: past max_attempts only if their attempts were used
        # up without a verdict (released after a lost connection).
        abandoned = [e for e in events if e.attempts > max_attempts]
        fresh = [e for e in events if e.attempts <= max_attempts]
        waiting: list[Event] = []
        waiting_suspects: list[Event] = []
        if abandoned:
            result += self._process(abandoned, abandoned=True)
        if fresh:
            done, waiting = self._process_batch(fresh, wait=True)
            result += done
        for index, suspect in enumerate(suspects):
            if self._stopping:
                # Not counted yet: hand them back as they were, suspects still.
                result.deferred += len(self._defer(suspects[index:], suspect=True, refund=0, delay=0.0))
                break
            done, still = self._process_suspect(suspect)
            result += done
            waiting_suspects += still
        # Events behind earlier events of their keys that other drainers are
        # handling right now (or that were among our suspects, done just above).
        if waiting:
            result += self._finish_waiting(waiting, suspect=False)
        if waiting_suspects:
            result += self._finish_waiting(waiting_suspects, suspect=True)
        return result

    def _finish_waiting(self, events: Sequence[Event], *, suspect: bool) -> DrainResult:
        """Run ``events`` once the earlier events of their keys are done; defer them if that takes too long.

        They stay claimed by us meanwhile (their attempt counted), so no other
        drainer takes them and none is claimed over and over. The wait is outside any
        transaction: the drainers handling the earlier events need our key locks.
        """
        result = DrainResult()
        deadline = time.monotonic() + min(WAIT_FOR_EARLIER, self.settings.lease / 4)
        pending = sorted(events, key=lambda e: e.id)
        while pending:
            if self._stopping or time.monotonic() >= deadline:
                delay = 0.0 if self._stopping else DEFER_DELAY_MAX
                result.deferred += len(self._defer(pending, suspect=suspect, refund=1, delay=delay))
                break
            self._sleep(WAIT_POLL)
            blocked = self._blocked(self._keyed(pending), [e.id for e in pending])
            free = [e for e in pending if not blocked.get(e.id, False)]
            if not free:
                continue  # all still behind events in flight elsewhere: keep waiting
            # Suspects still run one at a time; the others together.
            batch = free[:1] if suspect else pending
            done, still = self._process_batch(batch, suspect=suspect, wait=True)
            result += done
            taken = {e.id for e in batch}
            pending = sorted([*(e for e in pending if e.id not in taken), *still], key=lambda e: e.id)
        return result

    def _claim(self) -> list[Event]:
        """Claim a batch; the suspects claimed with it are included (their attempt not counted)."""
        events, suspects = self._claim_batch()
        return sorted([*events, *suspects], key=lambda e: e.id)

    def _claim_batch(self) -> tuple[list[Event], list[Event]]:
        """Claim: (events, attempt counted) and (suspects, not counted), by id.

        Each claim statement is a transaction of its own (autocommit): one round
        trip, where BEGIN, the statement and COMMIT were three, and nothing else
        needs to be atomic with it.
        """
        s = self.settings
        params = {
            "batch": s.batch_size,
            "limit": SUSPECTS_PER_CLAIM,
            "me": self.identity,
            "lease": s.lease,
            "topics": list(self.config.topics) if self.config.topics else None,
        }
        suspect_rows: list[Any] = []
        with self.connection.cursor() as cursor:
            cursor.execute(queries.event_claim_batch, params)
            rows = cursor.fetchall()
            now = time.monotonic()
            if (
                (not rows and self._once)
                or self._suspects_claimed_at is None
                or now - self._suspects_claimed_at >= SUSPECT_CLAIM_EVERY
            ):
                cursor.execute(queries.event_claim_suspects, params)
                suspect_rows = cursor.fetchall()
                # A full claim of suspects: there may be more, look again next cycle.
                self._suspects_claimed_at = None if len(suspect_rows) >= SUSPECTS_PER_CLAIM else now
        events = sorted((_event_from_row(row) for row in rows), key=lambda e: e.id)
        suspects = sorted((_event_from_row(row) for row in suspect_rows), key=lambda e: e.id)
        return events, suspects

    def _process_suspect(self, event: Event) -> tuple[DrainResult, list[Event]]:
        """Run one suspect alone, its attempt counted and committed first.

        Returns what happened and, if it must wait for an earlier event of its key,
        the suspect (still claimed, attempt counted).
        """
        if event.attempts >= self.settings.max_attempts:
            # Every attempt used up by runs that never finished: fail it unrun.
            return self._process([event], abandoned=True), []
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(queries.event_count_attempt, {"id": event.id, "me": self.identity})
            row = cursor.fetchone()
        if row is None:
            logger.warning(
                "drainer=%s lease lost on suspect event=%s before it ran, another drainer has it now",
                self.identity,
                event.id,
            )
            return DrainResult(lost=1), []
        return self._process_batch([dataclasses.replace(event, attempts=int(row[0]))], suspect=True, wait=True)

    def _defer(self, events: Sequence[Event], *, suspect: bool, refund: int, delay: float | None = None) -> list[int]:
        """Give events back unrun (see event_defer). Returns their ids.

        ``delay``: seconds before they are claimable again; None: per event, from
        DEFER_DELAY_MIN doubling with each deferral by this drainer.
        """
        if delay is None:
            if len(self._deferrals) > DEFER_MEMORY:
                self._deferrals.clear()
            delays = []
            for event in events:
                times = self._deferrals.get(event.id, 0)
                self._deferrals[event.id] = times + 1
                delays.append(min(DEFER_DELAY_MAX, DEFER_DELAY_MIN * 2**times))
        else:
            delays = [delay] * len(events)
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(
                queries.event_defer,
                {
                    "ids": [e.id for e in events],
                    "suspects": [suspect] * len(events),
                    "refunds": [refund] * len(events),
                    "delays": delays,
                    "me": self.identity,
                },
            )
            deferred = [row[0] for row in cursor.fetchall()]
        if deferred and delays:
            shortest = min(delays)
            self._shortest_defer = shortest if self._shortest_defer is None else min(self._shortest_defer, shortest)
        return deferred

    def _process(self, events: Sequence[Event], *, abandoned: bool = False, suspect: bool = False) -> DrainResult:
        """Run ``events`` (all claimed by this drainer) in one transaction and ack them.

        ``suspect``: the events are suspects (deferred ones stay suspects). Events
        behind an unfinished earlier event of their key are deferred.
        """
        return self._process_batch(events, abandoned=abandoned, suspect=suspect)[0]

    def _process_batch(
        self, events: Sequence[Event], *, abandoned: bool = False, suspect: bool = False, wait: bool = False
    ) -> tuple[DrainResult, list[Event]]:
        """``_process``; with ``wait``, the events worth waiting for are returned, still claimed.

        Worth waiting for: every earlier unfinished event of its key is in flight in
        another drainer (see ``_blocked``). The others that are blocked are deferred.
        """
        result = DrainResult()
        groups: list[_GroupResult] = []
        waiting: list[Event] = []
        try:
            with transaction.atomic(using=self.using):
                try:
                    with self.connection.cursor() as cursor:
                        cursor.execute(
                            queries.event_lock_owned, {"ids": array_literal(e.id for e in events), "me": self.identity}
                        )
                        owned = {row[0] for row in cursor.fetchall()}
                except OperationalError as exc:
                    if not isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                        raise
                    # Another transaction has held these rows past lock_timeout: a
                    # drainer that reclaimed them and stalled. Leave them: if they are
                    # still ours, our lease hands them back when it runs out.
                    logger.warning(
                        "drainer=%s %d claimed event(s) stayed locked by another session past lock_timeout "
                        "(%ss), leaving them: ids=%s",
                        self.identity,
                        len(events),
                        self.settings.lock_timeout,
                        ",".join(str(e.id) for e in events[:20]),
                    )
                    transaction.set_rollback(True, using=self.using)
                    return result, []
                lost = [e.id for e in events if e.id not in owned]
                if lost:
                    result.lost += len(lost)
                    logger.warning(
                        "drainer=%s lease lost on %d event(s), another drainer has them now, not applying: ids=%s",
                        self.identity,
                        len(lost),
                        ",".join(map(str, lost[:20])),
                    )
                mine = [e for e in events if e.id in owned]
                if not mine:
                    return result, []
                deferred: list[Event] = []
                if abandoned:
                    group = _GroupResult(registration=None, label="Outbox")
                    for event in mine:
                        group.failures[event.id] = AbandonedEvent(
                            f"claimed {event.attempts} times (max_attempts={self.settings.max_attempts}) "
                            "without completing: its drainer died or stalled past its lease while handling it"
                        )
                        group.processed += 1
                    groups.append(group)
                else:
                    groups, blocked = self._run_handlers(mine)
                    for event in mine:
                        if event.id in blocked:
                            (waiting if wait and blocked[event.id] else deferred).append(event)
                by_id = {e.id: e for e in mine}
                for group in groups:
                    self._ack(group, by_id, result)
                if self._deferrals:
                    unrun = {e.id for e in deferred} | {e.id for e in waiting}
                    for event in mine:
                        if event.id not in unrun:
                            self._deferrals.pop(event.id, None)
                if deferred:
                    # Their attempt was counted (at the claim, or just before a
                    # suspect runs) but they did not run: refund it.
                    result.deferred += len(self._defer(deferred, suspect=suspect, refund=1))
                    logger.debug(
                        "drainer=%s deferred %d event(s) behind earlier unfinished events of their keys: ids=%s",
                        self.identity,
                        len(deferred),
                        ",".join(str(e.id) for e in deferred[:20]),
                    )
        except _KeysBusy as exc:
            # Rolled back before any handler ran. Waiting is not the events' fault:
            # give them back with the attempt refunded.
            freed = self._defer(events, suspect=suspect, refund=1, delay=DEFER_DELAY_MAX)
            logger.warning(
                "drainer=%s a key lock stayed busy past lock_timeout (%ss), another drainer holds it "
                "(stalled in a transaction?); gave %d event(s) back without using an attempt: %s",
                self.identity,
                self.settings.lock_timeout,
                len(freed),
                exc,
            )
            return DrainResult(deferred=len(freed)), []
        self._log_groups(groups)
        return result, waiting

    def _run_handlers(self, events: Sequence[Event]) -> tuple[list[_GroupResult], dict[int, bool]]:
        """Lock the keys, run the handlers of the events free to run.

        Returns the groups and the events that must wait for an earlier event of
        their key (id -> whether that event is in flight elsewhere, see _blocked).
        """
        by_topic: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_topic[event.topic].append(event)
        groups: list[_GroupResult] = []
        lockable: list[tuple[_GroupResult, list[Event]]] = []
        namespaces: list[int] = []
        keys: list[int] = []
        keyed: list[tuple[Event, int, int]] = []
        for topic, topic_events in by_topic.items():
            registration = self.registry.get(topic)
            group = _GroupResult(
                registration=registration,
                label=registration.label if registration else topic,
                processed=len(topic_events),
            )
            groups.append(group)
            if registration is None:
                known = ", ".join(self.registry.topics()) or "none"
                for event in topic_events:
                    group.failures[event.id] = UnknownTopic(
                        f"no handler is registered for topic {topic!r} (registered: {known})"
                    )
                continue
            runnable: list[Event] = []
            if registration.lock_key is not None:
                namespace = _lock_namespace(registration.lock_group or topic)
                for event in topic_events:
                    try:
                        key = int(registration.lock_key(event)) % 0x7FFFFFFF
                    except Exception as exc:  # a broken payload fails this event only
                        group.failures[event.id] = exc
                        continue
                    namespaces.append(namespace)
                    keys.append(key)
                    keyed.append((event, namespace, key))
                    runnable.append(event)
            else:
                runnable = list(topic_events)
            lockable.append((group, runnable))
        blocked: dict[int, bool] = {}
        if keys:
            try:
                with self.connection.cursor() as cursor:
                    cursor.execute(
                        queries.event_lock_keys, {"namespaces": array_literal(namespaces), "keys": array_literal(keys)}
                    )
            except OperationalError as exc:
                if isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
                    raise _KeysBusy(str(exc).strip()) from exc
                raise
            blocked = self._blocked(keyed, [e.id for e in events])
        for group, runnable in lockable:
            if group.registration is None:  # unknown topics were failed above
                continue
            if blocked:
                held = [e for e in runnable if e.id in blocked]
                if held:
                    group.processed -= len(held)
                    runnable = [e for e in runnable if e.id not in blocked]
            outcomes, failures = self._bisect(group.registration, runnable)
            group.outcomes.update(outcomes)
            group.failures.update(failures)
            group.done.extend(e.id for e in runnable if e.id not in failures)
        return groups, blocked

    def _keyed(self, events: Sequence[Event]) -> list[tuple[Event, int, int]]:
        """(event, lock namespace, lock key) of the events whose topic has a lock key."""
        keyed: list[tuple[Event, int, int]] = []
        for event in events:
            registration = self.registry.get(event.topic)
            if registration is None or registration.lock_key is None:
                continue
            try:
                key = int(registration.lock_key(event)) % 0x7FFFFFFF
            except Exception:  # noqa: S112 (a broken payload fails when the event runs)
                continue
            keyed.append((event, _lock_namespace(registration.lock_group or event.topic), key))
        return keyed

    def _blocked(self, keyed: Sequence[tuple[Event, int, int]], mine: Sequence[int]) -> dict[int, bool]:
        """Our events that an earlier unfinished event of the same key must precede.

        Per-key order across drainers: the key locks serialise the handlers, but
        two drainers may hold events of one key in two batches, and the later batch
        may get the lock first (or the earlier events wait as suspects, or were given
        back). Run with the key locks held, the events it sees as unfinished are not
        being handled by anyone at that moment. Returns event id -> True when every
        earlier unfinished event of its key is under a live lease of another drainer
        (worth waiting for), False when one is not (not claimed yet, deferred, or
        ours).
        """
        if not keyed:
            return {}
        namespaces = {namespace for _, namespace, _ in keyed}
        topics = [
            topic
            for topic, registration in self.registry.snapshot().items()
            if registration.lock_key is not None and _lock_namespace(registration.lock_group or topic) in namespaces
        ]
        with self.connection.cursor() as cursor:
            cursor.execute(
                queries.event_list_earlier_unfinished,
                {
                    "before": max(event.id for event, _, _ in keyed),
                    "mine": array_literal(mine),
                    "topics": topics,
                    "me": self.identity,
                },
            )
            rows = cursor.fetchall()
        first: dict[tuple[int, int], int] = {}  # earliest unfinished event of each key
        first_idle: dict[tuple[int, int], int] = {}  # earliest one not in flight elsewhere
        for row in rows:
            other = _event_from_row(row)
            registration = self.registry.get(other.topic)
            if registration is None or registration.lock_key is None:
                continue
            try:
                key = int(registration.lock_key(other)) % 0x7FFFFFFF
            except Exception:  # noqa: S112 (a broken payload fails that event on its own)
                continue
            namespace = _lock_namespace(registration.lock_group or other.topic)
            first.setdefault((namespace, key), other.id)  # rows come in id order: the earliest
            if not row[6]:
                first_idle.setdefault((namespace, key), other.id)
        return {
            event.id: first_idle.get((namespace, key), event.id) >= event.id
            for event, namespace, key in keyed
            if first.get((namespace, key), event.id) < event.id
        }

    def _bisect(
        self, registration: Registration, events: Sequence[Event]
    ) -> tuple[Counter[str], dict[int, BaseException]]:
        """Run the batch in a savepoint; on error split it until the culprits are alone."""
        if not events:
            return Counter(), {}
        try:
            with transaction.atomic(using=self.using):
                outcomes = registration.handle_batch(events)
            return Counter(dict(outcomes or {})), {}
        except Exception as exc:
            if self._connection_broken() or _lost_connection(exc):
                raise  # not the events' fault: the session is gone
            if len(events) == 1:
                logger.debug("event=%s handler raised: %r", events[0].id, exc)
                return Counter(), {events[0].id: exc}
            middle = len(events) // 2
            left_outcomes, left_failures = self._bisect(registration, events[:middle])
            right_outcomes, right_failures = self._bisect(registration, events[middle:])
            return left_outcomes + right_outcomes, {**left_failures, **right_failures}

    def _connection_broken(self) -> bool:
        conn = self.connection
        raw = conn.connection
        return raw is None or bool(getattr(raw, "closed", True)) or bool(getattr(raw, "broken", False))

    def _ack(self, group: _GroupResult, by_id: dict[int, Event], result: DrainResult) -> None:
        s = self.settings
        with self.connection.cursor() as cursor:
            if group.done:
                cursor.execute(queries.event_ack_done, {"ids": array_literal(group.done), "me": self.identity})
                acked = cursor.rowcount
                result.done += acked
                self._check_fence("done", len(group.done), acked)
            retry_ids: list[int] = []
            retry_errors: list[str] = []
            retry_delays: list[float] = []
            failed_events: list[Event] = []
            failed_errors: list[str] = []
            for event_id, exc in group.failures.items():
                event = by_id[event_id]
                error = _format_error(exc, s.error_max_length)
                if event.attempts >= s.max_attempts or isinstance(exc, AbandonedEvent):
                    failed_events.append(event)
                    failed_errors.append(error)
                else:
                    retry_ids.append(event_id)
                    retry_errors.append(error)
                    retry_delays.append(self.backoff(event.attempts))
            if retry_ids:
                cursor.execute(
                    queries.event_ack_retry,
                    {"ids": retry_ids, "errors": retry_errors, "delays": retry_delays, "me": self.identity},
                )
                result.retried += cursor.rowcount
                self._check_fence("retry", len(retry_ids), cursor.rowcount)
                for event_id, error in zip(retry_ids, retry_errors, strict=True):
                    logger.warning(
                        "event=%s topic=%s attempt=%d/%d failed, retrying: %s",
                        event_id,
                        by_id[event_id].topic,
                        by_id[event_id].attempts,
                        s.max_attempts,
                        error,
                    )
            if failed_events:
                cursor.execute(
                    queries.event_ack_failed,
                    {"ids": [e.id for e in failed_events], "errors": failed_errors, "me": self.identity},
                )
                result.failed += cursor.rowcount
                self._check_fence("failed", len(failed_events), cursor.rowcount)
                for event, error in zip(failed_events, failed_errors, strict=True):
                    logger.error(
                        "event=%s topic=%s failed after %d attempt(s): %s",
                        event.id,
                        event.topic,
                        event.attempts,
                        error,
                    )
                self._on_failed(failed_events, failed_errors)
        result.outcomes.update(group.outcomes)

    def _on_failed(self, events: Sequence[Event], errors: Sequence[str]) -> None:
        by_topic: dict[str, list[tuple[Event, str]]] = defaultdict(list)
        for event, error in zip(events, errors, strict=True):
            by_topic[event.topic].append((event, error))
        for topic, items in by_topic.items():
            registration = self.registry.get(topic)
            if registration is None or registration.on_failed is None:
                continue
            for event, error in items:
                try:
                    with transaction.atomic(using=self.using):
                        registration.on_failed([event], error)
                except Exception as exc:
                    if self._connection_broken() or _lost_connection(exc):
                        raise
                    logger.exception("event=%s topic=%s on_failed callback raised", event.id, topic)

    def _check_fence(self, what: str, expected: int, updated: int) -> None:
        if updated != expected:
            logger.warning(
                "drainer=%s ack %s updated %d of %d event(s): lease lost on the rest",
                self.identity,
                what,
                updated,
                expected,
            )

    def backoff(self, attempts: int) -> float:
        """Seconds before retry number ``attempts``: exponential, capped, with jitter."""
        s = self.settings
        delay = min(s.backoff_cap, s.backoff_base * (2 ** max(attempts - 1, 0)))
        return delay * (1 + s.backoff_jitter * random.random())  # noqa: S311 (jitter, not crypto)

    def _log_groups(self, groups: Sequence[_GroupResult]) -> None:
        if not groups or not logger.isEnabledFor(logging.INFO):
            return
        remaining = self.queue_remaining(sum(len(g.done) + len(g.failures) for g in groups))
        for group in groups:
            names = group.registration.outcome_names if group.registration else ()
            parts = [f"processed={group.processed}"]
            parts += [f"{name}={group.outcomes.get(name, 0)}" for name in names]
            parts += [f"{name}={count}" for name, count in sorted(group.outcomes.items()) if name not in names]
            parts.append(f"failed={len(group.failures)}")
            parts.append(f"queue_remaining={remaining}")
            logger.info("%s: %s", group.label, " ".join(parts))

    def queue_remaining(self, finished: int = 0) -> str:
        """Pending events (leased ones included), capped at QUEUE_COUNT_CAP.

        Counted at most every QUEUE_COUNT_EVERY seconds; ``finished``: events this
        drainer finished since the last call, taken off the last count in between.
        """
        now = time.monotonic()
        if self._queue_counted is not None and now - self._queue_counted[0] < QUEUE_COUNT_EVERY:
            count = self._queue_counted[1]
            if count >= QUEUE_COUNT_CAP:
                return f"{QUEUE_COUNT_CAP}+"
            count = max(count - finished, 0)
            self._queue_counted = (self._queue_counted[0], count)
            return str(count)
        with self.connection.cursor() as cursor:
            cursor.execute(queries.event_count_pending_capped, {"cap": QUEUE_COUNT_CAP})
            row = cursor.fetchone()
        count = int(row[0]) if row else 0
        self._queue_counted = (now, count)
        return f"{count}+" if count >= QUEUE_COUNT_CAP else str(count)

    # ------------------------------------------------------------------ maintenance

    def _due(self, name: str, every: float | None, force: bool) -> bool:
        if not every or every <= 0:
            return False
        now = time.monotonic()
        last = self._last_maintenance.get(name)
        if force or last is None or now - last >= every:
            self._last_maintenance[name] = now
            return True
        return False

    def _maintenance(self, force: bool = False) -> None:
        s = self.settings
        if self._due("rescue", s.rescue_interval, force):
            self.rescue_orphaned()
        if self._due("retry_failed", self.config.retry_failed_every, force):
            self.retry_failed()
        if self._due("purge", s.purge_interval, force):
            self.purge_done(max_chunks=10)

    def rescue_orphaned(self) -> int:
        """Free leases whose holder's session is gone. Returns how many."""
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(queries.event_rescue_orphaned, {})
            rows = cursor.fetchall()
        if rows:
            self._suspects_claimed_at = None  # suspects now: look for them in the next claim
            holders = sorted({row[1] for row in rows})
            logger.warning(
                "drainer=%s rescued %d event(s) leased by drainer(s) no longer connected: %s",
                self.identity,
                len(rows),
                ", ".join(holders),
            )
        return len(rows)

    def retry_failed(self) -> int:
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            topics = list(self.config.topics) if self.config.topics else None
            cursor.execute(queries.event_retry_failed, {"topics": topics})
            count = cursor.rowcount
        if count:
            logger.info("drainer=%s put %d failed event(s) back to pending", self.identity, count)
        return count

    def purge_done(self, max_chunks: int | None = None) -> int:
        """Delete done events older than RETENTION, in chunks. Returns how many."""
        s = self.settings
        deleted = 0
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
                cursor.execute(queries.event_purge_done, {"older_than": s.retention, "chunk": s.purge_chunk})
                count = cursor.rowcount
            deleted += count
            chunks += 1
            if count < s.purge_chunk:
                break
        if deleted:
            logger.info("drainer=%s purged %d done event(s) older than %ss", self.identity, deleted, s.retention)
        return deleted

    # ------------------------------------------------------------------ connections

    def _ensure_connected(self) -> None:
        self.connection.ensure_connection()

    def _connect(self, outage: _Outage) -> None:
        """Connect if needed; after failures, reconnect and say so."""
        if not outage.failures:
            self._ensure_connected()
            outage.connected = True
            return
        if outage.connected:
            self._reconnect(outage.failures)
        else:
            self._ensure_connected()
            logger.info(
                "drainer=%s connected to the database %s after %d failed attempt(s) in %.1fs",
                self.identity,
                self._where(),
                outage.failures,
                time.monotonic() - (outage.since or time.monotonic()),
            )
        outage.connected = True
        outage.failures = 0
        outage.since = None

    def _reconnect(self, failures: int) -> None:
        self.connection.ensure_connection()
        # Our previous session is gone with its transaction, but our name lives on in
        # this new one, so the dead-holder rescue would not free what we had claimed.
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(queries.event_release_mine, {"me": self.identity})
            freed = cursor.rowcount
        self._suspects_claimed_at = None  # they are suspects now: look for them in the next claim
        logger.info(
            "drainer=%s reconnected after %d failure(s); released %d event(s) it had claimed",
            self.identity,
            failures,
            freed,
        )

    def _is_connection_fault(self, exc: BaseException) -> bool:
        """A lost or unreachable database (retry), rather than a bug (raise)?

        Operational errors cover refused connections, restarts, terminated backends
        and timeouts; anything else counts when it left the connection broken, e.g.
        the server ending an idle-in-transaction session (SQLSTATE 25P03, which
        psycopg raises as an InternalError) while this process was stopped.
        """
        if isinstance(exc, OperationalError | InterfaceError | psycopg.OperationalError | psycopg.InterfaceError):
            return True
        return _lost_connection(exc) or self._connection_broken()

    def _database_down(self, exc: BaseException, outage: _Outage, give_up_after: float | None) -> None:
        """Log a connection fault, drop the connection, back off; give up past the budget."""
        outage.failures += 1
        now = time.monotonic()
        if outage.since is None:
            outage.since = now
        elapsed = now - outage.since
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._drop_connection()
        if give_up_after is not None and elapsed >= give_up_after:
            raise DatabaseUnavailable(
                f"cannot reach the database {self._where()}: gave up after {elapsed:.0f}s and "
                f"{outage.failures} attempt(s); last error: {reason}"
            ) from exc
        delay = self._backoff_delay(outage.failures)
        if give_up_after is not None:
            delay = min(delay, max(give_up_after - elapsed, 0.0))
        if outage.connected:
            logger.warning(
                "drainer=%s database error, reconnecting in %.1fs (attempt %d): %s",
                self.identity,
                delay,
                outage.failures,
                reason,
            )
        else:
            logger.warning(
                "drainer=%s cannot connect to the database %s, retrying in %.1fs (attempt %d%s): %s",
                self.identity,
                self._where(),
                delay,
                outage.failures,
                f", giving up after {give_up_after:.0f}s" if give_up_after is not None else "",
                reason,
            )
        self._sleep(delay)

    def _where(self) -> str:
        """host:port/dbname of this drainer's database (no credentials)."""
        s = self.connection.settings_dict
        return f"{s.get('HOST') or 'localhost'}:{s.get('PORT') or 5432}/{s.get('NAME')}"

    def _drop_connection(self) -> None:
        try:
            self.connection.close()
        except DatabaseError:
            pass
        conn = self.connection
        conn.connection = None  # a broken socket must not be reused
        conn.in_atomic_block = False
        conn.needs_rollback = False
        conn.savepoint_ids = []
        conn.atomic_blocks = []
        self._close_listener()

    def _backoff_delay(self, failures: int) -> float:
        delay = min(RECONNECT_BACKOFF_CAP, RECONNECT_BACKOFF_BASE * (2 ** (failures - 1)))
        return delay * (1 + 0.2 * random.random())  # noqa: S311

    # ------------------------------------------------------------------ waiting

    def _listen(self) -> psycopg.Connection[Any] | None:
        if not self.settings.notify:
            return None
        if self._listener is None or self._listener.closed:
            params = self.connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params.pop("server_side_binding", None)
            params["application_name"] = self.identity
            params["autocommit"] = True
            self._listener = psycopg.connect(**params)
            self._listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self._listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg.Error:
                pass
            self._listener = None

    def _wait(self, timeout: float) -> None:
        """Sleep until a NOTIFY, a stop request, or ``timeout`` seconds.

        A LISTEN connection found broken (server restart, terminated backend) is
        closed and made again at once; the wait then ends without sleeping, since
        a notification sent while it was down is lost: the next claim looks.
        """
        try:
            listener = self._listen()
        except psycopg.Error as exc:
            logger.warning("drainer=%s cannot LISTEN, polling instead: %s", self.identity, exc)
            self._close_listener()
            listener = None
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            if listener is not None:
                # Notifications that arrived while we were busy are already buffered.
                try:
                    if any(True for _ in listener.notifies(timeout=0)):
                        return
                except psycopg.Error as exc:
                    self._listener_lost(exc)
                    return
            if listener is not None:
                selector.register(listener.fileno(), selectors.EVENT_READ)
            ready = selector.select(timeout)
        for key, _ in ready:
            if key.fd == self._wake_r:
                os.read(self._wake_r, 1024)
            elif listener is not None:
                try:
                    for _ in listener.notifies(timeout=0):
                        pass
                except psycopg.Error as exc:
                    self._listener_lost(exc)

    def _listener_lost(self, exc: psycopg.Error) -> None:
        """The LISTEN connection broke: log it and make a new one now (or poll)."""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._close_listener()
        try:
            self._listen()
        except psycopg.Error as again:
            self._close_listener()
            logger.warning(
                "drainer=%s LISTEN connection lost (%s) and cannot be made again, polling until it can: %s",
                self.identity,
                reason,
                again,
            )
            return
        logger.warning("drainer=%s LISTEN connection lost (%s), listening again", self.identity, reason)

    def _sleep(self, seconds: float) -> None:
        """Sleep, woken early by a stop request."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            if selector.select(seconds):
                os.read(self._wake_r, 1024)


def drain(config: DrainerConfig | None = None, **kwargs: Any) -> DrainResult:
    """Drain everything available now with a throwaway drainer."""
    drainer = Drainer(config, **kwargs)
    try:
        return drainer.drain()
    finally:
        drainer.close()
