"""The drainer's side of tasks: the batch handler of every ``tasks.<queue>`` topic.

Each task runs inside the drainer's processing transaction, so its database writes
commit with its ack (and its result row), or none of them does. Runs of a batch
share that transaction without savepoints; when a task raises, its run is kept and
re-raised, the drainer rolls the batch back and runs it again in halves
(docs/guarantees.md#processing), and this handler then reuses the kept verdict
instead of running that task again: a task runs once per attempt. A batch of one
task runs it in a savepoint, so its error is recorded and the drainer acks it
(retry after the backoff, or failed after max_attempts).
"""

from __future__ import annotations

import datetime as dt
import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from outbox.conf import get_settings
from outbox.databases import current_database
from outbox.handlers import BatchResult, Event
from outbox.tasks import results
from outbox.tasks.payload import TaskPayload


def _error(exc: BaseException) -> dict[str, str]:
    kind = type(exc)
    return results.error_record(f"{kind.__module__}.{kind.__qualname__}", "".join(traceback.format_exception(exc)))


@dataclass(frozen=True)
class _Run:
    ended: results.Ended
    exception: BaseException | None = None


class _RolledBack(Exception):
    """Leaves the savepoint of a run that raised, rolling back its writes."""

    def __init__(self, run: _Run) -> None:
        super().__init__(run.ended.event_id)
        self.run = run


class TaskRunner:
    """Runs the tasks of a batch; one instance per process (``runner``)."""

    def __init__(self) -> None:
        #: The drainer's identity and max_attempts (outbox.tasks.signals sets them).
        self.worker_id = ""
        self._max_attempts: int | None = None
        #: Runs that raised in a batch rolled back since: (event id, attempt) -> the run.
        self.raised: dict[tuple[int, int], _Run] = {}

    @property
    def max_attempts(self) -> int:
        """The drainer's; OUTBOX's until a drainer says (read when first needed, not at import:
        outbox's ready() imports this module, and a bad OUTBOX is the system checks' to report)."""
        if self._max_attempts is None:
            self._max_attempts = get_settings().max_attempts
        return self._max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int) -> None:
        self._max_attempts = value

    def __call__(self, events: Sequence[Event]) -> BatchResult:
        alias = current_database()
        earlier = results.prior(alias, [e.id for e in events if e.attempts > 1])
        alone = len(events) == 1
        runs: list[_Run] = []
        for event in events:
            run = self.raised.get((event.id, event.attempts))
            if run is None and alone:
                run = self._run_in_savepoint(alias, event, earlier.get(event.id))
            elif run is None:
                run = self._run(alias, event, earlier.get(event.id))
                if run.exception is not None:
                    self.raised[(event.id, event.attempts)] = run
                    raise run.exception
            runs.append(run)
        results.record(alias, [r.ended for r in runs], self.worker_id)
        failed = {r.ended.event_id: r.exception for r in runs if r.exception is not None}
        return BatchResult(outcomes={"ran": len(runs) - len(failed), "raised": len(failed)}, failed=failed)

    def _run_in_savepoint(self, alias: str, event: Event, prior: results.Prior | None) -> _Run:
        try:
            with transaction.atomic(using=alias):
                run = self._run(alias, event, prior)
                if run.exception is not None:
                    raise _RolledBack(run)
        except _RolledBack as rolled_back:
            return rolled_back.run
        return run

    def _run(self, alias: str, event: Event, prior: results.Prior | None) -> _Run:
        from outbox.tasks import compat

        started = timezone.now()
        try:
            payload = TaskPayload.from_mapping(event.id, event.payload)
            task = payload.load_task()
        except Exception as exc:
            return _Run(results.Ended(event.id, started, timezone.now(), error=_error(exc)), exc)
        backend = compat.task_backends[payload.backend]
        prior = prior or results.Prior()
        result = results.task_result(
            task,
            id=results.result_id(alias, event.id, backend.home),
            status="RUNNING",
            enqueued_at=event.created_at,
            started_at=prior.started_at or started,
            last_attempted_at=started,
            args=payload.args,
            kwargs=payload.kwargs,
            errors=prior.errors,
            worker_ids=[*prior.worker_ids, self.worker_id],
        )
        sender = type(backend)
        compat.task_started.send(sender=sender, task_result=result)
        try:
            if task.takes_context:
                value = task.call(compat.TaskContext(task_result=result), *payload.args, **payload.kwargs)
            else:
                value = task.call(*payload.args, **payload.kwargs)
            value = compat.normalize_json(value)
            value_json = json.dumps(value, allow_nan=False)
        except Exception as exc:
            finished, error = timezone.now(), _error(exc)
            if event.attempts >= self.max_attempts:  # failed for good: finished
                _finish(result, "FAILED", finished, sender, errors=[*prior.errors, error])
            return _Run(results.Ended(event.id, started, finished, error=error), exc)
        finished = timezone.now()
        _finish(result, "SUCCESSFUL", finished, sender, value=value)
        return _Run(results.Ended(event.id, started, finished, value_json=value_json))


def _finish(
    result: object,
    status: str,
    finished: dt.datetime,
    sender: type,
    *,
    errors: list[dict[str, str]] | None = None,
    value: object = None,
) -> None:
    """task_finished (sent inside the except block on failure: receivers see sys.exc_info())."""
    from outbox.tasks import compat

    object.__setattr__(result, "status", compat.TaskResultStatus(status))
    object.__setattr__(result, "finished_at", finished)
    object.__setattr__(result, "_return_value", value)
    if errors is not None:
        object.__setattr__(result, "errors", results.task_errors(errors))
    compat.task_finished.send(sender=sender, task_result=result)


#: The process's runner, registered for every task topic (outbox.tasks.topics).
runner = TaskRunner()
