"""outbox.tasks against django-tasks-db's db_worker: same run, same server, same trivial task.

    python bench/tasks_bench.py [--database bench_tasks] [--workers 2] [--tasks 20000] [--db-tasks 4000]

Measures, for each backend:

* enqueue rate: one task per transaction, and 1,000 per transaction (median of 3
  rounds, the backends taking turns);
* drain rate: ``--workers`` worker processes (``drain_outbox --topic tasks.default`` /
  ``db_worker``), all tasks enqueued in one transaction once the workers are up, timed
  from that commit until every task is finished; each task inserts one row;
* a killed worker: one worker runs a task that pauses 3 s in the database, is SIGKILLed
  mid-task and replaced; does the task ever finish (within ``--crash-wait`` seconds)?

It prints the figures (and writes them as JSON with ``--json FILE``). Not a test: it
asserts only that every task's row was written exactly once. It recreates the database
``--database`` on the server of ``DATABASE_URL`` (else the embedded PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import db  # noqa: E402
from bench.cli import positive_int  # noqa: E402
from bench.procs import DrainerPool  # noqa: E402

SETTINGS = "bench.tasks_settings"
#: Turns each backend takes at each enqueue measure (the median is reported).
ROUNDS = 3
#: How long the crash comparison's task pauses in the database (seconds).
CRASH_PAUSE = 3.0


class DbWorkers:
    """``count`` real ``manage.py db_worker`` processes (django-tasks-db's worker)."""

    MARKER = "Starting worker"

    def __init__(self, url: str, count: int, log_dir: Path) -> None:
        env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONUNBUFFERED": "1"}
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        for i in range(count):
            log = log_dir / f"db_worker-{time.monotonic_ns()}-{i}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: S603 (our interpreter, our manage.py)
                    [
                        sys.executable,
                        str(db.ROOT / "manage.py"),
                        "db_worker",
                        "--backend",
                        "db",
                        "--interval",
                        "0.1",
                        "--no-startup-delay",
                        "--verbosity",
                        "2",
                    ],
                    cwd=db.ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            self.processes.append((process, log))

    def wait_ready(self, timeout: float = 60.0) -> None:
        db.wait_for(
            lambda: all(self.MARKER in log.read_text(errors="replace") for _, log in self.processes),
            timeout=timeout,
            what="the db_workers to start",
        )

    def kill_one(self) -> None:
        process, _ = self.processes[0]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def enqueue_rate(task: Any, count: int, per_transaction: int) -> float:
    """Tasks enqueued per second, ``per_transaction`` in each transaction."""
    from django.db import transaction

    started = time.perf_counter()
    for first in range(0, count, per_transaction):
        with transaction.atomic():
            for n in range(first, min(first + per_transaction, count)):
                task.enqueue(n)
    return count / (time.perf_counter() - started)


def counts(conn: Any, backend: str) -> tuple[int, int]:
    query = db.queries.task_bench_outbox_counts if backend == "outbox" else db.queries.task_bench_db_counts
    finished, rows = conn.execute(query).fetchone()
    return int(finished), int(rows)


def drain_rate(conn: Any, backend: str, task: Any, count: int, start: Callable[[], Any]) -> dict[str, float]:
    """Start the workers, enqueue ``count`` tasks in one transaction, time until all are finished."""
    from django.db import transaction

    conn.execute(db.queries.task_bench_reset)
    workers = start()
    try:
        workers.wait_ready()
        with transaction.atomic():
            for n in range(count):
                task.enqueue(n)
        committed = time.perf_counter()
        db.wait_for(lambda: counts(conn, backend)[0] >= count, timeout=900, interval=0.05, what=f"{backend} drained")
        seconds = time.perf_counter() - committed
    finally:
        workers.stop()
    finished, rows = counts(conn, backend)
    if rows != count or finished != count:
        raise SystemExit(f"{backend}: {finished} tasks finished and {rows} rows written for {count} tasks")
    return {"tasks": count, "seconds": round(seconds, 2), "per_second": round(count / seconds, 1)}


def crash(
    conn: Any, backend: str, task: Any, start: Callable[[], Any], kill: Callable[[Any], None], wait: float
) -> dict[str, Any]:
    """One worker, one task pausing in the database; SIGKILL mid-task, a new worker: does it finish?"""
    conn.execute(db.queries.task_bench_reset)
    state = db.queries.task_bench_outbox_state if backend == "outbox" else db.queries.task_bench_db_state
    first = start()
    second = None
    try:
        first.wait_ready()
        task.enqueue(1, CRASH_PAUSE)
        db.wait_for(lambda: conn.execute(state).fetchone()[0] == "RUNNING", timeout=30, what=f"{backend} running")
        time.sleep(CRASH_PAUSE / 3)  # into the task's pause: the kill lands mid-task
        kill(first)
        killed = time.perf_counter()
        second = start()
        second.wait_ready()
        finished_after = None
        deadline = killed + wait
        while time.perf_counter() < deadline:
            if conn.execute(state).fetchone()[0] in {"SUCCESSFUL", "FAILED"}:
                finished_after = round(time.perf_counter() - killed, 1)
                break
            time.sleep(0.1)
        status = conn.execute(state).fetchone()[0]
        rows = counts(conn, backend)[1]
    finally:
        first.stop()
        if second is not None:
            second.stop()
    return {"status_after_wait": status, "finished_after_kill_s": finished_after, "rows": rows, "waited_s": wait}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="bench_tasks", help="database to recreate (default: %(default)r)")
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="worker processes per backend (default: %(default)r)"
    )
    parser.add_argument(
        "--tasks", type=positive_int, default=20_000, help="tasks drained by outbox (default: %(default)r)"
    )
    parser.add_argument(
        "--db-tasks", type=positive_int, default=4_000, help="tasks drained by db_worker (default: %(default)r)"
    )
    parser.add_argument(
        "--enqueue", type=positive_int, default=2_000, help="tasks per enqueue measure (default: %(default)r)"
    )
    parser.add_argument(
        "--crash-wait", type=float, default=30.0, help="seconds to wait after the kill (default: %(default)r)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()

    server = db.resolve_server()
    url = db.recreate_database(server, options.database)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    import django

    django.setup()
    from django.core.management import call_command

    from bench.task_funcs import db_insert_row, outbox_insert_row

    call_command("migrate", verbosity=0)
    log_dir = Path(tempfile.mkdtemp(prefix="tasks-bench-"))
    conn = db.connect(url)
    conn.execute(db.queries.task_bench_table)
    settings = db.server_settings(conn)
    backends = {"outbox": outbox_insert_row, "django-tasks-db": db_insert_row}

    def outbox_workers(count: int) -> Callable[[], Any]:
        return lambda: DrainerPool(
            url,
            count,
            batch_size=100,
            log_dir=log_dir,
            settings_module=SETTINGS,
            extra_args=["--topic", "tasks.default"],
        )

    def db_workers(count: int) -> Callable[[], Any]:
        return lambda: DbWorkers(url, count, log_dir)

    figures: dict[str, Any] = {"server": settings, "workers": options.workers}
    # Enqueues are commit-bound and the server is shared: the backends take turns,
    # ROUNDS times, and each figure is the median of its rounds.
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for name, task in backends.items():
            conn.execute(db.queries.task_bench_reset)
            rates.setdefault((name, "enqueue_1_per_tx"), []).append(enqueue_rate(task, options.enqueue, 1))
            rates.setdefault((name, "enqueue_1000_per_tx"), []).append(enqueue_rate(task, options.enqueue * 5, 1000))
    for (name, key), values in rates.items():
        figures.setdefault(name, {})[key] = round(statistics.median(values), 1)
    figures["outbox"]["drain"] = drain_rate(
        conn, "outbox", outbox_insert_row, options.tasks, outbox_workers(options.workers)
    )
    figures["django-tasks-db"]["drain"] = drain_rate(
        conn, "django-tasks-db", db_insert_row, options.db_tasks, db_workers(options.workers)
    )
    figures["outbox"]["killed_worker"] = crash(
        conn, "outbox", outbox_insert_row, outbox_workers(1), lambda pool: pool.live[0].kill(), options.crash_wait
    )
    figures["django-tasks-db"]["killed_worker"] = crash(
        conn, "django-tasks-db", db_insert_row, db_workers(1), lambda workers: workers.kill_one(), options.crash_wait
    )
    conn.close()

    ratio = figures["outbox"]["drain"]["per_second"] / figures["django-tasks-db"]["drain"]["per_second"]
    figures["drain_ratio"] = round(ratio, 1)
    print(
        f"server: PostgreSQL {settings.get('server_version')}, synchronous_commit={settings.get('synchronous_commit')}"
    )
    print(f"| measure ({options.workers} workers each for the drain) | outbox.tasks | django-tasks-db |")
    print("|---|---|---|")
    for label, key in (
        ("enqueue, 1 task per transaction (tasks/s)", "enqueue_1_per_tx"),
        ("enqueue, 1,000 per transaction (tasks/s)", "enqueue_1000_per_tx"),
    ):
        print(f"| {label} | {figures['outbox'][key]:,.0f} | {figures['django-tasks-db'][key]:,.0f} |")
    o, d = figures["outbox"]["drain"], figures["django-tasks-db"]["drain"]
    print(
        f"| drain, trivial task inserting one row (tasks/s) "
        f"| {o['per_second']:,.0f} ({o['tasks']:,} in {o['seconds']} s) "
        f"| {d['per_second']:,.0f} ({d['tasks']:,} in {d['seconds']} s) |"
    )
    ok, dk = figures["outbox"]["killed_worker"], figures["django-tasks-db"]["killed_worker"]
    for name, k in (("outbox.tasks", ok), ("django-tasks-db", dk)):
        after = (
            f"finished {k['finished_after_kill_s']} s after the kill"
            if k["finished_after_kill_s"] is not None
            else "never finished"
        )
        print(
            f"killed worker, {name}: {after}; status after {k['waited_s']:.0f} s: "
            f"{k['status_after_wait']}, rows written: {k['rows']}"
        )
    print(f"drain ratio outbox / django-tasks-db: {ratio:.1f}x")
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
