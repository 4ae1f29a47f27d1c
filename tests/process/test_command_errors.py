"""No traceback for any input: a wrong environment, a database where migrate has not
run, an embedded server's files left broken. Each ends in one line saying what to do."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support import ROOT, PrivateServer, current_database_url, drainer_env, manage

pytestmark = pytest.mark.process


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines, f"no error on stderr (exit {done.returncode}): {done.stdout}"
    return lines[-1]


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        (
            {"DATABASE_URL": "notaurl"},
            "manage.py: DATABASE_URL must be a PostgreSQL URL (postgres://user:password@host:port/dbname), "
            "got 'notaurl'",
        ),
        (
            {"DATABASE_URL": "postgres://"},
            "manage.py: DATABASE_URL 'postgres://' names no database: use postgres://user:password@host:port/dbname",
        ),
        (
            {"DATABASE_URL": "postgres://app:s3cret@127.0.0.1:99999/shop"},
            "manage.py: DATABASE_URL 'postgres://app:***@127.0.0.1:99999/shop' is not a valid URL "
            "(Port out of range 0-65535): use postgres://user:password@host:port/dbname",
        ),
        (
            {"DATABASE_URL": "mysql://app:s3cret@db/shop"},
            "manage.py: DATABASE_URL must be a PostgreSQL URL (postgres://user:password@host:port/dbname), "
            "got 'mysql://app:***@db/shop' (scheme 'mysql')",
        ),
        (
            {"LOG_LEVEL": "banana"},
            "manage.py: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'banana'",
        ),
        (
            {"DJANGO_DEBUG": "banana"},
            "manage.py: DJANGO_DEBUG must be 1 or 0 (or true/false, yes/no, on/off), got 'banana'",
        ),
        (
            {"DJANGO_ALLOWED_HOSTS": ",,,"},
            "manage.py: DJANGO_ALLOWED_HOSTS names no host: use e.g. shop.example.com,localhost (or * for any), "
            "got ',,,'",
        ),
    ],
)
def test_a_wrong_environment_is_one_line(variables: dict[str, str], error: str) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DATABASE_URL": "postgres://x@127.0.0.1/x"}
    done = manage("outbox_status", env={**env, **variables})
    assert done.returncode == 1
    assert done.stderr.strip() == error, done.stderr
    assert "s3cret" not in done.stderr, "the password is never printed"


@pytest.fixture
def unmigrated_url(db: None) -> Iterator[str]:
    """A database of its own on the test server, where migrate has never run."""
    name = f"outbox_unmigrated_{uuid.uuid4().hex[:8]}"
    server = current_database_url().rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize(
    "command",
    [
        ["outbox_status"],
        ["outbox_retry"],
        ["outbox_purge", "--older-than", "7d"],
        ["outbox_backfill", "pricing.CrawlResult", "--dry-run"],
        ["drain_outbox", "--once"],
    ],
)
def test_every_command_on_an_unmigrated_database_says_run_migrate(unmigrated_url: str, command: list[str]) -> None:
    done = manage(*command, env=drainer_env(DATABASE_URL=unmigrated_url))
    assert done.returncode == 1, done.stdout + done.stderr
    line = last_line(done)
    name = unmigrated_url.rsplit("/", 1)[1]
    assert line.startswith(f"CommandError: the database '{name}' is not migrated ("), line
    assert line.endswith("): run python manage.py migrate"), line


def test_the_doctor_reports_the_missing_schema_as_a_failed_check(unmigrated_url: str) -> None:
    done = manage("outbox_doctor", "--json", env=drainer_env(DATABASE_URL=unmigrated_url))
    assert done.returncode == 1
    assert '"name": "schema"' in done.stdout and '"state": "fail"' in done.stdout, done.stdout
    assert "run python manage.py migrate" in done.stdout
    assert last_line(done) == "CommandError: 1 check(s) not ok: schema"


def embedded_env(server: PrivateServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    return {**env, "EMBEDDED_PGDATA": str(server.server.pgdata)}


@pytest.mark.parametrize("content", ["", "[4242, 42", "{}", "[true]"])
def test_a_cut_handle_list_of_the_embedded_server_is_started_again(private_server: PrivateServer, content: str) -> None:
    handles = Path(private_server.server.pgdata) / ".handle_pids.json"
    handles.write_text(content)  # as left by runserver stopped with SIGTERM in the middle of writing it
    done = manage("embedded_postgres", "status", env=embedded_env(private_server))
    assert done.returncode == 0, done.stderr
    assert "embedded PostgreSQL 18" in done.stdout and "running" in done.stdout
    assert handles.read_text() == "[]"


def test_a_cut_lock_file_of_the_embedded_server_says_what_to_do(private_server: PrivateServer) -> None:
    pgdata = Path(private_server.server.pgdata)
    private_server.stop()
    lock = pgdata / "postmaster.pid"
    cut = "12345\n"  # a server that died while writing it
    lock.write_text(cut)
    try:
        done = manage("embedded_postgres", "status", env=embedded_env(private_server))
        assert done.returncode == 1
        assert last_line(done) == (
            f"manage.py: the embedded PostgreSQL's lock file {lock} is cut short (1 of 8 lines: its server died "
            f"while starting?). If no server runs on {pgdata} (`pgrep -f {pgdata}` prints nothing), delete "
            f"{lock} and run the command again; if one does, stop it first"
        )
        lock.unlink()  # what the message says to do
        again = manage("embedded_postgres", "status", env=embedded_env(private_server))
        assert again.returncode == 0, again.stderr
    finally:
        if lock.exists() and lock.read_text() == cut:  # never the lock file of a running server
            lock.unlink()
        private_server.start()


def test_a_bad_outbox_setting_with_task_queues_is_a_system_check_error(tmp_path: Path) -> None:
    """With an OutboxBackend in TASKS, outbox's ready() imports the task runner: reading
    OUTBOX there made a bad setting a traceback of app loading instead of the check's error."""
    (tmp_path / "bad_outbox_settings.py").write_text(
        "from tests.settings_tasks import *  # noqa: F403\nOUTBOX = {'METRICS': 'yes'}\n", encoding="utf-8"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bad_outbox_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DATABASE_URL": "postgres://x@127.0.0.1/x",
    }
    done = manage("check", env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "(outbox.E030) OUTBOX['METRICS'] must be true or false, got 'yes'" in done.stderr
