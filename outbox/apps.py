import importlib.util
from typing import Any

from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from outbox import checks  # noqa: F401  (registers the system checks)
        from outbox.autodetector import patch_autodetector

        patch_autodetector()
        _register_task_queues()
        # Spans only if OpenTelemetry is installed (find_spec imports nothing) and, once a
        # drainer starts, a tracer provider is configured (outbox.tracing).
        if importlib.util.find_spec("opentelemetry") is not None:
            from outbox.signals import drainer_started

            drainer_started.connect(_start_tracing, dispatch_uid="outbox.tracing.start")


def _register_task_queues() -> None:
    """A drainer runs the tasks of every queue of an outbox.tasks.OutboxBackend in TASKS."""
    from outbox.handlers import registry
    from outbox.tasks.topics import register_queues

    if register_queues(registry):
        from outbox.tasks import compat  # noqa: F401  (the framework's backend checks; a clear error without one)


def _start_tracing(sender: Any, **kwargs: Any) -> None:
    from outbox import tracing

    tracing.install()
