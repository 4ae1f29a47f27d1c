"""Sleeping between claims: on LISTEN (woken by the trigger's NOTIFY), a poll, or a stop.

The LISTEN connection is a second, autocommit session of the drainer's own; it is
made again as soon as it is found broken, and a wait that finds it broken ends at
once (a notification sent while it was down is lost: the next claim looks).
Wake-ups are coalesced: however many notifications are queued, one wake-up, one
claim; and claims that find nothing are rate-limited (EMPTY_CLAIMS_PER_SECOND), so a
flood of NOTIFYs from any session cannot turn a drainer into a busy loop.
"""

from __future__ import annotations

import logging
import os
import selectors
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from outbox.conf import OutboxSettings
from outbox.drainer.config import BURST_END_LINGER, EMPTY_CLAIM_BURST, EMPTY_CLAIMS_PER_SECOND
from outbox.triggers import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)


def listen_params(settings: OutboxSettings, using: str, connection: BaseDatabaseWrapper) -> dict[str, Any]:
    """How the LISTEN session connects: OUTBOX['LISTEN_URL'] where set, else as Django does."""
    direct = settings.listen_url_for(using)
    if direct:
        # Past a transaction-mode pooler, which cannot hold a LISTEN: the server itself.
        return conninfo_to_dict(direct)
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "server_side_binding", "prepare_threshold"):
        params.pop(key, None)
    return params


class Wakeup:
    """The drainer's sleep: LISTEN connection, stop pipe, empty-claim pause."""

    def __init__(
        self,
        identity: str,
        *,
        listen: bool,
        connect_params: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self._clock = clock
        self.listen = listen
        self._connect_params = connect_params
        self._listener: psycopg.Connection[Any] | None = None
        self._pipe_r, self._pipe_w = os.pipe()
        os.set_blocking(self._pipe_w, False)
        self._tokens = EMPTY_CLAIM_BURST  # empty claims allowed now
        self._refilled = clock()
        self._burst = False  # the last claim found events
        self._linger_until = 0.0  # claim again shortly instead of sleeping until then

    # ------------------------------------------------------------ stop pipe

    def interrupt(self) -> None:
        """End the current (or next) wait or sleep at once."""
        try:
            os.write(self._pipe_w, b"x")
        except (BlockingIOError, OSError):  # pipe full or closed: already woken
            pass

    def sleep(self, seconds: float) -> None:
        """Sleep, woken early only by interrupt()."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._pipe_r, selectors.EVENT_READ)
            if selector.select(seconds):
                os.read(self._pipe_r, 1024)

    # ------------------------------------------------------------ LISTEN

    def _listening(self) -> psycopg.Connection[Any] | None:
        if not self.listen:
            return None
        if self._listener is None or self._listener.closed:
            params = self._connect_params()
            params["application_name"] = self.identity
            params["autocommit"] = True
            self._listener = psycopg.connect(**params)
            self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
        return self._listener

    def close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg.Error:
                pass
            self._listener = None

    def _listener_lost(self, exc: psycopg.Error) -> None:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.close_listener()
        try:
            self._listening()
        except psycopg.Error as again:
            self.close_listener()
            logger.warning(
                "drainer=%s LISTEN connection lost (%s) and cannot be made again, polling until it can: %s",
                self.identity,
                reason,
                again,
            )
            return
        logger.warning("drainer=%s LISTEN connection lost (%s), listening again", self.identity, reason)

    def _drain_notifications(self, listener: psycopg.Connection[Any]) -> bool:
        """Read every queued notification; True if there was one."""
        try:
            return sum(1 for _ in listener.notifies(timeout=0)) > 0
        except psycopg.Error as exc:
            self._listener_lost(exc)
            return True  # cannot tell: look

    def ensure_listening(self) -> None:
        """LISTEN now (before the first claim, so no notification is missed)."""
        try:
            self._listening()
        except psycopg.Error as exc:
            logger.warning("drainer=%s cannot LISTEN, polling instead: %s", self.identity, exc)
            self.close_listener()

    # ------------------------------------------------------------ waiting

    def claimed(self, count: int) -> None:
        """Tell the rate limit and the linger what the last claim found."""
        if count:
            self._burst = True
            return
        if self._burst:  # the first empty claim after a burst: linger from now
            self._burst = False
            self._linger_until = self._clock() + BURST_END_LINGER
        self._refill()
        self._tokens -= 1.0

    def lingering(self) -> bool:
        """A burst ended less than BURST_END_LINGER ago: claim again BURST_END_RECLAIM
        later rather than sleep (writers that skipped their NOTIFY may commit meanwhile)."""
        return self._clock() < self._linger_until

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(EMPTY_CLAIM_BURST, self._tokens + (now - self._refilled) * EMPTY_CLAIMS_PER_SECOND)
        self._refilled = now

    def wait(self, timeout: float) -> bool:
        """Sleep until a NOTIFY, interrupt() or ``timeout``, then until an empty claim is allowed.

        Returns whether a notification or interrupt() ended it (False: the timeout).
        """
        try:
            listener = self._listening()
        except psycopg.Error as exc:
            logger.warning("drainer=%s cannot LISTEN, polling instead: %s", self.identity, exc)
            self.close_listener()
            listener = None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._pipe_r, selectors.EVENT_READ)
            # Notifications that arrived while we were busy are already buffered.
            notified = listener is not None and self._drain_notifications(listener)
            if not notified and listener is not None and not listener.closed:
                selector.register(listener.fileno(), selectors.EVENT_READ)
            if not notified:
                for key, _ in selector.select(max(deadline - time.monotonic(), 0.0)):
                    if key.fd == self._pipe_r:
                        os.read(self._pipe_r, 1024)
                        return True
                    if listener is not None:
                        notified = self._drain_notifications(listener)
        self._pause()
        return notified

    def _pause(self) -> None:
        """Wait until the rate limit allows another claim (interruptible)."""
        self._refill()
        if self._tokens < 1.0:
            self.sleep((1.0 - self._tokens) / EMPTY_CLAIMS_PER_SECOND)

    def close(self) -> None:
        self.close_listener()
        for fd in (self._pipe_r, self._pipe_w):
            try:
                os.close(fd)
            except OSError:
                pass
