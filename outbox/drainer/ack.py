"""Turning what the handlers did into acks: done, retry after a backoff, or failed.

Attempts: an event's run is counted by its ack (done or failure), or, for a
suspect running alone, just before it runs (docs/guarantees.md#attempts); the
``attempts`` of the Event a handler saw is that run's number.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from django.db import transaction

from outbox.conf import OutboxSettings
from outbox.drainer.store import Failure
from outbox.exceptions import AbandonedEvent
from outbox.handlers import Event, HandlerRegistry

logger = logging.getLogger(__name__)


def format_error(error: BaseException | str, limit: int) -> str:
    """``module.Class: message`` (or the text), cut to ``limit`` characters."""
    if isinstance(error, BaseException):
        text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
    else:
        text = str(error)
    if len(text) > limit:
        text = text[: limit - 20] + f"... [{len(text) - limit + 20} more]"
    return text


def backoff(settings: OutboxSettings, attempts: int) -> float:
    """Seconds before retry number ``attempts``: exponential, capped, with jitter."""
    delay = min(settings.backoff_cap, settings.backoff_base * (2 ** max(attempts - 1, 0)))
    return delay * (1 + settings.backoff_jitter * random.random())  # noqa: S311 (jitter, not crypto)


def failures(
    events: Mapping[int, Event], errors: Mapping[int, BaseException | str], settings: OutboxSettings
) -> list[Failure]:
    """The ack of each failed event: retried after its backoff, or failed for good."""
    result = []
    for event_id, error in errors.items():
        event = events[event_id]
        final = event.attempts >= settings.max_attempts or isinstance(error, AbandonedEvent)
        delay = 0.0 if final else backoff(settings, event.attempts)
        result.append(Failure(event_id, event.attempts, final, format_error(error, settings.error_max_length), delay))
    return result


def run_on_failed(registry: HandlerRegistry, events: Iterable[Event], failed: Sequence[Failure], using: str) -> None:
    """Each topic's ``on_failed`` for the events failed for good, in the acking transaction.

    A callback that raises is logged and its savepoint rolled back: the events are
    failed all the same.
    """
    errors = {f.id: f.error for f in failed if f.final}
    by_topic: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.id in errors:
            by_topic[event.topic].append(event)
    for topic, topic_events in by_topic.items():
        registration = registry.get(topic)
        if registration is None or registration.on_failed is None:
            continue
        for event in topic_events:
            try:
                with transaction.atomic(using=using):
                    registration.on_failed([event], errors[event.id])
            except Exception:
                logger.exception("event=%s topic=%s on_failed callback raised", event.id, topic)


def log_failures(events: Mapping[int, Event], failed: Sequence[Failure], settings: OutboxSettings) -> None:
    for failure in failed:
        event = events[failure.id]
        if failure.final:
            logger.error(
                "event=%s topic=%s failed after %d attempt(s): %s", event.id, event.topic, event.attempts, failure.error
            )
        else:
            logger.warning(
                "event=%s topic=%s attempt=%d/%d failed, retrying in %.1fs: %s",
                event.id,
                event.topic,
                event.attempts,
                settings.max_attempts,
                failure.delay,
                failure.error,
            )
