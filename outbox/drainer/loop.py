"""The drainer's loop: ``run`` until stopped, ``drain`` what is there now, ``run_once`` one cycle.

One cycle: claim a batch (its own transaction), run its suspects alone (events
whose earlier run never finished), then the rest together in one processing
transaction. Between cycles: the periodic duties (buckets, rescue, retry, purge),
and, when a claim finds nothing, a sleep on LISTEN. Faults of the database are
ridden out by the session. docs/guarantees.md explains every step.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from django.db import DatabaseError

from outbox.drainer import maintenance
from outbox.drainer.buckets import Buckets
from outbox.drainer.config import (
    BURST_END_RECLAIM,
    ONCE_GIVE_UP_AFTER,
    REBALANCE_INTERVAL,
    DrainerConfig,
    make_identity,
)
from outbox.drainer.execute import Executor
from outbox.drainer.report import DrainResult, log_started, log_stopped
from outbox.drainer.session import Outage, Session
from outbox.drainer.store import ClaimedRow, Store
from outbox.drainer.topics import handled_topics, ordered_of
from outbox.handlers import Event, HandlerRegistry, registry
from outbox.signals import batch_claimed, drainer_started, drainer_stopped, reconnected

logger = logging.getLogger("outbox.drainer")


class Drainer:
    """Drains the outbox of one database alias with the handlers of ``handlers``."""

    def __init__(
        self,
        config: DrainerConfig | None = None,
        *,
        handlers: HandlerRegistry | None = None,
        using: str = "default",
        identity: str | None = None,
    ) -> None:
        from outbox.drainer.wakeup import Wakeup, listen_params

        self.config = config or DrainerConfig.from_settings()
        self.settings = s = self.config.settings
        self.registry = handlers or registry
        self.using = using
        self.identity = identity or make_identity()
        self.topics = handled_topics(self.registry, self.config.topics)
        self.ordered = ordered_of(self.registry, self.topics)
        self.store = Store(using, self.identity, prepare=s.prepared_statements)
        self.wakeup = Wakeup(
            self.identity, listen=s.notify, connect_params=lambda: listen_params(s, using, self.session.connection)
        )
        self.session = Session(self.store, s, on_reconnect=self._release_lost, sleep=self.wakeup.sleep)
        self.buckets = Buckets(self.store, handled=self.topics, ordered=self.ordered, expiry=s.lease, sender=self)
        self.executor = Executor(self.store, self.registry, s, ordered=self.ordered, sender=self)
        self.duties = maintenance.Duties(
            [
                maintenance.Duty("rebalance", REBALANCE_INTERVAL, self.buckets.rebalance),
                maintenance.Duty("rescue", s.rescue_interval, lambda: maintenance.rescue(self.store, s.lease)),
                maintenance.Duty(
                    "retry_failed",
                    self.config.retry_failed_every,
                    lambda: maintenance.retry_failed(self.store, self.topics),
                ),
                maintenance.Duty("purge", s.purge_interval, lambda: maintenance.purge(self.store, s)),
            ]
        )
        self._stopping = False
        self._prepared = False
        self._in_flight: list[int] = []
        #: Rows of a claim sent with the last COMMIT, not processed yet.
        self._ahead: list[ClaimedRow] | None = None

    # ------------------------------------------------------------ loops

    def run(self) -> DrainResult:
        """Drain until ``request_stop()``; sleep on LISTEN (or poll) when idle."""
        total = DrainResult()
        outage = Outage()
        while not self._stopping:
            try:
                self._prepare(outage)
                self.duties.run_due()
                result = self.run_once()
                total += result
                if not result.claimed and not self._stopping:
                    if self.wakeup.lingering():  # a burst ended just now: claim again shortly
                        self.wakeup.wait(BURST_END_RECLAIM)
                        continue
                    self._idle()
            except (DatabaseError, psycopg.Error) as exc:
                self.session.fault(exc, outage, self.config.give_up_after)
        self._leave(total)
        return total

    def _idle(self) -> None:
        """Sleep until a NOTIFY or the poll interval; wake meanwhile for the duties that fall due.

        A drainer with nothing to do still says it is alive and takes its share of
        the buckets every REBALANCE_INTERVAL; it goes back to claiming as soon as the
        rebalance gives it buckets, a NOTIFY comes, or the poll interval is over.
        """
        deadline = time.monotonic() + self.settings.poll_interval
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.wakeup.wait(min(left, self.duties.seconds_until_due())):
                return
            before = self.buckets.owned
            self.duties.run_due()
            if self.buckets.owned != before:
                return

    def drain(self) -> DrainResult:
        """Process every event this drainer can own and run now, then return (``--once``)."""
        total = DrainResult()
        outage = Outage()
        give_up_after = self.config.give_up_after
        if give_up_after is None:
            give_up_after = ONCE_GIVE_UP_AFTER
        first = True
        while not self._stopping:
            try:
                self._prepare(outage)
                self.duties.run_due(force=first)
                first = False
                result = self.run_once()
                total += result
                # Nothing left in our buckets: stop, unless the rebalance just gave us more.
                if not result.claimed and not self.buckets.rebalance():
                    break
            except (DatabaseError, psycopg.Error) as exc:
                self.session.fault(exc, outage, give_up_after)
        self._leave(total)
        return total

    def run_once(self) -> DrainResult:
        """Claim one batch and process it: its suspects alone, then the rest together.

        A full batch claims the next one with its COMMIT, in the same round trip
        (when no duty is due first); the next run_once processes that one.
        """
        if not self._prepared:
            self._prepare(Outage())
        events, suspects = self._claim()
        result = DrainResult(claimed=len(events) + len(suspects))
        self.wakeup.claimed(result.claimed)
        for index, suspect in enumerate(suspects):
            if self._stopping:  # the rest of the claim goes back unrun, suspects still
                self._release([*suspects[index:], *events], suspects[index:], result)
                return result
            result += self._run_alone(suspect)
        if events:
            if result.claimed >= self.settings.batch_size and self.duties.seconds_until_due() > 0:
                self.store.claim_with_next_commit(**self._claim_args())
            result += self.executor.run(events)
            self._ahead = self.store.take_claimed()
        self._in_flight = [row.id for row in self._ahead or ()]
        return result

    # ------------------------------------------------------------ steps

    def _claim_args(self) -> dict[str, Any]:
        return {
            "ordered": self.buckets.masks(),
            "unordered": self.buckets.unordered(),
            "batch": self.settings.batch_size,
            "lease": self.settings.lease,
        }

    def _claim(self) -> tuple[list[Event], list[Event]]:
        """Claim (or take the batch claimed with the last COMMIT): (fresh events, attempt
        number = stored + 1) and (suspects, stored attempts)."""
        rows = self._ahead if self._ahead is not None else self.store.claim(**self._claim_args())
        self._ahead = None
        self._in_flight = [row.id for row in rows]
        events = [_event(row, row.attempts + 1) for row in rows if not row.suspect]
        suspects = [_event(row, row.attempts) for row in rows if row.suspect]
        if rows:
            batch_claimed.send(
                sender=Drainer, drainer=self, events=[*suspects, *events], suspects=[e.id for e in suspects]
            )
        return events, suspects

    def _run_alone(self, suspect: Event) -> DrainResult:
        """A suspect, alone: its attempt counted and committed first, since it may be what killed its drainer."""
        if suspect.attempts >= self.settings.max_attempts:
            return self.executor.fail_unrun(suspect)
        attempts = self.store.count_attempt(suspect.id)
        if attempts is None:
            logger.warning("drainer=%s lease lost on suspect event=%s before it ran", self.identity, suspect.id)
            return DrainResult(lost=1)
        return self.executor.run([suspect.replace(attempts=attempts)], counted=frozenset({suspect.id}))

    def _release(self, events: list[Event], suspects: list[Event], result: DrainResult) -> None:
        self.store.release([e.id for e in events], [e.id for e in suspects])
        result.released += len(events)
        self._in_flight = []

    def _release_lost(self) -> int:
        """After a reconnect: the batch in flight when the connection broke, back as suspects."""
        released = self.store.release_lost(self._in_flight) if self._in_flight else 0
        self._in_flight = []
        self._ahead = None
        self.wakeup.close_listener()
        reconnected.send(sender=Drainer, drainer=self, released=released)
        return released

    def _prepare(self, outage: Outage) -> None:
        """Connect; the first time, run the handlers' on_start hooks and join the drainers."""
        self.session.connect(outage)
        if self._prepared:
            return
        self.registry.start(self.topics)
        self.buckets.prepare()
        self.buckets.rebalance()
        self.wakeup.ensure_listening()
        self._prepared = True
        log_started(self.identity, self.settings, self.topics, self.ordered)
        drainer_started.send(sender=Drainer, drainer=self, topics=self.topics, ordered=self.ordered)

    def _leave(self, total: DrainResult) -> None:
        """Give back a batch claimed ahead and the buckets (if the database is there), then close."""
        try:
            total.released += self._give_back_ahead()
            if self._prepared and self.session.connection.connection is not None:
                self.buckets.leave()
        except (DatabaseError, psycopg.Error) as exc:
            logger.warning("drainer=%s could not give its buckets back: %s", self.identity, exc)
        self.session.drop()
        log_stopped(self.identity, total)
        drainer_stopped.send(sender=Drainer, drainer=self, result=total)

    # ------------------------------------------------------------ stopping

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self) -> None:
        """Finish the current batch, then return from ``run``/``drain``."""
        self._stopping = True
        self.wakeup.interrupt()

    def close(self) -> None:
        try:
            self._give_back_ahead()
        except (DatabaseError, psycopg.Error) as exc:
            logger.warning("drainer=%s could not give back the batch it had claimed: %s", self.identity, exc)
        self.session.close()
        self.wakeup.close()

    def _give_back_ahead(self) -> int:
        """Release a batch claimed with the last COMMIT and not processed; how many."""
        ahead, self._ahead = self._ahead or [], None
        if ahead:
            self.store.release([row.id for row in ahead], [row.id for row in ahead if row.suspect])
        return len(ahead)

    def signals_handled(self) -> Any:
        """SIGTERM/SIGINT: the first stops after the batch, a second one exits at once."""
        from outbox.drainer.shutdown import signals_handled

        return signals_handled(self)


def _event(row: ClaimedRow, attempts: int) -> Event:
    return Event.from_json(row.id, row.topic, row.key, row.payload_text, row.payload_size, attempts, row.created_at)


def drain(config: DrainerConfig | None = None, **kwargs: Any) -> DrainResult:
    """Drain everything available now with a throwaway drainer."""
    drainer = Drainer(config, **kwargs)
    try:
        return drainer.drain()
    finally:
        drainer.close()
