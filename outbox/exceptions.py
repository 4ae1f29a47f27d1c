"""Errors raised by the outbox. Each docstring is the default message."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class OutboxError(Exception):
    """The outbox failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class OutboxConfigError(OutboxError, ImproperlyConfigured):
    """The OUTBOX settings are invalid."""


class UnknownTopic(OutboxError):
    """No handler is registered for this event's topic."""


class HandlerAlreadyRegistered(OutboxError):
    """A handler is already registered for this topic."""


class HandlerStartFailed(OutboxError):
    """A handler's on_start raised: the drainer must not claim anything."""


class LeaseLost(OutboxError):
    """This drainer no longer holds the lease on the event: another drainer reclaimed it."""


class AbandonedEvent(OutboxError):
    """The event was claimed max_attempts times without completing (its drainer died or stalled)."""
