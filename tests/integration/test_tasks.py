"""outbox.tasks.OutboxBackend in one process: enqueue in the caller's transaction, a drainer
runs the task in the acking transaction, results read back (docs/tasks.md).

The drainer here is the real one (outbox.drainer.Drainer) on the test database; the
tests in tests/process/test_tasks_drainers.py use drain_outbox subprocesses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from outbox import operations
from outbox.drainer import Drainer, DrainerConfig, DrainResult
from outbox.handlers import registry
from outbox.models import OutboxEvent, OutboxTaskResult
from outbox.tasks import OutboxBackend, compat
from outbox.tasks.topics import configured_topics
from tests.taskapp import tasks
from tests.taskapp.models import TaskEffect

pytestmark = pytest.mark.django_db(transaction=True)


def drain(**overrides: object) -> DrainResult:
    drainer = Drainer(DrainerConfig.from_settings(**{"batch_size": 50, **overrides}))
    try:
        return drainer.drain()
    finally:
        drainer.close()


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    tasks.RUNS.clear()
    yield
    tasks.RUNS.clear()


def labels() -> list[str]:
    return sorted(TaskEffect.objects.values_list("label", flat=True))


def make_due(result_id: str) -> None:
    """Skip a retry's backoff: the event is claimable now (the test's clock, not a sleep)."""
    OutboxEvent.objects.filter(id=int(result_id)).update(available_at=timezone.now())


def test_every_configured_queue_is_a_registered_topic() -> None:
    assert configured_topics() == ["tasks.default", "tasks.other"]
    for topic in configured_topics():
        registration = registry.get(topic)
        assert registration is not None, f"{topic} has no handler: drainers would never claim its tasks"
        assert registration.ordered is False


def test_a_rolled_back_enqueue_runs_nothing() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.record.enqueue("rolled back")
        assert OutboxEvent.objects.filter(id=int(result.id)).exists()  # written in the transaction
        raise RuntimeError("the caller's transaction fails")

    assert not OutboxEvent.objects.exists(), "an event outlived the rollback of its enqueue"
    assert drain().claimed == 0
    assert labels() == []
    with pytest.raises(compat.TaskResultDoesNotExist):
        tasks.record.get_result(result.id)


def test_a_committed_enqueue_runs_once_and_its_result_reads_back() -> None:
    with transaction.atomic():
        result = tasks.record.enqueue("committed")
        TaskEffect.objects.create(label="the caller's own row")
    event = OutboxEvent.objects.get(id=int(result.id))
    assert (event.topic, event.key, event.status) == ("tasks.default", "tests.taskapp.tasks.record", "pending")
    assert result.status == compat.TaskResultStatus.READY and result.enqueued_at == event.created_at
    ready = tasks.record.get_result(result.id)
    assert (ready.status, ready.args, ready.worker_ids, ready.errors) == ("READY", ["committed"], [], [])

    total = drain()

    assert (total.claimed, total.done, total.failed) == (1, 1, 0), total
    assert labels() == ["committed", "the caller's own row"]
    assert tasks.RUNS["committed"] == 1
    done = tasks.record.get_result(result.id)
    effect = TaskEffect.objects.get(label="committed")
    assert done.status == compat.TaskResultStatus.SUCCESSFUL
    assert done.return_value == {"label": "committed", "id": effect.id}
    assert done.attempts == 1 and len(done.worker_ids) == 1 and done.worker_ids[0].startswith("outbox:")
    assert done.enqueued_at <= done.started_at == done.last_attempted_at <= done.finished_at
    assert done.errors == []
    result.refresh()
    assert result.status == "SUCCESSFUL" and result.return_value == done.return_value

    assert drain().claimed == 0, "a done task was claimed again"
    assert TaskEffect.objects.filter(label="committed").count() == 1


def test_return_values_round_trip_as_json() -> None:
    result = tasks.add.enqueue(2, 3.5)
    assert OutboxEvent.objects.get(id=int(result.id)).topic == "tasks.other"
    drain()
    assert tasks.add.get_result(result.id).return_value == 5.5


def test_a_return_value_json_cannot_hold_fails_the_task() -> None:
    result = tasks.returns_a_set.enqueue()
    drain(max_attempts=1)
    failed = tasks.returns_a_set.get_result(result.id)
    assert failed.status == "FAILED"
    assert [e.exception_class_path for e in failed.errors] == ["builtins.TypeError"]
    assert "Unsupported type" in failed.errors[0].traceback


def test_run_after_is_honoured() -> None:
    later = timezone.now() + dt.timedelta(hours=1)
    result = tasks.record.using(run_after=later).enqueue("later")
    event = OutboxEvent.objects.get(id=int(result.id))
    assert event.available_at == later

    assert drain().claimed == 0, "a task was claimed before its run_after"
    assert labels() == []
    assert tasks.record.get_result(result.id).status == "READY"
    assert tasks.record.get_result(result.id).task.run_after == later

    OutboxEvent.objects.filter(id=event.id).update(available_at=timezone.now())  # the hour has passed
    assert drain().done == 1
    assert labels() == ["later"]


def test_a_task_that_raises_is_retried_with_backoff_then_failed_with_its_error() -> None:
    result = tasks.write_then_raise.enqueue("boom")
    before = timezone.now()
    # A long backoff: a drain that outlasts the default 1 s one on a busy machine would
    # take the retry itself; make_due() fast-forwards instead.

    first = drain(max_attempts=3, backoff_base=60.0)

    assert (first.claimed, first.retried, first.failed) == (1, 1, 0), first
    event = OutboxEvent.objects.get(id=int(result.id))
    assert event.status == "pending" and event.attempts == 1
    assert event.available_at >= before + dt.timedelta(seconds=45), "no backoff before the retry"
    assert event.last_error == "tests.taskapp.tasks.Boom: boom boom"
    waiting = tasks.write_then_raise.get_result(result.id)
    assert waiting.status == "READY" and len(waiting.errors) == 1 and waiting.attempts == 1
    assert drain(max_attempts=3, backoff_base=60.0).claimed == 0, "retried before its backoff"

    for _ in range(2):
        make_due(result.id)
        drain(max_attempts=3, backoff_base=60.0)

    failed = tasks.write_then_raise.get_result(result.id)
    assert failed.status == compat.TaskResultStatus.FAILED
    assert failed.finished_at is not None and failed.attempts == 3
    assert [e.exception_class_path for e in failed.errors] == ["tests.taskapp.tasks.Boom"] * 3
    assert failed.errors[0].exception_class is tasks.Boom
    assert 'raise Boom(f"boom {label}")' in failed.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        failed.return_value  # noqa: B018 (Django's TaskResult raises for a failed task)
    assert labels() == [], "the writes of a run that raised were committed"
    assert tasks.RUNS["boom"] == 3, "a task that raises runs once per attempt"


def test_one_task_raising_in_a_batch_fails_alone_and_runs_once_per_attempt() -> None:
    ids = [tasks.record.enqueue(f"ok-{i}").id for i in range(9)]
    bad = tasks.write_then_raise.enqueue("bad")
    ids += [tasks.record.enqueue(f"ok-{i}").id for i in range(9, 20)]

    total = drain(max_attempts=2)

    assert (total.claimed, total.done, total.retried) == (21, 20, 1), total
    assert labels() == sorted(f"ok-{i}" for i in range(20)), "an innocent task's write was lost or doubled"
    assert tasks.RUNS["bad"] == 1, "the failing task ran again in the drainer's re-run of the batch"
    assert all(tasks.record.get_result(i).status == "SUCCESSFUL" for i in ids)
    raised = tasks.write_then_raise.get_result(bad.id)
    assert raised.status == "READY" and len(raised.errors) == 1


def test_a_context_task_sees_its_attempt_and_the_previous_errors() -> None:
    result = tasks.flaky.enqueue("flaky")
    drain(max_attempts=3)
    make_due(result.id)
    drain(max_attempts=3)

    done = tasks.flaky.get_result(result.id)
    assert done.status == "SUCCESSFUL" and done.return_value == 2
    assert done.attempts == 2 and [e.exception_class_path for e in done.errors] == ["tests.taskapp.tasks.Boom"]
    assert done.started_at < done.last_attempted_at
    assert labels() == ["flaky"]


def test_an_async_task_runs_in_the_drainers_transaction() -> None:
    result = tasks.record_async.enqueue("async")
    assert drain().done == 1
    assert tasks.record_async.get_result(result.id).return_value == "async"
    assert labels() == ["async"]

    failing = tasks.record_async_then_raise.enqueue("async rolled back")
    assert drain(max_attempts=1).failed == 1
    assert tasks.record_async_then_raise.get_result(failing.id).status == "FAILED"
    assert labels() == ["async"], "an async task's write escaped the drainer's transaction"


def test_a_task_whose_function_is_gone_fails_readably_and_runs_after_a_retry() -> None:
    result = tasks.record.enqueue("renamed")
    gone = "tests.taskapp.tasks.no_such_task"
    with connection.cursor() as cursor:  # as if a deploy renamed the function after the enqueue
        cursor.execute(
            "UPDATE outbox_event SET payload = jsonb_set(payload, '{task}', to_jsonb(%s::text)) WHERE id = %s",
            [gone, int(result.id)],
        )

    assert drain(max_attempts=1).failed == 1
    event = OutboxEvent.objects.get(id=int(result.id))
    assert event.status == "failed"
    assert event.last_error.startswith(f"outbox.tasks.payload.TaskNotFound: task '{gone}' cannot be imported")
    with pytest.raises(compat.TaskResultDoesNotExist, match="cannot be imported"):
        tasks.record.get_result(result.id)

    with connection.cursor() as cursor:  # the function is back
        cursor.execute(
            "UPDATE outbox_event SET payload = jsonb_set(payload, '{task}', to_jsonb(%s::text)) WHERE id = %s",
            ["tests.taskapp.tasks.record", int(result.id)],
        )
    assert operations.retry(ids=[int(result.id)]) == 1
    assert drain().done == 1
    done = tasks.record.get_result(result.id)
    assert done.status == "SUCCESSFUL" and labels() == ["renamed"]
    assert [e.exception_class_path for e in done.errors] == ["outbox.tasks.payload.TaskNotFound"]


def test_task_signals_are_sent() -> None:
    seen: list[tuple[str, str]] = []

    def receiver(signal_name: str):  # noqa: ANN202
        def on(sender: type, task_result: object, **kwargs: object) -> None:
            assert sender is OutboxBackend
            seen.append((signal_name, str(task_result.status)))  # type: ignore[attr-defined]

        return on

    handlers = {name: receiver(name) for name in ("enqueued", "started", "finished")}
    compat.task_enqueued.connect(handlers["enqueued"])
    compat.task_started.connect(handlers["started"])
    compat.task_finished.connect(handlers["finished"])
    try:
        tasks.record.enqueue("signalled")
        drain()
    finally:
        compat.task_enqueued.disconnect(handlers["enqueued"])
        compat.task_started.disconnect(handlers["started"])
        compat.task_finished.disconnect(handlers["finished"])
    assert seen == [("enqueued", "READY"), ("started", "RUNNING"), ("finished", "SUCCESSFUL")]


def test_results_go_with_their_events_when_purged() -> None:
    result = tasks.record.enqueue("purged")
    drain()
    assert OutboxTaskResult.objects.filter(event_id=int(result.id)).exists()
    OutboxEvent.objects.filter(id=int(result.id)).update(processed_at=timezone.now() - dt.timedelta(days=30))
    assert operations.purge(older_than=dt.timedelta(days=7)) == 1
    assert not OutboxTaskResult.objects.exists(), "a purged task left its result row"


# ------------------------------------------------------------------ Django's expectations


def test_the_backend_declares_what_it_supports() -> None:
    backend = compat.task_backends["default"]
    assert isinstance(backend, OutboxBackend)
    assert (backend.supports_defer, backend.supports_get_result, backend.supports_async_task) == (True, True, True)
    assert backend.supports_priority is False, "claims are in id order: priority changes nothing"


def test_validate_task_refuses_what_the_backend_cannot_do() -> None:
    with pytest.raises(compat.InvalidTask, match="priority"):
        tasks.record.using(priority=10)
    with pytest.raises(compat.InvalidTask, match="Queue 'nowhere' is not valid"):
        tasks.record.using(queue_name="nowhere")
    with pytest.raises(compat.InvalidTask, match="aware"):
        tasks.record.using(run_after=dt.datetime(2030, 1, 1))  # noqa: DTZ001 (naive on purpose)


def test_arguments_json_cannot_hold_are_refused_at_enqueue() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.record.enqueue(object())
    assert not OutboxEvent.objects.exists()


def test_unknown_result_ids_do_not_exist() -> None:
    backend = compat.task_backends["default"]
    for bad in ("", "abc", "nowhere:1", "99999999", "1:2:3"):
        with pytest.raises(compat.TaskResultDoesNotExist):
            backend.get_result(bad)
    other_event = OutboxEvent.objects.create(topic="stock.level.counted", key="1", payload={})
    with pytest.raises(compat.TaskResultDoesNotExist):
        backend.get_result(str(other_event.id))  # an event that is not a task


def test_the_framework_checks_pass_with_the_project_settings() -> None:
    messages = [m for m in checks.run_checks() if m.id and m.id.startswith("outbox.E05")]
    assert messages == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"OPTIONS": {"DATABSE": "default"}}, ["outbox.E051"]),
        ({"OPTIONS": {"DATABASE": "nowhere"}}, ["outbox.E052"]),
        ({"QUEUES": []}, ["outbox.E053"]),
        ({"OPTIONS": {"DATABASE": "other"}, "QUEUES": ["a", "b"]}, []),
        ({"OPTIONS": None}, ["outbox.E050"]),
        ({"OPTIONS": {"DATABASE": ["default"]}}, ["outbox.E052"]),
        ({"OPTIONS": {"DATABASE": 5}}, ["outbox.E052"]),
        ({"OPTIONS": {1: 2, "MAX_ATTEMPTS": -1}}, ["outbox.E051", "outbox.E051"]),
        ({"QUEUES": "default"}, ["outbox.E054"]),
        ({"QUEUES": None}, ["outbox.E054"]),
        ({"QUEUES": 5}, ["outbox.E054"]),
        ({"QUEUES": [1, "default"]}, ["outbox.E054"]),
        ({"QUEUES": ["", "default"]}, ["outbox.E054"]),
    ],
)
def test_backend_checks_name_the_bad_setting(params: dict[str, object], expected: list[str]) -> None:
    backend = OutboxBackend("custom", {"BACKEND": "outbox.tasks.OutboxBackend", **params})
    messages = list(backend.check())
    assert [m.id for m in messages] == expected, [m.msg for m in messages]
    for message in messages:
        assert "TASKS['custom']" in message.msg


def test_a_backend_with_bad_settings_refuses_to_enqueue() -> None:
    """Where no checks run (gunicorn), a misspelt OPTIONS key must not send tasks elsewhere unnoticed."""
    backend = OutboxBackend("custom", {"BACKEND": "outbox.tasks.OutboxBackend", "OPTIONS": {"DATABSE": "other"}})
    with pytest.raises(ImproperlyConfigured, match=r"TASKS\['custom'\]\['OPTIONS'\] has an unknown key 'DATABSE'"):
        backend.enqueue(tasks.record, ["refused"], {})
    assert not OutboxEvent.objects.exists()


def test_task_payload_is_readable_in_the_admin_and_by_sql() -> None:
    result = tasks.add.using(queue_name="other").enqueue(1, b=2)
    payload = OutboxEvent.objects.get(id=int(result.id)).payload
    assert payload == {
        "task": "tests.taskapp.tasks.add",
        "args": [1],
        "kwargs": {"b": 2},
        "backend": "default",
        "queue": "other",
        "priority": 0,
        "run_after": None,
    }
    json.dumps(payload)


def test_one_queue_drains_alone_and_task_events_are_counted_like_any_topic() -> None:
    tasks.record.enqueue("waiting")
    tasks.write_then_raise.enqueue("waiting too")
    tasks.add.enqueue(1, 2)

    assert drain(topics=["tasks.other"]).done == 1  # drain_outbox --topic tasks.other

    status = operations.status(topics=["tasks.default", "tasks.other"])
    by_topic = {(row.topic, row.status): row.events for row in status.rows}
    assert by_topic[("tasks.default", "pending")] == 2, by_topic
    assert by_topic[("tasks.other", "done")] == 1, by_topic
    assert labels() == []
