"""Queue name -> outbox topic, and the drainer's handler for every configured queue.

Each queue of an ``OutboxBackend`` in ``TASKS`` is the topic ``tasks.<queue>``, so
``drain_outbox --topic tasks.emails`` runs one queue. outbox's ``AppConfig.ready()``
calls ``register_queues()``; this module imports no tasks framework, so projects
without one (or without an OutboxBackend) pay nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.conf import settings

from outbox.handlers import HandlerRegistry

#: Every task topic starts with it (get_result refuses the id of any other event).
TOPIC_PREFIX = "tasks."
#: The BACKEND strings that name OutboxBackend (the module path and the package's).
BACKEND_PATHS = frozenset({"outbox.tasks.OutboxBackend", "outbox.tasks.backend.OutboxBackend"})
#: QUEUES when a backend does not say, as in Django.
DEFAULT_QUEUES = ("default",)


def topic_for(queue_name: str) -> str:
    """The outbox topic of a task queue."""
    return f"{TOPIC_PREFIX}{queue_name}"


def outbox_backends(tasks: Mapping[str, Any] | None = None) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(alias, params) of each ``TASKS`` entry whose BACKEND is OutboxBackend."""
    configured = getattr(settings, "TASKS", {}) if tasks is None else tasks
    if not isinstance(configured, Mapping):
        return
    for alias, params in configured.items():
        if isinstance(params, Mapping) and params.get("BACKEND") in BACKEND_PATHS:
            yield alias, params


def configured_topics(tasks: Mapping[str, Any] | None = None) -> list[str]:
    """The topics of every queue of every OutboxBackend, sorted."""
    topics = set()
    for _alias, params in outbox_backends(tasks):
        queues = params.get("QUEUES", DEFAULT_QUEUES)
        if isinstance(queues, list | tuple | set | frozenset):
            topics.update(topic_for(q) for q in queues if isinstance(q, str) and q)
    return sorted(topics)


def register_queues(registry: HandlerRegistry) -> list[str]:
    """Register the task runner for each configured queue's topic; returns those topics."""
    topics = configured_topics()
    if not topics:
        return []
    from outbox.tasks import signals
    from outbox.tasks.runner import runner

    signals.connect(runner, TOPIC_PREFIX)
    for topic in topics:
        if topic not in registry:
            registry.register(topic, runner, batch=True, ordered=False, log_label=f"Tasks {topic}")
    return topics
