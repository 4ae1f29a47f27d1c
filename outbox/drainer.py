"""The drainer: claim a batch, run its handlers, ack, in a loop that survives faults.

One cycle (``Drainer.run_once``):

1. **Claim** (own short transaction): up to ``batch_size`` claimable events in id
   order, ``FOR UPDATE SKIP LOCKED``; each gets ``attempts + 1`` and a lease
   (``locked_by`` = this drainer, ``locked_until`` = now + lease). The attempt is
   counted here so that a handler which kills the process still uses one up.
2. **Sort**: events claimed before without finishing (``attempts > 1``: a drainer
   died holding them) are suspects. Only the first suspect is kept; the others are
   released with their attempt refunded, so a poison event that kills its process
   is retried alone and never takes its neighbours' attempts with it. Events past
   ``max_attempts`` are failed without running.
3. **Process** (one transaction): re-lock the events this drainer still owns (a
   drainer that stalled past its lease finds the reclaimed ones gone), take the
   handlers' advisory locks in sorted order, run each topic's batch handler in a
   savepoint, bisecting the batch when it raises so only the failing events are
   retried, then ack done / retry with backoff / failed, all in the transaction
   that holds the handler's writes.

Every ack is fenced by ``locked_by``; zero rows updated means the lease was lost,
and the effect is rolled back with the transaction, never applied twice.
"""

from __future__ import annotations

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
from outbox.exceptions import AbandonedEvent, UnknownTopic
from outbox.handlers import Event, HandlerRegistry, Registration, registry
from outbox.sql import queries
from outbox.triggers import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)

#: Cap of the queue-depth count in the per-batch log line (it reads the claim index).
QUEUE_COUNT_CAP = 10_000
#: Reconnect backoff after a lost connection, seconds.
RECONNECT_BACKOFF_BASE = 0.5
RECONNECT_BACKOFF_CAP = 30.0


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

    @classmethod
    def from_settings(
        cls,
        *,
        topics: Sequence[str] | None = None,
        retry_failed_every: float | None = None,
        **overrides: Any,
    ) -> DrainerConfig:
        base = get_settings()
        changes = {key: value for key, value in overrides.items() if value is not None}
        return cls(
            settings=base.replace(**changes) if changes else base,
            topics=tuple(topics) if topics else None,
            retry_failed_every=retry_failed_every,
        )


@dataclass
class DrainResult:
    """What one or more cycles did. ``lost``: leases another drainer took back."""

    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def __iadd__(self, other: DrainResult) -> DrainResult:
        self.claimed += other.claimed
        self.done += other.done
        self.retried += other.retried
        self.failed += other.failed
        self.released += other.released
        self.lost += other.lost
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
        failures = 0
        while not self._stopping:
            try:
                if failures:
                    self._reconnect(failures)
                else:
                    self._ensure_connected()
                self._maintenance()
                result = self.run_once()
                total += result
                failures = 0
                if result.claimed == 0 and not self._stopping:
                    self._wait(self.settings.poll_interval)
            except (OperationalError, InterfaceError, psycopg.OperationalError) as exc:
                failures += 1
                delay = self._backoff_delay(failures)
                logger.warning(
                    "drainer=%s database error, reconnecting in %.1fs (attempt %d): %s",
                    self.identity,
                    delay,
                    failures,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                )
                self._drop_connection()
                self._sleep(delay)
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
        """Process every event available now, then return (``drain_outbox --once``)."""
        total = DrainResult()
        failures = 0
        maintained = False
        while not self._stopping:
            try:
                if failures:
                    self._reconnect(failures)
                else:
                    self._ensure_connected()
                if not maintained:
                    self._maintenance(force=True)
                    maintained = True
                result = self.run_once()
                total += result
                failures = 0
                if result.claimed == 0:
                    break
            except (OperationalError, InterfaceError, psycopg.OperationalError) as exc:
                failures += 1
                delay = self._backoff_delay(failures)
                logger.warning(
                    "drainer=%s database error, retrying in %.1fs (attempt %d): %s",
                    self.identity,
                    delay,
                    failures,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                )
                self._drop_connection()
                self._sleep(delay)
        return total

    # ------------------------------------------------------------------ one cycle

    def run_once(self) -> DrainResult:
        """Claim one batch and process it. Returns what happened."""
        result = DrainResult()
        events = self._claim()
        result.claimed = len(events)
        if not events:
            return result
        max_attempts = self.settings.max_attempts
        abandoned = [e for e in events if e.attempts > max_attempts]
        fresh = [e for e in events if e.attempts == 1]
        suspects = [e for e in events if 1 < e.attempts <= max_attempts]
        if len(suspects) > 1:
            # Claimed before by a drainer that never finished: one of them may kill
            # its process. Keep one, give the rest back with their claim refunded.
            released = self._release(suspects[1:], refund=True)
            result.released += len(released)
            suspects = suspects[:1]
        if abandoned:
            result += self._process(abandoned, abandoned=True)
        if fresh:
            result += self._process(fresh)
        if suspects:
            result += self._process(suspects)
        return result

    def _claim(self) -> list[Event]:
        s = self.settings
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(
                queries.event_claim_batch,
                {
                    "batch": s.batch_size,
                    "me": self.identity,
                    "lease": s.lease,
                    "topics": list(self.config.topics) if self.config.topics else None,
                },
            )
            rows = cursor.fetchall()
        events = [
            Event(
                id=row[0],
                topic=row[1],
                key=row[2],
                payload=json.loads(row[3]) if isinstance(row[3], str | bytes) else (row[3] or {}),
                attempts=row[4],
                created_at=row[5],
            )
            for row in rows
        ]
        events.sort(key=lambda e: e.id)
        return events

    def _release(self, events: Sequence[Event], *, refund: bool) -> list[int]:
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(
                queries.event_release,
                {"ids": [e.id for e in events], "me": self.identity, "refund": 1 if refund else 0},
            )
            return [row[0] for row in cursor.fetchall()]

    def _process(self, events: Sequence[Event], *, abandoned: bool = False) -> DrainResult:
        result = DrainResult()
        groups: list[_GroupResult] = []
        with transaction.atomic(using=self.using):
            with self.connection.cursor() as cursor:
                cursor.execute(queries.event_lock_owned, {"ids": [e.id for e in events], "me": self.identity})
                owned = {row[0] for row in cursor.fetchall()}
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
                return result
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
                groups = self._run_handlers(mine)
            by_id = {e.id: e for e in mine}
            for group in groups:
                self._ack(group, by_id, result)
        self._log_groups(groups)
        return result

    def _run_handlers(self, events: Sequence[Event]) -> list[_GroupResult]:
        by_topic: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_topic[event.topic].append(event)
        groups: list[_GroupResult] = []
        lockable: list[tuple[_GroupResult, list[Event]]] = []
        namespaces: list[int] = []
        keys: list[int] = []
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
                    runnable.append(event)
            else:
                runnable = list(topic_events)
            lockable.append((group, runnable))
        if keys:
            with self.connection.cursor() as cursor:
                cursor.execute(queries.event_lock_keys, {"namespaces": namespaces, "keys": keys})
        for group, runnable in lockable:
            if group.registration is None:  # unknown topics were failed above
                continue
            outcomes, failures = self._bisect(group.registration, runnable)
            group.outcomes.update(outcomes)
            group.failures.update(failures)
            group.done.extend(e.id for e in runnable if e.id not in failures)
        return groups

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
            if self._connection_broken():
                raise
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
                cursor.execute(queries.event_ack_done, {"ids": group.done, "me": self.identity})
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
                except Exception:
                    if self._connection_broken():
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
        remaining = self.queue_remaining()
        for group in groups:
            names = group.registration.outcome_names if group.registration else ()
            parts = [f"processed={group.processed}"]
            parts += [f"{name}={group.outcomes.get(name, 0)}" for name in names]
            parts += [f"{name}={count}" for name, count in sorted(group.outcomes.items()) if name not in names]
            parts.append(f"failed={len(group.failures)}")
            parts.append(f"queue_remaining={remaining}")
            logger.info("%s: %s", group.label, " ".join(parts))

    def queue_remaining(self) -> str:
        """Pending events (leased ones included), capped at QUEUE_COUNT_CAP."""
        with self.connection.cursor() as cursor:
            cursor.execute(queries.event_count_pending_capped, {"cap": QUEUE_COUNT_CAP})
            row = cursor.fetchone()
        count = int(row[0]) if row else 0
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

    def _reconnect(self, failures: int) -> None:
        self.connection.ensure_connection()
        # Our previous session is gone with its transaction, but our name lives on in
        # this new one, so the dead-holder rescue would not free what we had claimed.
        with transaction.atomic(using=self.using), self.connection.cursor() as cursor:
            cursor.execute(queries.event_release_mine, {"me": self.identity})
            freed = cursor.rowcount
        logger.info(
            "drainer=%s reconnected after %d failure(s); released %d event(s) it had claimed",
            self.identity,
            failures,
            freed,
        )

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
        """Sleep until a NOTIFY, a stop request, or ``timeout`` seconds."""
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
                except psycopg.Error:
                    self._close_listener()
                    listener = None
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
                except psycopg.Error:
                    self._close_listener()

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
