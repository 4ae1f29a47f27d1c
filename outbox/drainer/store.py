"""Every statement the drainer runs, one typed method each: the only module with cursors.

The statements are named blocks of ``outbox/sql/queries.sql``. They run on the raw
psycopg connection under Django's (so inside the handler's transaction), through
one client-side-binding cursor per connection: the simple query protocol, which
lets the acks and the COMMIT travel as one string, one round trip
(docs/guarantees.md#round-trips).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.types.datetime import TimestamptzLoader

from outbox.handlers import MAX_PAYLOAD_BYTES
from outbox.sql import array_literal, queries, script


@dataclass(frozen=True)
class ClaimedRow:
    """One row of ``event_claim_batch``."""

    id: int
    topic: str
    key: str
    payload_text: str | None
    payload_size: int
    attempts: int
    created_at: dt.datetime
    suspect: bool


@dataclass(frozen=True)
class Failure:
    """One event whose run raised, as ``event_ack_failures`` writes it."""

    id: int
    attempts: int
    final: bool
    error: str
    delay: float


@dataclass(frozen=True)
class AckCounts:
    """Rows each part of an ack updated (fewer than asked: the lease was lost)."""

    done: int = 0
    retried: int = 0
    failed: int = 0


def claim_params(
    identity: str, *, ordered: Mapping[str, str], unordered: Sequence[str], batch: int, lease: float
) -> dict[str, Any]:
    """The parameters of ``event_claim_batch`` (the drainer's, and the doctor's EXPLAIN)."""
    return {
        "ordered": list(ordered),
        "masks": list(ordered.values()),
        "unordered": list(unordered),
        "batch": batch,
        "lease": lease,
        "me": identity,
        "max_payload": MAX_PAYLOAD_BYTES,
    }


class Store:
    """The drainer's statements on the connection of one database alias."""

    def __init__(self, using: str, identity: str) -> None:
        self.using = using
        self.identity = identity
        self._cursor: psycopg.ClientCursor[Any] | None = None
        self._cursor_of: object = None

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.using]

    def _cur(self) -> psycopg.ClientCursor[Any]:
        """A cursor on the current raw connection, made again after a reconnect."""
        raw = self.connection.connection
        if self._cursor is None or self._cursor_of is not raw or self._cursor.closed:
            cursor = psycopg.ClientCursor(raw)
            # psycopg's own (C) timestamptz loader: the ORM's, registered by Django
            # on the connection, is Python code run for every value.
            cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
            self._cursor, self._cursor_of = cursor, raw
        return self._cursor

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> psycopg.ClientCursor[Any]:
        self.connection.ensure_connection()
        cursor = self._cur()
        cursor.execute(sql, params or {})
        return cursor

    # ------------------------------------------------------------ session

    def setup_session(self, *, statement_timeout: float, lock_timeout: float, idle_timeout: float) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                queries.drainer_session_setup,
                {
                    "application_name": self.identity,
                    "statement_timeout": str(int(statement_timeout * 1000)),
                    "lock_timeout": str(int(lock_timeout * 1000)),
                    "idle_timeout": str(int(idle_timeout * 1000)),
                },
            )

    # ------------------------------------------------------------ buckets

    def ensure_bucket_rows(self, topics: Sequence[str], buckets: int) -> None:
        self._execute(queries.bucket_ensure_rows, {"topics": list(topics), "buckets": buckets})

    def rebalance(
        self,
        *,
        handled: Sequence[str],
        ordered: Sequence[str],
        host: str,
        pid: int,
        direct: bool,
        expiry: float,
        buckets: int,
    ) -> dict[str, frozenset[int]]:
        """Heartbeat and rebalance; returns the buckets owned afterwards, by topic."""
        cursor = self._execute(
            queries.bucket_rebalance,
            {
                "me": self.identity,
                "handled": list(handled),
                "topics": list(ordered),
                "host": host,
                "pid": pid,
                "direct": direct,
                "expiry": expiry,
                "buckets": buckets,
            },
        )
        owned: dict[str, set[int]] = {topic: set() for topic in ordered}
        for topic, bucket in cursor.fetchall():
            owned.setdefault(topic, set()).add(bucket)
        return {topic: frozenset(numbers) for topic, numbers in owned.items()}

    def leave(self) -> None:
        self._execute(queries.drainer_leave, {"me": self.identity})

    # ------------------------------------------------------------ claim and process

    def claim(
        self, *, ordered: Mapping[str, str], unordered: Sequence[str], batch: int, lease: float
    ) -> list[ClaimedRow]:
        """Claim a batch: ``ordered`` maps a topic to the hex mask of the buckets owned."""
        cursor = self._execute(
            queries.event_claim_batch,
            claim_params(self.identity, ordered=ordered, unordered=unordered, batch=batch, lease=lease),
        )
        return [ClaimedRow(*row) for row in cursor.fetchall()]

    def count_attempt(self, event_id: int) -> int | None:
        """Count a suspect's attempt (committed on its own); None: it is not ours any more."""
        row = self._execute(queries.event_count_attempt, {"id": event_id, "me": self.identity}).fetchone()
        return None if row is None else int(row[0])

    def lock_batch(self, ids: Sequence[int], ordered: Sequence[str]) -> tuple[set[int], set[int]]:
        """First statement of a processing transaction: (ids we may run, ids to give back)."""
        cursor = self._execute(
            queries.event_lock_batch, {"ids": array_literal(ids), "ordered": list(ordered), "me": self.identity}
        )
        usable: set[int] = set()
        unusable: set[int] = set()
        for event_id, ok in cursor.fetchall():
            (usable if ok else unusable).add(event_id)
        return usable, unusable

    def ack_and_commit(
        self,
        *,
        done: Sequence[int],
        counted: Sequence[int],
        failures: Sequence[Failure],
        release: Sequence[int] = (),
    ) -> AckCounts:
        """The acks of a processing transaction and its COMMIT, in one round trip."""
        parts: list[str] = []
        params: dict[str, Any] = {"me": self.identity}
        if done:
            parts.append(queries.event_ack_done)
            params.update(ids=array_literal(done), counted=array_literal(counted))
        if failures:
            parts.append(queries.event_ack_failures)
            params.update(
                failed_ids=array_literal(f.id for f in failures),
                attempts=[f.attempts for f in failures],
                finals=[f.final for f in failures],
                errors=[f.error for f in failures],
                delays=[f.delay for f in failures],
            )
        if release:
            parts.append(queries.event_release)
            params.update(release_ids=array_literal(release), release_suspects="{}")
        cursor = self._execute(script(*parts, queries.transaction_commit), params)
        counts = {"done": 0, "retried": 0, "failed": 0}
        if done:
            counts["done"] = cursor.rowcount
            cursor.nextset()
        if failures:
            finals = [row[1] for row in cursor.fetchall()]
            counts["failed"] = sum(finals)
            counts["retried"] = len(finals) - counts["failed"]
        return AckCounts(**counts)

    def release(self, ids: Sequence[int], suspects: Sequence[int]) -> None:
        """Give claimed events back unrun, in a transaction of their own."""
        self._execute(
            queries.event_release,
            {"release_ids": array_literal(ids), "release_suspects": array_literal(suspects), "me": self.identity},
        )

    # ------------------------------------------------------------ faults and maintenance

    def release_lost(self, ids: Sequence[int]) -> int:
        cursor = self._execute(queries.event_release_lost, {"ids": array_literal(ids), "me": self.identity})
        return len(cursor.fetchall())

    def rescue_dead(self, expiry: float) -> list[tuple[int, str]]:
        cursor = self._execute(queries.drainer_rescue_dead, {"me": self.identity, "expiry": expiry})
        return [(row[0], row[1]) for row in cursor.fetchall()]

    def count_pending(self, cap: int) -> int:
        row = self._execute(queries.event_count_pending_capped, {"cap": cap}).fetchone()
        return int(row[0]) if row else 0

    def forget_cursor(self) -> None:
        """After the connection is dropped: the next statement makes a new cursor."""
        self._cursor = None
        self._cursor_of = None
