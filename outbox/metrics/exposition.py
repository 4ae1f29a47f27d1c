"""The queue state in Prometheus' text format, for the view and the bench."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder

from outbox.metrics.queue import QueueStateCollector


def queue_state_registry(using: str = DEFAULT_DB_ALIAS) -> CollectorRegistry:
    """A registry holding only the queue-state collector of ``using`` (no process metrics:
    the web process's own are not the outbox's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueStateCollector(using))
    return registry


def queue_state_text(using: str = DEFAULT_DB_ALIAS) -> bytes:
    """One scrape, in the classic text format."""
    return generate_latest(queue_state_registry(using))


def queue_state_for(accept: str | None, using: str = DEFAULT_DB_ALIAS) -> tuple[bytes, str]:
    """One scrape in the format the ``Accept`` header asks for (text or OpenMetrics), and its type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(queue_state_registry(using)), content_type
