"""A task's result: its row in ``outbox_task_result``, and the ``TaskResult`` read back.

Status and the enqueue and finish times come from the task's outbox event (pending ->
READY, or RUNNING while a live drainer holds it; done -> SUCCESSFUL; failed ->
FAILED); the row adds what the runs that ended left: the first and latest start,
the return value, one error per run that raised, and the drainer of each run. It is
written in the transaction that acks the run, so it is never ahead of the event.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from outbox.sql import queries

#: Longest traceback kept per error (characters; the end is kept, where the raise is).
TRACEBACK_MAX_CHARS = 32_000


@dataclass(frozen=True)
class Prior:
    """What a task's earlier runs left, for the TaskResult its next run sees."""

    started_at: dt.datetime | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    worker_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ended:
    """One run that ended: its return value (JSON text) or its error."""

    event_id: int
    started_at: dt.datetime
    finished_at: dt.datetime
    value_json: str | None = None
    error: dict[str, str] | None = None


def result_id(alias: str, event_id: int, home: str) -> str:
    """A task result's id: its event's id, prefixed by the alias when not the backend's own."""
    return str(event_id) if alias == home else f"{alias}:{event_id}"


def parse_result_id(text: object, home: str) -> tuple[str, int] | None:
    """(alias, event id) of a result id, None if it cannot be one."""
    if not isinstance(text, str | int):
        return None
    alias, _, number = str(text).rpartition(":")
    alias = alias or home
    if not number.isdigit() or alias not in connections.settings or len(number) > 18:
        return None
    return alias, int(number)


def error_record(exception_class_path: str, traceback: str) -> dict[str, str]:
    if len(traceback) > TRACEBACK_MAX_CHARS:
        traceback = f"[{len(traceback) - TRACEBACK_MAX_CHARS} characters cut]\n" + traceback[-TRACEBACK_MAX_CHARS:]
    return {"exception_class_path": exception_class_path, "traceback": traceback}


def prior(alias: str, event_ids: Sequence[int]) -> dict[int, Prior]:
    """What earlier runs of these tasks left (no statement when there are none to ask)."""
    if not event_ids:
        return {}
    with connections[alias].cursor() as cursor:
        cursor.execute(queries.task_result_prior, {"ids": list(event_ids)})
        rows = cursor.fetchall()
    return {row[0]: Prior(row[1], json.loads(row[2]), list(row[3])) for row in rows}


def record(alias: str, ended: Sequence[Ended], worker_id: str) -> None:
    """Write the runs that ended, in the current (the drainer's) transaction: one statement."""
    if not ended:
        return
    with connections[alias].cursor() as cursor:
        cursor.execute(
            queries.task_result_record,
            {
                "ids": [e.event_id for e in ended],
                "started": [e.started_at for e in ended],
                "finished": [e.finished_at for e in ended],
                "values": [e.value_json for e in ended],
                "errors": [json.dumps([] if e.error is None else [e.error]) for e in ended],
                "worker": worker_id,
            },
        )


@dataclass(frozen=True)
class Stored:
    """One row of ``task_result_get``."""

    topic: str
    status: str
    created_at: dt.datetime
    processed_at: dt.datetime | None
    attempts: int
    payload_text: str
    last_error: str
    locked_by: str | None
    running: bool
    started_at: dt.datetime | None
    last_attempted_at: dt.datetime | None
    finished_at: dt.datetime | None
    return_value_text: str | None
    errors_text: str | None
    worker_ids: list[str] | None

    @property
    def payload(self) -> Mapping[str, Any]:
        value = json.loads(self.payload_text)
        return value if isinstance(value, dict) else {}

    @property
    def errors(self) -> list[dict[str, str]]:
        """The runs' errors; a task failed without one (abandoned, or by an operator) gets its last_error."""
        errors = json.loads(self.errors_text) if self.errors_text else []
        if (
            self.status == "failed"
            and self.last_error
            and not any(self.last_error.split(":", 1)[0] == e.get("exception_class_path") for e in errors[-1:])
        ):
            errors.append(error_record(self.last_error.split(":", 1)[0], self.last_error))
        return errors

    @property
    def finished(self) -> dt.datetime | None:
        """When its last run ended (the drainer's ack, for a task failed without a run: abandoned)."""
        times = [t for t in (self.finished_at, self.processed_at) if t is not None]
        return max(times) if times else None

    @property
    def workers(self) -> list[str]:
        workers = list(self.worker_ids or [])
        if self.running and self.locked_by:
            workers.append(self.locked_by)
        return workers


def task_errors(errors: Sequence[Mapping[str, str]]) -> list[Any]:
    """Stored error records as the framework's ``TaskError`` objects."""
    from outbox.tasks.compat import TaskError

    return [TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"]) for e in errors]


def task_result(
    task: Any,
    *,
    id: str,  # noqa: A002 (TaskResult's own name)
    status: str,
    enqueued_at: dt.datetime | None,
    started_at: dt.datetime | None = None,
    last_attempted_at: dt.datetime | None = None,
    finished_at: dt.datetime | None = None,
    args: list[Any],
    kwargs: dict[str, Any],
    errors: Sequence[Mapping[str, str]] = (),
    worker_ids: Sequence[str] = (),
    return_value: Any = None,
) -> Any:
    """A framework ``TaskResult`` (frozen: the return value is set as Django's backends set it)."""
    from outbox.tasks.compat import TaskResult, TaskResultStatus

    result = TaskResult(
        task=task,
        id=id,
        status=TaskResultStatus(status),
        enqueued_at=enqueued_at,
        started_at=started_at,
        last_attempted_at=last_attempted_at,
        finished_at=finished_at,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=task_errors(errors),
        worker_ids=list(worker_ids),
    )
    object.__setattr__(result, "_return_value", return_value)
    return result


def fetch(alias: str, event_id: int) -> Stored | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(queries.task_result_get, {"id": event_id})
        row = cursor.fetchone()
    return None if row is None else Stored(*row)


__all__ = ["Ended", "Prior", "Stored", "fetch", "parse_result_id", "prior", "record", "result_id"]
