"""bench/tasks_bench.py at a tiny size, end to end, so the tasks benchmark never rots.

Real worker processes of both backends (drain_outbox and django-tasks-db's db_worker)
on a database of its own on the test server, dropped afterwards. The figures are not
judged; what is checked is that every measure ran, that every task's row was written
once (the bench exits non-zero otherwise), and the crash comparison's outcome, which
is behaviour, not speed: outbox.tasks finishes the killed worker's task, db_worker
leaves it RUNNING.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.support import ROOT

pytestmark = pytest.mark.process


@pytest.mark.skipif(
    importlib.util.find_spec("django_tasks_db") is None,
    reason="django-tasks-db is a benchmark dependency: pip install -r bench/requirements.txt",
)
def test_tasks_bench_runs_both_backends_and_the_crash_comparison(tmp_path: Path) -> None:
    from bench import db

    database = f"{connection.settings_dict['NAME']}_tasksbench"
    out = tmp_path / "figures.json"
    args = ["--database", database, "--tasks", "200", "--db-tasks", "40", "--enqueue", "20", "--crash-wait", "15"]
    try:
        completed = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "tasks_bench.py"), *args, "--json", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        db.drop_database(db.resolve_server(), database)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    figures = json.loads(out.read_text())
    for backend in ("outbox", "django-tasks-db"):
        for key in ("enqueue_1_per_tx", "enqueue_1000_per_tx"):
            assert figures[backend][key] > 0, (backend, key, figures[backend])
        assert figures[backend]["drain"]["per_second"] > 0
    assert figures["outbox"]["killed_worker"]["status_after_wait"] == "SUCCESSFUL", figures["outbox"]
    assert figures["outbox"]["killed_worker"]["rows"] == 1
    assert figures["django-tasks-db"]["killed_worker"]["status_after_wait"] == "RUNNING", figures["django-tasks-db"]
    assert "drain ratio outbox / django-tasks-db" in completed.stdout
