"""The handler registry: topic -> what to do with its events.

A domain app registers its handlers in ``AppConfig.ready()``; ``outbox`` never
imports the domain. Two shapes are accepted:

* a **batch handler** ``handle(events)`` gets every claimed event of its topic at
  once and should write with set-based statements. It returns ``None``, a mapping
  ``outcome -> count`` (e.g. ``{"recorded": 42}``, for the drainer's log line), or a
  ``BatchResult`` that also names the events that failed (they are retried or
  failed; the others are done, their writes kept);
* a **per-event handler** ``handle(event) -> str | None`` (the outcome name) is
  wrapped by an adapter that calls it once per event.

A handler runs inside the drainer's transaction: its database writes commit
together with the events' ``done`` ack, or not at all. When a handler raises, the
transaction is rolled back and the batch is run again in halves, in savepoints,
until the failing events are alone; only they are retried.

``on_failed(events, reason)`` runs in the transaction that marks events ``failed``,
so the domain can record the failure on its own rows. ``on_start()`` runs once in
each drainer process before its first claim (load and validate the domain's own
configuration there); if it raises, the drainer stops with that error and claims
nothing. ``ordered``: the topic's events carry an order bucket (its
``outbox_trigger`` has an ``order_key``) and are handled one bucket owner at a time,
in outbox order; by default it is read from the topic's trigger.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from outbox.exceptions import HandlerAlreadyRegistered, HandlerStartFailed, PayloadError

#: Largest payload a drainer reads (bytes of its JSON text); a larger one fails its event.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
#: Deepest nesting of lists and objects a payload may have. Below Python's default
#: recursion limit, so the same payload decodes (or fails) on every interpreter.
MAX_PAYLOAD_DEPTH = 512

_UNSET: Any = object()


def _deeper_than(value: Any, text: str, limit: int) -> bool:
    """Whether a decoded payload nests lists and objects more than ``limit`` deep.

    A payload with no more than ``limit`` brackets cannot be that deep, so the walk
    (iterative: a deep value must not recurse here either) runs only for the rare others.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:
        node, depth = level.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        level.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class Event:
    """A claimed outbox event, as handlers see it.

    ``attempts`` is the number of this run (1 on the first). ``payload`` is decoded
    on first use; a payload that cannot be decoded (too deep, too large, not a JSON
    object) raises ``PayloadError`` there, failing this event and no other.
    """

    __slots__ = ("id", "topic", "key", "attempts", "created_at", "_payload", "_payload_text", "_payload_size")

    id: int
    topic: str
    key: str
    attempts: int
    created_at: dt.datetime

    def __init__(
        self,
        id: int,  # noqa: A002 (the event's id)
        topic: str,
        key: str,
        payload: Mapping[str, Any] | None,
        attempts: int,
        created_at: dt.datetime,
        *,
        payload_text: str | None = None,
        payload_size: int | None = None,
    ) -> None:
        self.id = id
        self.topic = topic
        self.key = key
        self.attempts = attempts
        self.created_at = created_at
        self._payload: Any = _UNSET if payload is None else dict(payload)
        self._payload_text = payload_text
        self._payload_size = payload_size

    @classmethod
    def from_json(
        cls,
        id: int,  # noqa: A002
        topic: str,
        key: str,
        payload_text: str | None,
        payload_size: int,
        attempts: int,
        created_at: dt.datetime,
    ) -> Event:
        """An event whose payload is still JSON text (None: too large to read)."""
        return cls(id, topic, key, None, attempts, created_at, payload_text=payload_text, payload_size=payload_size)

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is _UNSET:
            self._payload = self._decode()
        return self._payload

    def _decode(self) -> dict[str, Any]:
        if self._payload_text is None:
            raise PayloadError(
                f"event {self.id}: payload of {self._payload_size} bytes is larger than "
                f"the {MAX_PAYLOAD_BYTES} bytes a drainer reads"
            )
        too_deep = f"nested deeper than {MAX_PAYLOAD_DEPTH} levels"
        try:
            value = json.loads(self._payload_text)
        except (RecursionError, ValueError, MemoryError) as exc:
            reason = too_deep if isinstance(exc, RecursionError) else str(exc) or type(exc).__name__
            raise PayloadError(f"event {self.id}: payload cannot be decoded: {reason}") from None
        if _deeper_than(value, self._payload_text, MAX_PAYLOAD_DEPTH):
            raise PayloadError(f"event {self.id}: payload cannot be decoded: {too_deep}")
        if not isinstance(value, dict):
            raise PayloadError(f"event {self.id}: payload is a JSON {type(value).__name__}, not an object")
        return value

    def replace(self, *, attempts: int) -> Event:
        """The same event with another attempt number."""
        event = Event(
            self.id,
            self.topic,
            self.key,
            None,
            attempts,
            self.created_at,
            payload_text=self._payload_text,
            payload_size=self._payload_size,
        )
        event._payload = self._payload
        return event

    def __repr__(self) -> str:
        return f"Event(id={self.id!r}, topic={self.topic!r}, key={self.key!r}, attempts={self.attempts!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and (self.id, self.attempts) == (other.id, other.attempts)

    def __hash__(self) -> int:
        return hash((self.id, self.attempts))


@dataclass(frozen=True)
class BatchResult:
    """What a batch handler did: outcome counts, and the events that failed.

    ``failed`` maps an event id to its error (text or exception): those events are
    retried after their backoff (or failed after max_attempts); the handler must not
    have written anything for them. Every other event of the batch is done.
    """

    outcomes: Mapping[str, int] = field(default_factory=dict)
    failed: Mapping[int, str | BaseException] = field(default_factory=dict)


Outcomes = Mapping[str, int]
BatchHandler = Callable[[Sequence[Event]], "Outcomes | BatchResult | None"]
EventHandler = Callable[[Event], "str | None"]
FailedCallback = Callable[[Sequence[Event], str], None]
StartHook = Callable[[], None]


@dataclass(frozen=True)
class Registration:
    topic: str
    handle_batch: BatchHandler
    on_failed: FailedCallback | None = None
    on_start: StartHook | None = None
    #: None: ordered if the topic's outbox_trigger has an order_key.
    ordered: bool | None = None
    log_label: str = ""
    outcome_names: tuple[str, ...] = ()
    batch: bool = True

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
        on_start: StartHook | None = None,
        ordered: bool | None = None,
        log_label: str = "",
        outcome_names: tuple[str, ...] = (),
        replace: bool = False,
    ) -> Registration:
        """Register ``handler`` for ``topic`` (``batch=True`` for a batch handler).

        ``log_label`` prefixes the drainer's per-batch log line and
        ``outcome_names`` are always printed in it, zero or not.
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
            on_start=on_start,
            ordered=ordered,
            log_label=log_label,
            outcome_names=tuple(outcome_names),
            batch=batch,
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
