"""The bench's trivial tasks (bench/tasks_bench.py): insert one row, or pause first."""

from __future__ import annotations

from django.db import connection

from outbox.tasks.compat import task


def _insert(n: int, pause: float) -> None:
    with connection.cursor() as cursor:
        if pause:
            cursor.execute("SELECT pg_sleep(%s)", [pause])
        cursor.execute("INSERT INTO bench_task_row (n) VALUES (%s)", [n])


@task(backend="default")
def outbox_insert_row(n: int, pause: float = 0.0) -> None:
    _insert(n, pause)


@task(backend="db")
def db_insert_row(n: int, pause: float = 0.0) -> None:
    _insert(n, pause)
