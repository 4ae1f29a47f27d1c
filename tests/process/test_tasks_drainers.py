"""outbox.tasks with real processes: tasks enqueued by one process, run by drain_outbox,
read back by a third (tests/settings_tasks.py: a project's settings plus a TASKS backend).
"""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from outbox.models import OutboxEvent
from tests.support import ROOT, DrainerProcess, current_database_url, drainer_env, wait_until
from tests.taskapp.models import TaskEffect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]

TASK_SETTINGS = "tests.settings_tasks"
LOCK = 7_130_013  # the advisory lock tests.taskapp.tasks.wait_for_lock waits on

ANOTHER_PROCESS = """
import json, sys
import django
django.setup()
from django.db import transaction
from tests.taskapp import tasks

command, *args = sys.argv[1:]
if command == "enqueue":
    with transaction.atomic():
        ids = [tasks.wait_for_lock.enqueue("running", int(args[0])).id, tasks.write_then_raise.enqueue("bad").id]
    try:
        with transaction.atomic():
            tasks.record.enqueue("rolled back")
            raise RuntimeError
    except RuntimeError:
        pass
    print(json.dumps(ids))
else:
    out = {}
    for result_id in args:
        r = tasks.record.get_backend().get_result(result_id)
        out[result_id] = {
            "status": str(r.status), "attempts": r.attempts, "worker_ids": r.worker_ids,
            "errors": [e.exception_class_path for e in r.errors],
            "return_value": r.return_value if r.status == "SUCCESSFUL" else None,
            "times": [t is not None for t in (r.enqueued_at, r.started_at, r.last_attempted_at, r.finished_at)],
        }
    print(json.dumps(out))
"""


def another_process(*args: str) -> object:
    """Run ANOTHER_PROCESS with the task settings on the test database; its JSON output."""
    completed = subprocess.run(
        [sys.executable, "-c", ANOTHER_PROCESS, *args],
        cwd=ROOT,
        env=drainer_env(TASK_SETTINGS),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, f"the other process failed:\n{completed.stdout}{completed.stderr}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_get_result_from_another_process_sees_every_status() -> None:
    holder = psycopg.connect(current_database_url(), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [LOCK])
    drainer = None
    try:
        running, bad = another_process("enqueue", str(LOCK))
        assert OutboxEvent.objects.count() == 2, "the rolled-back enqueue left an event"
        ready = another_process("get", running, bad)
        assert {r["status"] for r in ready.values()} == {"READY"}, ready

        drainer = DrainerProcess(["--max-attempts", "1", "--batch-size", "10"], env=drainer_env(TASK_SETTINGS))
        wait_until(
            lambda: OutboxEvent.objects.filter(id=int(running), locked_until__isnull=False).exists(),
            message="the drainer claimed the blocked task",
        )
        seen = another_process("get", running)[running]
        assert seen["status"] == "RUNNING", seen
        assert len(seen["worker_ids"]) == 1 and seen["worker_ids"][0].startswith("outbox:"), seen

        holder.execute("SELECT pg_advisory_unlock(%s)", [LOCK])
        wait_until(lambda: not OutboxEvent.objects.filter(status="pending").exists(), message="both tasks finished")
        assert drainer.stop() == 0, drainer.output()
    finally:
        holder.close()
        if drainer is not None:
            drainer.close()

    finished = another_process("get", running, bad)
    assert finished[running] == {
        "status": "SUCCESSFUL",
        "attempts": 1,
        "worker_ids": seen["worker_ids"],
        "errors": [],
        "return_value": "running",
        "times": [True, True, True, True],
    }, finished
    assert finished[bad]["status"] == "FAILED" and finished[bad]["errors"] == ["tests.taskapp.tasks.Boom"]
    assert sorted(TaskEffect.objects.values_list("label", flat=True)) == ["running"], (
        "a failed task's write committed, or the rolled-back task ran"
    )
