"""Errors raised by the outbox. Each docstring is the default message."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class OutboxError(Exception):
    """The outbox failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class OutboxConfigError(OutboxError, ImproperlyConfigured):
    """The OUTBOX settings are invalid."""


class PayloadError(OutboxError):
    """The event's payload cannot be decoded."""


class HandlerAlreadyRegistered(OutboxError):
    """A handler is already registered for this topic."""


class AbandonedEvent(OutboxError):
    """The event's runs never finished max_attempts times (each killed or stalled its drainer)."""


class HandlerStartFailed(OutboxError, ImproperlyConfigured):
    """A handler's on_start raised: the drainer must not claim anything."""
