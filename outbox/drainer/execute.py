"""The processing transaction: lock the batch, run its handlers, ack and commit.

Fast path, no savepoint: lock what is still ours, run each topic's handler, ack
and COMMIT in one round trip. When a handler raises, that transaction is rolled
back and the batch runs again with each topic's events in savepoints, halved until
the failing events are alone: only they are retried. When the COMMIT itself fails
(a deferred constraint a handler's writes broke), the batch is bisected the same
way. While bisecting, deferred constraints are checked at the end of each run. See
docs/guarantees.md#processing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
from django.db import DatabaseError, transaction

from outbox.conf import OutboxSettings
from outbox.drainer import ack
from outbox.drainer.report import BatchLog, DrainResult, TopicReport
from outbox.drainer.session import is_connection_fault
from outbox.drainer.store import Failure, Store
from outbox.exceptions import AbandonedEvent
from outbox.handlers import BatchResult, Event, HandlerRegistry, Outcomes, Registration
from outbox.signals import batch_acked, batch_handled, handler_finished, handler_started

logger = logging.getLogger(__name__)


class _HandlerRaised(Exception):
    """A handler raised in the fast path: roll back, then bisect.

    The failed run is not repeated: the topic's events are split at once (one event
    alone has its verdict), so a handler that raises runs once per attempt.
    """

    def __init__(self, topic: str, error: BaseException) -> None:
        super().__init__(topic)
        self.topic = topic
        self.error = error


class _CommitFailed(Exception):
    """The acks or the COMMIT of a batch failed (a deferred constraint, most often):
    nothing of it was written. The batch runs again, bisected, each run's deferred
    constraints checked in its savepoint."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Verdicts:
    """What the handlers of one transaction decided, per event."""

    done: list[int] = field(default_factory=list)
    errors: dict[int, BaseException | str] = field(default_factory=dict)
    topics: list[TopicReport] = field(default_factory=list)


@dataclass
class BatchReport:
    """What one processing transaction did (sent with ``batch_acked``)."""

    result: DrainResult
    events: Sequence[Event]
    topics: list[TopicReport]
    #: The acks of the events whose run failed (retried, or failed for good: ``final``).
    failures: Sequence[Failure] = ()
    #: Seconds the transaction took, from its first statement to its COMMIT.
    seconds: float = 0.0


class Executor:
    """Runs batches for one drainer."""

    def __init__(
        self,
        store: Store,
        registry: HandlerRegistry,
        settings: OutboxSettings,
        *,
        ordered: Sequence[str],
        sender: object,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.ordered = list(ordered)
        self._sender = sender
        self._log = BatchLog(store)

    @property
    def using(self) -> str:
        return self.store.using

    def run(self, events: Sequence[Event], *, counted: frozenset[int] = frozenset()) -> DrainResult:
        """Process ``events`` (claimed by us) in one transaction; ``counted``: attempts already counted."""
        try:
            return self._transaction(events, counted, self._run_fast)
        except _HandlerRaised as raised:
            bisect = functools.partial(self._run_bisect, raised=raised)
        except _CommitFailed as failed:
            logger.warning(
                "drainer=%s batch of %d event(s) failed at COMMIT, bisecting: %s",
                self.store.identity,
                len(events),
                failed.error,
            )
            bisect = functools.partial(self._run_bisect, raised=None)
        try:
            return self._transaction(events, counted, bisect)
        except _CommitFailed as again:  # not a handler's doing (the acks?): each event's attempt fails with it
            error = again.error
        return self._transaction(events, counted, lambda evs: _Verdicts(errors={e.id: error for e in evs}))

    def fail_unrun(self, event: Event) -> DrainResult:
        """A suspect whose runs used up every attempt without finishing: failed, not run again."""
        error = AbandonedEvent(
            f"{event.attempts} run(s) of it (max_attempts={self.settings.max_attempts}) never finished: "
            "each killed or stalled its drainer"
        )

        def verdicts(events: Sequence[Event]) -> _Verdicts:
            return _Verdicts(errors={e.id: error for e in events})

        return self._transaction([event], frozenset({event.id}), verdicts)

    def _transaction(
        self, events: Sequence[Event], counted: frozenset[int], decide: Callable[[Sequence[Event]], _Verdicts]
    ) -> DrainResult:
        result = DrainResult()
        started = time.perf_counter()
        with self.store.processing([e.id for e in events], self.ordered) as (usable, unusable):
            mine = [e for e in events if e.id in usable]
            result.lost = len(events) - len(usable) - len(unusable)
            if result.lost:
                logger.warning(
                    "drainer=%s lease lost on %d event(s), another drainer has them now, not applying",
                    self.store.identity,
                    result.lost,
                )
            verdicts = decide(mine) if mine else _Verdicts()
            batch_handled.send(sender=type(self._sender), drainer=self._sender, events=mine)
            by_id = {e.id: e for e in mine}
            failed = ack.failures(by_id, verdicts.errors, self.settings)
            ack.run_on_failed(self.registry, mine, failed, self.using)
            try:
                counts = self.store.ack_and_commit(
                    done=verdicts.done,
                    counted=[i for i in verdicts.done if i in counted],
                    failures=failed,
                    release=sorted(unusable),
                )
            except (DatabaseError, psycopg.Error) as exc:
                if is_connection_fault(exc, self.store.connection):
                    raise
                raise _CommitFailed(exc) from exc
        seconds = time.perf_counter() - started
        result.done, result.retried, result.failed = counts.done, counts.retried, counts.failed
        result.released = len(unusable)
        for topic in verdicts.topics:
            result.outcomes.update(topic.outcomes)
        self._check_fence(len(verdicts.done), counts.done, len(failed), counts.retried + counts.failed)
        ack.log_failures(by_id, failed, self.settings)
        self._log.write(verdicts.topics, counts.done + counts.failed)
        batch_acked.send(
            sender=type(self._sender),
            drainer=self._sender,
            report=BatchReport(result=result, events=mine, topics=verdicts.topics, failures=failed, seconds=seconds),
        )
        return result

    def _check_fence(self, done: int, acked: int, failures: int, failed_acked: int) -> None:
        if acked != done or failed_acked != failures:
            logger.warning(
                "drainer=%s ack updated %d of %d done and %d of %d failed event(s): lease lost on the rest",
                self.store.identity,
                acked,
                done,
                failed_acked,
                failures,
            )

    # ------------------------------------------------------------ running handlers

    def _groups(self, events: Sequence[Event]) -> list[tuple[Registration, list[Event]]]:
        by_topic: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_topic[event.topic].append(event)
        groups = []
        for topic, topic_events in by_topic.items():
            registration = self.registry.get(topic)
            if registration is None:  # the claim takes only registered topics
                raise LookupError(f"no handler is registered for topic {topic!r}")
            groups.append((registration, topic_events))
        return groups

    def _call(self, registration: Registration, events: Sequence[Event]) -> tuple[Outcomes, dict[int, object]]:
        """Run one handler on ``events``, between the handler_started and handler_finished signals."""
        sender, topic = type(self._sender), registration.topic
        handler_started.send(sender=sender, drainer=self._sender, topic=topic, events=events)
        outcomes: Outcomes = {}
        errors: dict[int, object] = {}
        try:
            result = registration.handle_batch(events)
        except Exception as exc:
            handler_finished.send(
                sender=sender, drainer=self._sender, topic=topic, events=events, outcomes={}, failed={}, error=exc
            )
            raise
        if isinstance(result, BatchResult):
            ids = {e.id for e in events}
            outcomes, errors = result.outcomes, {i: error for i, error in result.failed.items() if i in ids}
        else:
            outcomes = result or {}
        handler_finished.send(
            sender=sender,
            drainer=self._sender,
            topic=topic,
            events=events,
            outcomes=outcomes,
            failed=errors,
            error=None,
        )
        return outcomes, errors

    def _run_fast(self, events: Sequence[Event]) -> _Verdicts:
        verdicts = _Verdicts()
        for registration, group in self._groups(events):
            try:
                outcomes, errors = self._call(registration, group)
            except Exception as exc:
                if is_connection_fault(exc, self.store.connection):
                    raise
                raise _HandlerRaised(registration.topic, exc) from exc
            self._record(verdicts, registration, group, Counter(dict(outcomes)), errors)
        return verdicts

    def _run_bisect(self, events: Sequence[Event], raised: _HandlerRaised | None) -> _Verdicts:
        """After a handler raised (``raised``) or the COMMIT failed (None)."""
        verdicts = _Verdicts()
        for registration, group in self._groups(events):
            if raised is not None and registration.topic == raised.topic:
                outcomes, errors = self._split(registration, group, raised.error)
            else:
                outcomes, errors = self._bisect(registration, group)
            self._record(verdicts, registration, group, outcomes, errors)
        return verdicts

    def _bisect(self, registration: Registration, events: Sequence[Event]) -> tuple[Counter[str], dict[int, object]]:
        """Run ``events`` in a savepoint; on error, split them until the culprits are alone."""
        try:
            with transaction.atomic(using=self.using):
                outcomes, errors = self._call(registration, events)
                self.store.check_constraints_now()  # a deferred violation fails this run, not the COMMIT
            return Counter(dict(outcomes)), errors
        except Exception as exc:
            if is_connection_fault(exc, self.store.connection):
                raise
            return self._split(registration, events, exc)

    def _split(
        self, registration: Registration, events: Sequence[Event], error: BaseException
    ) -> tuple[Counter[str], dict[int, object]]:
        """``events`` failed together with ``error``: one alone has its verdict, more are halved."""
        if len(events) == 1:
            logger.debug("event=%s handler raised: %r", events[0].id, error)
            return Counter(), {events[0].id: error}
        middle = len(events) // 2
        left_outcomes, left_errors = self._bisect(registration, events[:middle])
        right_outcomes, right_errors = self._bisect(registration, events[middle:])
        return left_outcomes + right_outcomes, {**left_errors, **right_errors}

    @staticmethod
    def _record(
        verdicts: _Verdicts,
        registration: Registration,
        events: Sequence[Event],
        outcomes: Counter[str],
        errors: dict[int, object],
    ) -> None:
        for event in events:
            if event.id in errors:
                error = errors[event.id]
                verdicts.errors[event.id] = error if isinstance(error, BaseException) else str(error)
            else:
                verdicts.done.append(event.id)
        verdicts.topics.append(
            TopicReport(registration=registration, processed=len(events), failed=len(errors), outcomes=outcomes)
        )


__all__ = ["BatchReport", "Executor", "Failure"]
