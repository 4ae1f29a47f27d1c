"""What a task's outbox event carries, and reading it back on the drainer's side.

The payload is a JSON object: the import path of the task (the module-level
``@task`` object), its arguments as JSON, and the options of this enqueue
(backend, queue, priority, run_after). The event's key is the task's path, so the
admin's list and ``outbox_status`` say which function each event runs.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from django.utils.module_loading import import_string

from outbox.exceptions import OutboxError, PayloadError


class TaskNotFound(OutboxError):
    """The event's task cannot be imported in this drainer."""


@dataclass(frozen=True)
class TaskPayload:
    """The decoded payload of a task event."""

    path: str
    args: list[Any]
    kwargs: dict[str, Any]
    backend: str
    queue_name: str
    priority: int
    run_after: dt.datetime | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "task": self.path,
                "args": self.args,
                "kwargs": self.kwargs,
                "backend": self.backend,
                "queue": self.queue_name,
                "priority": self.priority,
                "run_after": None if self.run_after is None else self.run_after.isoformat(),
            },
            allow_nan=False,
        )

    @classmethod
    def from_mapping(cls, event_id: int, payload: Mapping[str, Any]) -> TaskPayload:
        """Read an event's payload; a payload not written by OutboxBackend raises PayloadError."""
        try:
            path, args, kwargs = payload["task"], payload["args"], payload["kwargs"]
            backend, queue, priority = payload["backend"], payload["queue"], payload["priority"]
            run_after = payload.get("run_after")
        except KeyError as exc:
            raise PayloadError(f"event {event_id}: not a task payload, no {exc.args[0]!r}") from None
        if not (
            isinstance(path, str)
            and isinstance(args, list)
            and isinstance(kwargs, dict)
            and isinstance(backend, str)
            and isinstance(queue, str)
            and isinstance(priority, int)
            and (run_after is None or isinstance(run_after, str))
        ):
            raise PayloadError(f"event {event_id}: not a task payload (a field has the wrong type)")
        try:
            when = None if run_after is None else dt.datetime.fromisoformat(run_after)
        except ValueError:
            raise PayloadError(f"event {event_id}: run_after {run_after!r} is not an ISO 8601 time") from None
        return cls(path, args, kwargs, backend, queue, priority, when)

    def load_task(self) -> Any:
        """The task object, with this enqueue's options (TaskNotFound if it is gone)."""
        return _task(self.path, self.backend, self.queue_name, self.priority, self.run_after)


@lru_cache(maxsize=1024)
def _task(path: str, backend: str, queue_name: str, priority: int, run_after: dt.datetime | None) -> Any:
    from outbox.tasks.compat import Task

    try:
        task = import_string(path)
    except ImportError as exc:
        raise TaskNotFound(
            f"task {path!r} cannot be imported: {exc} (renamed or removed? once it is back, outbox_retry its events)"
        ) from None
    if not isinstance(task, Task):
        raise TaskNotFound(f"{path!r} is a {type(task).__name__}, not a task (a function decorated with @task)")
    try:
        return replace(task, backend=backend, queue_name=queue_name, priority=priority, run_after=run_after)
    except Exception as exc:  # the backend is not configured here, or refuses the task
        raise TaskNotFound(f"task {path!r} cannot run on backend {backend!r} here: {exc}") from None
