"""SIGKILL storm on task drainers: each task's database effect happens exactly once.

3 drain_outbox processes run 1,500 tasks that each pause in the database and write
one row; a random drainer holding a batch is SIGKILLed every few hundred ms and
replaced. Afterwards every task is SUCCESSFUL, wrote exactly one row, and its
stored return value is the id of that row (the result committed with the effect).
"""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

from outbox.models import OutboxEvent
from tests.fault.conftest import all_settled, assert_queue_settled
from tests.support import DrainerPool, Supervisor, current_database_url, drainer_env, wait_until
from tests.taskapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process, pytest.mark.fault]

TASKS = 1_500
PAUSE = 0.003  # seconds each task spends in pg_sleep: kills land mid-task
KILLS = 8
KILL_EVERY = (0.2, 0.5)
# The rescue, not the lease, must hand a dead drainer's tasks back (see test_kill.py);
# a task in several killed batches may be charged more than the default 3 attempts.
ARGS = ["--batch-size", "50", "--interval", "0.5", "--max-attempts", "20", "--lease", "300"]


def test_sigkill_storm_runs_each_tasks_effect_exactly_once() -> None:
    for chunk in range(0, TASKS, 500):
        with transaction.atomic():
            for i in range(chunk, chunk + 500):
                tasks.record_slowly.enqueue(f"t{i}", PAUSE)
    pool = DrainerPool(3, ARGS, env=drainer_env("tests.settings_tasks"))
    killer = Supervisor(pool, kill_every=KILL_EVERY, seed=13, database_url=current_database_url())
    started = time.monotonic()
    try:
        killer.start()
        wait_until(lambda: len(killer.kills) >= KILLS or all_settled(), timeout=60, message=f"{KILLS} kills")
        killer.stop()
        wait_until(all_settled, timeout=60, message="every task finished after the storm")
        codes = pool.stop()
    except BaseException:
        killer.stop()
        print(pool.output())
        raise
    finally:
        logs = pool.output(800)
        pool.close()
    print(f"kills={len(killer.kills)} mid-batch={killer.busy_kills} total={time.monotonic() - started:.1f}s")

    assert len(killer.kills) >= KILLS, f"the tasks finished after {len(killer.kills)} kills: no storm"
    assert killer.busy_kills > 0, "no kill hit a drainer holding a batch"
    assert codes == [0, 0, 0], f"survivors exited with {codes}:\n{logs}"
    assert_queue_settled()
    with connection.cursor() as cursor:
        cursor.execute("SELECT label, count(*) FROM taskapp_taskeffect GROUP BY 1 HAVING count(*) <> 1")
        doubled = cursor.fetchall()
        cursor.execute("SELECT count(DISTINCT label) FROM taskapp_taskeffect")
        (effects,) = cursor.fetchone()
        cursor.execute(
            """
            SELECT e.id, e.payload -> 'args' ->> 0, r.return_value
            FROM outbox_event AS e
            LEFT JOIN outbox_task_result AS r ON r.event_id = e.id
            LEFT JOIN taskapp_taskeffect AS t ON t.label = e.payload -> 'args' ->> 0
            WHERE r.return_value IS NULL OR (r.return_value)::bigint <> t.id
            LIMIT 5
            """
        )
        mismatched = cursor.fetchall()
    assert not doubled, f"tasks whose effect happened more than once (label, rows): {doubled[:5]}"
    assert effects == TASKS, f"{TASKS - effects} tasks never wrote their row"
    assert not mismatched, f"results not committed with their effect (event, label, return value): {mismatched}"
    assert OutboxEvent.objects.filter(attempts__gt=1).exists(), "no task was ever run twice: no kill mattered"
