"""Every statement the drainer runs, one typed method each: the only module with cursors.

The statements are named blocks of ``outbox/sql/queries.sql``. They run on the raw
psycopg connection under Django's, so inside the handler's transaction, through
server-side-binding cursors: the per-batch ones as prepared statements (planned
once per session; ``OUTBOX["PREPARED_STATEMENTS"]``). A processing transaction
costs two round trips of its own: BEGIN with the lock of its batch, and the acks
with the COMMIT, each sent as one pipeline (docs/guarantees.md#round-trips).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.pq import TransactionStatus
from psycopg.types.datetime import TimestamptzLoader

from outbox.handlers import MAX_PAYLOAD_BYTES
from outbox.sql import array_literal, queries

logger = logging.getLogger("outbox.drainer")


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

    def __init__(self, using: str, identity: str, *, prepare: bool = True) -> None:
        self.using = using
        self.identity = identity
        self.prepare = prepare
        self._cursors: list[psycopg.Cursor[Any]] = []
        self._cursors_of: object = None
        self._claim_next: dict[str, Any] | None = None
        self._claimed_next: list[ClaimedRow] | None = None

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.using]

    def _cur(self, index: int = 0) -> psycopg.Cursor[Any]:
        """Server-binding cursor ``index`` on the current raw connection (made again after a reconnect)."""
        self.connection.ensure_connection()
        raw = self.connection.connection
        if self._cursors_of is not raw:
            self._cursors, self._cursors_of = [], raw
        while len(self._cursors) <= index:
            cursor = psycopg.Cursor(raw)
            # psycopg's own (C) timestamptz loader: the ORM's, registered by Django
            # on the connection, is Python code run for every value.
            cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
            self._cursors.append(cursor)
        return self._cursors[index]

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None, *, hot: bool = False) -> psycopg.Cursor[Any]:
        """Run one statement on its own (autocommit); ``hot``: a per-batch one, prepared."""
        cursor = self._cur()
        cursor.execute(sql, params or {}, prepare=hot and self.prepare)
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
        params = claim_params(self.identity, ordered=ordered, unordered=unordered, batch=batch, lease=lease)
        cursor = self._execute(queries.event_claim_batch, params, hot=True)
        return [ClaimedRow(*row) for row in cursor.fetchall()]

    def claim_with_next_commit(
        self, *, ordered: Mapping[str, str], unordered: Sequence[str], batch: int, lease: float
    ) -> None:
        """Send the next claim after the COMMIT of the next ack_and_commit, in its round trip.

        It runs in a transaction of its own, as a claim does; ``take_claimed()``
        returns its rows (docs/guarantees.md#round-trips).
        """
        self._claim_next = claim_params(self.identity, ordered=ordered, unordered=unordered, batch=batch, lease=lease)

    def take_claimed(self) -> list[ClaimedRow] | None:
        """The rows of the claim sent with the last COMMIT (None: there was none)."""
        rows, self._claimed_next, self._claim_next = self._claimed_next, None, None
        return rows

    def count_attempt(self, event_id: int) -> int | None:
        """Count a suspect's attempt (committed on its own); None: it is not ours any more."""
        row = self._execute(queries.event_count_attempt, {"id": event_id, "me": self.identity}, hot=True).fetchone()
        return None if row is None else int(row[0])

    @contextmanager
    def processing(self, ids: Sequence[int], ordered: Sequence[str]) -> Iterator[tuple[set[int], set[int]]]:
        """A processing transaction: yields (ids we may run, ids to give back), all locked.

        BEGIN goes in one round trip with ``event_lock_batch``; the block must end
        with ``ack_and_commit`` (or raise: then it is rolled back). Inside, Django
        is in an atomic block as with ``transaction.atomic()``: the handler's own
        ``atomic()`` blocks are savepoints, its ``on_commit`` callbacks run after the
        COMMIT. (psycopg stays in autocommit mode, so that BEGIN travels with the
        lock: Django's own atomic() would send it alone, one more round trip.)
        """
        conn = self.connection
        begin, lock = self._cur(0), self._cur(1)
        raw = begin.connection
        with raw.pipeline():
            begin.execute(queries.transaction_begin)
            lock.execute(
                queries.event_lock_batch,
                {"ids": array_literal(ids), "ordered": list(ordered), "me": self.identity},
                prepare=self.prepare,
            )
        usable: set[int] = set()
        unusable: set[int] = set()
        for event_id, ok in lock.fetchall():
            (usable if ok else unusable).add(event_id)
        conn.autocommit = False  # Django's view: a transaction is open (it is)
        try:
            with transaction.atomic(using=self.using, savepoint=False):
                yield usable, unusable
            if raw.pgconn.transaction_status != TransactionStatus.IDLE:
                raise RuntimeError("a processing transaction ended without ack_and_commit()")
        except BaseException:
            self._rollback(raw)
            conn.needs_rollback = False
            conn.run_on_commit = []
            raise
        finally:
            conn.autocommit = True
        conn.run_and_clear_commit_hooks()

    def _rollback(self, raw: psycopg.Connection[Any]) -> None:
        if raw.closed or raw.pgconn.transaction_status == TransactionStatus.IDLE:
            return
        try:
            raw.execute(queries.transaction_rollback)
        except psycopg.Error:
            pass  # the connection is gone: the server rolled it back

    def ack_and_commit(
        self,
        *,
        done: Sequence[int],
        counted: Sequence[int],
        failures: Sequence[Failure],
        release: Sequence[int] = (),
    ) -> AckCounts:
        """The acks of a processing transaction and its COMMIT (and a claim_with_next_commit()), in one round trip."""
        ack_done, ack_failures, release_cursor, commit = self._cur(0), self._cur(1), self._cur(2), self._cur(3)
        claim = self._cur(4)
        try:
            with ack_done.connection.pipeline():
                if done:
                    ack_done.execute(
                        queries.event_ack_done,
                        {"ids": array_literal(done), "counted": array_literal(counted), "me": self.identity},
                        prepare=self.prepare,
                    )
                if failures:
                    ack_failures.execute(
                        queries.event_ack_failures,
                        {
                            "failed_ids": array_literal(f.id for f in failures),
                            "attempts": [f.attempts for f in failures],
                            "finals": [f.final for f in failures],
                            "errors": [f.error for f in failures],
                            "delays": [f.delay for f in failures],
                            "me": self.identity,
                        },
                        prepare=self.prepare,
                    )
                if release:
                    release_cursor.execute(
                        queries.event_release,
                        {"release_ids": array_literal(release), "release_suspects": "{}", "me": self.identity},
                        prepare=self.prepare,
                    )
                commit.execute(queries.transaction_commit)
                if self._claim_next is not None:
                    claim.execute(queries.event_claim_batch, self._claim_next, prepare=self.prepare)
        except psycopg.Error as exc:
            # Nothing after the failing statement ran (the claim queued after COMMIT neither).
            self._claim_next = self._claimed_next = None
            raw = ack_done.connection
            idle = not raw.closed and raw.pgconn.transaction_status == TransactionStatus.IDLE
            if commit.statusmessage != "COMMIT" or exc.sqlstate is None or not idle:
                raise  # nothing committed, or the connection is in doubt (the session reconnects)
            # Committed: only the claim queued after it failed; the next cycle claims again.
            logger.warning("drainer=%s claim sent with the COMMIT failed, claiming again: %s", self.identity, exc)
        if self._claim_next is not None:
            self._claimed_next, self._claim_next = [ClaimedRow(*row) for row in claim.fetchall()], None
        counts = {"done": ack_done.rowcount if done else 0, "retried": 0, "failed": 0}
        if failures:
            finals = [row[1] for row in ack_failures.fetchall()]
            counts["failed"] = sum(finals)
            counts["retried"] = len(finals) - counts["failed"]
        return AckCounts(**counts)

    def check_constraints_now(self) -> None:
        """Deferred constraints checked now, in the current savepoint (bisection only)."""
        with self.connection.cursor() as cursor:
            cursor.execute(queries.constraints_check_now)

    def release(self, ids: Sequence[int], suspects: Sequence[int]) -> None:
        """Give claimed events back unrun, in a transaction of their own."""
        self._execute(
            queries.event_release,
            {"release_ids": array_literal(ids), "release_suspects": array_literal(suspects), "me": self.identity},
            hot=True,
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
        """After the connection is dropped: the next statement makes new cursors."""
        self._cursors, self._cursors_of = [], None
