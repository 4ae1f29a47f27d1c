"""Which topics a drainer handles, and which of them keep per-key order."""

from __future__ import annotations

from collections.abc import Sequence

from outbox.exceptions import OutboxConfigError
from outbox.handlers import HandlerRegistry
from outbox.triggers import ordered_topics


def handled_topics(registry: HandlerRegistry, wanted: Sequence[str]) -> list[str]:
    """The topics asked for (``--topic``; none: every registered one), each with a handler."""
    registered = registry.topics()
    if not wanted:
        return registered
    unknown = [topic for topic in wanted if topic not in registered]
    if unknown:
        raise OutboxConfigError(
            f"no handler is registered for topic(s) {', '.join(map(repr, unknown))} "
            f"(registered: {', '.join(registered) or 'none'})"
        )
    return sorted(set(wanted))


def ordered_of(registry: HandlerRegistry, topics: Sequence[str]) -> list[str]:
    """Those of ``topics`` that keep per-key order: the handler says so, or else the
    topic's trigger has an order key."""
    from_triggers = ordered_topics()
    ordered = []
    for topic in topics:
        registration = registry.get(topic)
        flag = registration.ordered if registration is not None else None
        if flag or (flag is None and topic in from_triggers):
            ordered.append(topic)
    return ordered
