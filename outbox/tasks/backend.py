"""``OutboxBackend``: a ``django.tasks`` backend whose tasks are outbox events.

``enqueue()`` is one INSERT into ``outbox_event`` in the caller's transaction: rolled
back, the task never runs; committed, ``drain_outbox`` runs it, inside the
transaction that acks it (outbox.tasks.runner). No ``transaction.on_commit`` is
needed. ``get_result()`` reads the event and its result row from any process.
docs/tasks.md has the whole picture.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections

from outbox.databases import current_database
from outbox.sql import queries
from outbox.tasks import compat, results
from outbox.tasks.payload import TaskNotFound, TaskPayload
from outbox.tasks.topics import DEFAULT_QUEUES, TOPIC_PREFIX, topic_for

#: The keys OPTIONS may have.
OPTION_KEYS = frozenset({"DATABASE"})

_STATUS = {"done": "SUCCESSFUL", "failed": "FAILED"}


class OutboxBackend(compat.BaseTaskBackend):
    """Tasks that commit with the caller's data and run their database effects exactly once.

    ``OPTIONS["DATABASE"]``: the alias whose outbox gets the tasks (default: the
    database being drained when a task enqueues another, else ``default``).
    """

    #: run_after becomes the event's available_at.
    supports_defer = True
    #: Results are rows of the database, readable from any process.
    supports_get_result = True
    #: Drainers claim in id order: a priority would not change which task runs first.
    supports_priority = False
    #: An async task runs to completion in the drainer's thread (its ORM calls in the
    #: drainer's transaction), through the framework's Task.call().
    supports_async_task = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        #: What is wrong with these params: (check id, message); check() reports them and
        #: enqueue() refuses to run with any (a process that runs no checks, gunicorn's).
        self.problems = _problems(alias, params)
        if any(check_id == "outbox.E054" for check_id, _ in self.problems):
            params = {**params, "QUEUES": []}  # the framework's set() of it would raise a bare TypeError
        super().__init__(alias, params)
        database = self.options.get("DATABASE") if isinstance(self.options, dict) else None
        self.database: str | None = database if isinstance(database, str) else None

    @property
    def home(self) -> str:
        """The alias of result ids without a prefix (and get_result's default)."""
        return self.database or DEFAULT_DB_ALIAS

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        if self.problems:
            raise ImproperlyConfigured("; ".join(f"{message} ({check_id})" for check_id, message in self.problems))
        self.validate_task(task)
        alias = self.database or current_database()
        result = results.task_result(
            task, id="", status="READY", enqueued_at=None, args=list(args), kwargs=dict(kwargs)
        )  # normalises the arguments (TypeError for one JSON cannot hold), as Django's backends do
        payload = TaskPayload(
            path=task.module_path,
            args=result.args,
            kwargs=result.kwargs,
            backend=self.alias,
            queue_name=task.queue_name,
            priority=task.priority,
            run_after=task.run_after,
        )
        try:
            text = payload.to_json()
        except ValueError as exc:
            raise TypeError(f"the arguments of task {task.module_path} cannot be stored as JSON: {exc}") from None
        with connections[alias].cursor() as cursor:
            cursor.execute(
                queries.task_enqueue,
                {
                    "topic": topic_for(task.queue_name),
                    "key": task.module_path,
                    "payload": text,
                    "run_after": task.run_after,
                },
            )
            event_id, created_at = cursor.fetchone()
        object.__setattr__(result, "id", results.result_id(alias, event_id, self.home))
        object.__setattr__(result, "enqueued_at", created_at)
        compat.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        where = results.parse_result_id(result_id, self.home)
        stored = None if where is None else results.fetch(*where)
        if where is None or stored is None:
            raise compat.TaskResultDoesNotExist(f"no task result with id {result_id!r}")
        alias, event_id = where
        try:
            payload = TaskPayload.from_mapping(event_id, stored.payload)
            task = payload.load_task()
        except (TaskNotFound, ValueError) as exc:
            raise compat.TaskResultDoesNotExist(f"task result {result_id!r} cannot be read here: {exc}") from None
        status = _STATUS.get(stored.status) or ("RUNNING" if stored.running else "READY")
        return results.task_result(
            task,
            id=results.result_id(alias, event_id, self.home),
            status=status,
            enqueued_at=stored.created_at,
            started_at=stored.started_at,
            last_attempted_at=stored.last_attempted_at,
            finished_at=stored.finished if stored.status in _STATUS else None,
            args=payload.args,
            kwargs=payload.kwargs,
            errors=stored.errors,
            worker_ids=stored.workers,
            return_value=json.loads(stored.return_value_text) if stored.return_value_text else None,
        )

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        yield from super().check(**kwargs)
        for check_id, message in self.problems:
            yield checks.Error(message, hint=_HINTS.get(check_id), id=check_id)


_HINTS = {
    "outbox.E051": f"OutboxBackend knows {', '.join(sorted(OPTION_KEYS))}",
    "outbox.E053": f"each queue is the topic {TOPIC_PREFIX}<queue>, which drainers claim only when it is listed",
    "outbox.E054": "e.g. 'QUEUES': ['default', 'emails']: each queue is the topic " + TOPIC_PREFIX + "<queue>",
}


def _problems(alias: str, params: Any) -> list[tuple[str, str]]:
    """(check id, message) for each problem of one TASKS entry's QUEUES and OPTIONS."""
    where = f"TASKS[{alias!r}]"
    found: list[tuple[str, str]] = []
    options = params.get("OPTIONS", {})
    if not isinstance(options, dict):
        found.append(("outbox.E050", f"{where}['OPTIONS'] must be a dict, got {options!r}"))
    else:
        for key in sorted((k for k in options if k not in OPTION_KEYS), key=repr):
            found.append(("outbox.E051", f"{where}['OPTIONS'] has an unknown key {key!r}"))
        database = options.get("DATABASE")
        if database is not None and (not isinstance(database, str) or database not in connections.settings):
            found.append(("outbox.E052", f"{where}['OPTIONS']['DATABASE'] is {database!r}, which is not in DATABASES"))
    queues = params.get("QUEUES", DEFAULT_QUEUES)
    if not isinstance(queues, list | tuple | set | frozenset) or not all(isinstance(q, str) and q for q in queues):
        found.append(
            ("outbox.E054", f"{where}['QUEUES'] must be a list of queue names (non-empty strings), got {queues!r}")
        )
    elif not queues:
        found.append(("outbox.E053", f"{where}['QUEUES'] is empty: OutboxBackend needs the list of its queues"))
    return found
