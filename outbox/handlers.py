"""The handler registry: topic -> what to do with its events.

A domain app registers its handlers in ``AppConfig.ready()``; ``outbox`` never
imports the domain. Two shapes are accepted:

* a **batch handler** ``handle(events) -> Mapping[str, int] | None`` gets every
  claimed event of its topic at once and should write with set-based statements;
  the mapping it returns (outcome -> count, e.g. ``{"recorded": 42}``) feeds the
  drainer's log line;
* a **per-event handler** ``handle(event) -> str | None`` (the outcome name) is
  wrapped by an adapter that calls it once per event.

A handler runs inside the drainer's transaction: its database writes commit
together with the event's ``done`` ack, or not at all. When a handler raises, the
drainer bisects the batch in savepoints so only the failing events are retried.

``on_failed(events, reason)`` runs in the same transaction that marks events
``failed``, so the domain can record the failure on its own rows.
``lock_key(event) -> int`` serialises events that share a key across drainers: the
drainer takes a transaction-level advisory lock per distinct key, in sorted order
(so two drainers cannot deadlock), before any handler runs.
``on_start()`` is called once by each drainer process before its first claim: load
and validate what the handler needs (pricing: its config file) there, so that a bad
one stops the drainer with its message (and a non-zero exit) instead of failing
every event.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from outbox.exceptions import HandlerAlreadyRegistered, HandlerStartFailed


@dataclass(frozen=True)
class Event:
    """A claimed outbox event, as handlers see it."""

    id: int
    topic: str
    key: str
    payload: dict[str, Any]
    attempts: int
    created_at: dt.datetime


Outcomes = Mapping[str, int]
BatchHandler = Callable[[Sequence[Event]], "Outcomes | None"]
EventHandler = Callable[[Event], "str | None"]
FailedCallback = Callable[[Sequence[Event], str], None]
LockKey = Callable[[Event], int]
StartHook = Callable[[], None]


@dataclass(frozen=True)
class Registration:
    topic: str
    handle_batch: BatchHandler
    on_failed: FailedCallback | None = None
    lock_key: LockKey | None = None
    lock_group: str = ""
    log_label: str = ""
    outcome_names: tuple[str, ...] = ()
    batch: bool = True
    on_start: StartHook | None = None

    @property
    def label(self) -> str:
        return self.log_label or self.topic


def per_event_adapter(handler: EventHandler) -> BatchHandler:
    """Turn ``handle(event) -> outcome`` into a batch handler."""

    def handle_batch(events: Sequence[Event]) -> Outcomes:
        outcomes: Counter[str] = Counter()
        for event in events:
            outcomes[handler(event) or "done"] += 1
        return outcomes

    handle_batch.__name__ = getattr(handler, "__name__", "handler")
    return handle_batch


@dataclass
class HandlerRegistry:
    _handlers: dict[str, Registration] = field(default_factory=dict)

    def register(
        self,
        topic: str,
        handler: Callable[..., Any],
        *,
        batch: bool = False,
        on_failed: FailedCallback | None = None,
        lock_key: LockKey | None = None,
        lock_group: str = "",
        log_label: str = "",
        outcome_names: tuple[str, ...] = (),
        on_start: StartHook | None = None,
        replace: bool = False,
    ) -> Registration:
        """Register ``handler`` for ``topic`` (``batch=True`` for a batch handler).

        ``lock_group`` names the advisory-lock namespace of ``lock_key`` (default: the
        topic; give several topics one group to serialise them together).
        ``log_label`` prefixes the drainer's per-batch log line and
        ``outcome_names`` are always printed in it, zero or not. ``on_start`` runs
        once per drainer process before its first claim (see the module docstring).
        """
        if topic in self._handlers and not replace:
            raise HandlerAlreadyRegistered(
                f"a handler is already registered for topic {topic!r}: "
                f"{self._handlers[topic].handle_batch!r}; pass replace=True to swap it"
            )
        registration = Registration(
            topic=topic,
            handle_batch=handler if batch else per_event_adapter(handler),
            on_failed=on_failed,
            lock_key=lock_key,
            lock_group=lock_group,
            log_label=log_label,
            outcome_names=tuple(outcome_names),
            batch=batch,
            on_start=on_start,
        )
        self._handlers[topic] = registration
        return registration

    def start(self, topics: Iterable[str] | None = None) -> None:
        """Run the ``on_start`` of every registration (only of ``topics`` when given),
        in topic order. The first that raises stops it: ``HandlerStartFailed`` names
        the topic and says why, and the drainer must not claim."""
        wanted = set(topics) if topics else None
        for topic in self.topics():
            registration = self._handlers[topic]
            if registration.on_start is None or (wanted is not None and topic not in wanted):
                continue
            try:
                registration.on_start()
            except Exception as exc:
                raise HandlerStartFailed(f"the handler of {topic} cannot start: {exc}") from exc

    def unregister(self, topic: str) -> None:
        self._handlers.pop(topic, None)

    def get(self, topic: str) -> Registration | None:
        return self._handlers.get(topic)

    def topics(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, topic: object) -> bool:
        return topic in self._handlers

    def snapshot(self) -> dict[str, Registration]:
        return dict(self._handlers)

    def restore(self, handlers: Iterable[tuple[str, Registration]]) -> None:
        self._handlers = dict(handlers)


#: The process-wide registry that ``drain_outbox`` uses.
registry = HandlerRegistry()
register = registry.register
