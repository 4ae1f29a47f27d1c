"""Django's Tasks framework on the outbox: ``TASKS = {"default": {"BACKEND": "outbox.tasks.OutboxBackend"}}``.

A task is an outbox event, written in the caller's transaction and run by
``drain_outbox`` inside the transaction that acks it (docs/tasks.md). Modules:

* ``topics``: queue name -> topic, and the drainer's handler for each configured queue
  (registered by outbox's ``AppConfig.ready()``; imports no tasks framework);
* ``compat``: ``django.tasks`` (Django 6) or the ``django-tasks`` backport (Django 5.2);
* ``backend``: ``OutboxBackend``: enqueue, get_result, the feature flags, validation, checks;
* ``payload``: what an event carries (the task's path, its JSON arguments, its options);
* ``runner``: the drainer-side batch handler that imports and runs each task;
* ``results``: the task's result row (``outbox_task_result``) and the ``TaskResult`` read back;
* ``signals``: what the runner learns from the drainer's own signals.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OutboxBackend"]


def __getattr__(name: str) -> Any:
    # Lazily: outbox imports outbox.tasks.topics at start-up, on projects without a
    # tasks framework too; only the backend needs django.tasks (or django_tasks).
    if name == "OutboxBackend":
        from outbox.tasks.backend import OutboxBackend

        return OutboxBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
