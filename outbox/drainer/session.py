"""The drainer's database session: set it up, tell faults from bugs, reconnect with backoff.

A lost or unreachable database (a restart, ``pg_terminate_backend``, the server
ending a stalled drainer's idle transaction, no server at start-up) is a fault:
logged, the connection dropped, retried with backoff. A schema that ``migrate``
has not made yet is treated the same way, with a message saying so. Anything else
is a bug and propagates. See docs/guarantees.md#connection-faults.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from outbox.conf import OutboxSettings
from outbox.drainer.config import RECONNECT_BACKOFF_BASE, RECONNECT_BACKOFF_CAP
from outbox.drainer.store import Store
from outbox.exceptions import OutboxError

logger = logging.getLogger(__name__)

#: SQLSTATE prefixes of errors that end the session, whatever class psycopg gives
#: them: connection exceptions (08), operator intervention such as
#: pg_terminate_backend, a shutting-down or starting server (57P), and the
#: idle-in-transaction timeout (25P03). Not 57014 (statement_timeout).
SESSION_LOST_SQLSTATES = ("08", "57P", "25P03")
#: SQLSTATEs of a schema that is missing or older than the code: run migrate.
SCHEMA_MISSING_SQLSTATES = ("42P01", "42703")
#: SQLSTATEs that end one statement and leave the session as it was: a statement
#: cancelled or past statement_timeout (57014), a lock wait past lock_timeout (55P03).
#: psycopg calls them OperationalError like a lost server; raised by a handler they
#: fail its run like any handler error, elsewhere the loop retries.
STATEMENT_ABORTED_SQLSTATES = ("57014", "55P03")


class DatabaseUnavailable(OutboxError):
    """The database could not be reached; the drainer gave up."""


def _sqlstates(exc: BaseException) -> list[str]:
    states = []
    for error in (exc, exc.__cause__):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str):
            states.append(sqlstate)
    return states


def schema_missing(exc: BaseException) -> bool:
    """Did this error come from a table or column that ``migrate`` would create?"""
    return any(state in SCHEMA_MISSING_SQLSTATES for state in _sqlstates(exc))


def statement_aborted(exc: BaseException) -> bool:
    """Did a timeout or a cancel end this statement only (STATEMENT_ABORTED_SQLSTATES)?"""
    return any(state in STATEMENT_ABORTED_SQLSTATES for state in _sqlstates(exc))


def is_connection_fault(exc: BaseException, connection: BaseDatabaseWrapper) -> bool:
    """Is this a lost or unreachable database (retry), rather than a bug (raise)?

    The one place that decides it. Operational and interface errors cover refused
    connections, restarts and terminated backends; any error counts that ended the
    session (by SQLSTATE) or left the connection closed or broken. A statement or
    lock timeout on a connection still open is not one (statement_aborted).
    """
    raw = connection.connection
    if raw is None or bool(getattr(raw, "closed", True)) or bool(getattr(raw, "broken", False)):
        return True
    if any(state.startswith(SESSION_LOST_SQLSTATES) for state in _sqlstates(exc)):
        return True
    if statement_aborted(exc):
        return False
    return isinstance(exc, OperationalError | InterfaceError | psycopg.OperationalError | psycopg.InterfaceError)


@dataclass
class Outage:
    """Consecutive connection failures of one loop, and whether it ever connected."""

    failures: int = 0
    since: float | None = None
    connected: bool = False


class Session:
    """Connects the drainer's alias, sets its sessions up, and rides out faults.

    ``on_reconnect()`` runs on the new connection after a lost one and returns how
    many claimed events it handed back.
    """

    def __init__(
        self,
        store: Store,
        settings: OutboxSettings,
        *,
        on_reconnect: Callable[[], int],
        sleep: Callable[[float], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self._on_reconnect = on_reconnect
        self._sleep = sleep
        self._uid = f"outbox-drainer-session-{id(self)}"
        connection_created.connect(self._set_up, dispatch_uid=self._uid)

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.store.using]

    def close(self) -> None:
        connection_created.disconnect(dispatch_uid=self._uid)

    def _set_up(self, sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if connection.alias == self.store.using:
            s = self.settings
            self.store.setup_session(
                statement_timeout=s.statement_timeout, lock_timeout=s.lock_timeout, idle_timeout=s.lease
            )

    def where(self) -> str:
        """host:port/dbname of this drainer's database (no credentials)."""
        s = self.connection.settings_dict
        return f"{s.get('HOST') or 'localhost'}:{s.get('PORT') or 5432}/{s.get('NAME')}"

    def connect(self, outage: Outage) -> None:
        """Connect if needed; after failures, say so (and after a reconnect, hand back)."""
        self.connection.ensure_connection()
        if not outage.failures:
            outage.connected = True
            return
        if outage.connected:
            released = self._on_reconnect()
            logger.info(
                "drainer=%s reconnected after %d failure(s); released %d event(s) it had claimed",
                self.store.identity,
                outage.failures,
                released,
            )
        else:
            logger.info(
                "drainer=%s connected to the database %s after %d failed attempt(s) in %.1fs",
                self.store.identity,
                self.where(),
                outage.failures,
                time.monotonic() - (outage.since or time.monotonic()),
            )
        outage.connected = True
        outage.failures = 0
        outage.since = None

    def fault(self, exc: BaseException, outage: Outage, give_up_after: float | None) -> None:
        """Handle an error of the loop: re-raise a bug; log, drop and back off on a fault."""
        missing = schema_missing(exc)
        # A claim or lock that ran past its timeout (an operator's transaction holding
        # a row): dropped and retried like a fault, never raised as a bug.
        if not missing and not is_connection_fault(exc, self.connection) and not statement_aborted(exc):
            raise exc
        outage.failures += 1
        now = time.monotonic()
        if outage.since is None:
            outage.since = now
        elapsed = now - outage.since
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if missing:
            reason = f"the outbox tables are missing or out of date: run `manage.py migrate` ({reason})"
        self.drop()
        verb = "use" if missing else "reach"
        if give_up_after is not None and elapsed >= give_up_after:
            raise DatabaseUnavailable(
                f"cannot {verb} the database {self.where()}: gave up after {elapsed:.0f}s and "
                f"{outage.failures} attempt(s); last error: {reason}"
            ) from exc
        delay = min(RECONNECT_BACKOFF_CAP, RECONNECT_BACKOFF_BASE * (2 ** (outage.failures - 1)))
        delay *= 1 + 0.2 * random.random()  # noqa: S311 (jitter, not crypto)
        if give_up_after is not None:
            delay = min(delay, max(give_up_after - elapsed, 0.0))
        if outage.connected and not missing:
            logger.warning(
                "drainer=%s database error, reconnecting in %.1fs (attempt %d): %s",
                self.store.identity,
                delay,
                outage.failures,
                reason,
            )
        else:
            logger.warning(
                "drainer=%s cannot %s the database %s, retrying in %.1fs (attempt %d%s): %s",
                self.store.identity,
                "use" if missing else "connect to",
                self.where(),
                delay,
                outage.failures,
                f", giving up after {give_up_after:.0f}s" if give_up_after is not None else "",
                reason,
            )
        self._sleep(delay)

    def drop(self) -> None:
        """Close the connection and reset Django's transaction state for a fresh one."""
        conn = self.connection
        try:
            conn.close()
        except DatabaseError:
            pass
        except psycopg.Error:
            pass
        conn.connection = None  # a broken socket must not be reused
        conn.closed_in_transaction = False
        conn.in_atomic_block = False
        conn.needs_rollback = False
        conn.savepoint_ids = []
        conn.atomic_blocks = []
        conn.run_on_commit = []
        self.store.forget_cursor()
