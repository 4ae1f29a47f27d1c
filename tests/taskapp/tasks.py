"""Test tasks: each says what it writes, returns or raises."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db import connection

from outbox.tasks.compat import task
from tests.taskapp.models import TaskEffect

#: Runs of each label in this process (kept across rollbacks: how often a task really ran).
RUNS: Counter[str] = Counter()


@task
def record(label: str) -> dict[str, Any]:
    """One TaskEffect row; returns what it wrote."""
    RUNS[label] += 1
    effect = TaskEffect.objects.create(label=label)
    return {"label": label, "id": effect.id}


@task(queue_name="other")
def add(a: float, b: float) -> float:
    return a + b


class Boom(Exception):
    pass


@task
def write_then_raise(label: str) -> None:
    """Writes a row, then raises: the row must never commit."""
    RUNS[label] += 1
    TaskEffect.objects.create(label=label)
    raise Boom(f"boom {label}")


@task(takes_context=True)
def flaky(context: Any, label: str) -> int:
    """Raises on its first attempt, writes and returns the attempt number on the next."""
    if context.attempt < 2:
        raise Boom(f"first attempt of {label}")
    TaskEffect.objects.create(label=label)
    return context.attempt


@task
async def record_async(label: str) -> str:
    await TaskEffect.objects.acreate(label=label)
    return label


@task
async def record_async_then_raise(label: str) -> None:
    """Writes through the async ORM, then raises: the write must roll back with the drainer's transaction."""
    await TaskEffect.objects.acreate(label=label)
    raise Boom(f"async {label}")


@task
def wait_for_lock(label: str, lock: int) -> str:
    """Blocks until the test releases advisory lock ``lock``: RUNNING can be seen meanwhile."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock])
    TaskEffect.objects.create(label=label)
    return label


@task
def returns_a_set() -> Any:
    return {1, 2}


@task
def record_slowly(label: str, seconds: float) -> int:
    """One TaskEffect row after a pause in the database (a kill can land mid-task); returns its id."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
    return TaskEffect.objects.create(label=label).id
