"""The zero-setup path: with DATABASE_URL unset, manage.py starts, reuses and stops an embedded server."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import manage as run_manage

pytestmark = pytest.mark.process

SHOW_MAX_WAL_SIZE = (
    "from django.db import connection; c = connection.cursor(); c.execute('SHOW max_wal_size'); print(c.fetchone()[0])"
)


def manage(*args: str, pgdata: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env["EMBEDDED_PGDATA"] = str(pgdata)
    return run_manage(*args, env=env)


def test_fresh_data_dir_migrate_drain_status_stop() -> None:
    with tempfile.TemporaryDirectory(prefix="outbox-embedded-") as tmp:
        pgdata = Path(tmp) / "pgdata"
        migrate = manage("migrate", "--verbosity", "0", pgdata=pgdata)
        assert migrate.returncode == 0, migrate.stderr
        # Said once, by the command that started the server, with how to stop it.
        assert f"started the embedded PostgreSQL in {pgdata}" in migrate.stderr, migrate.stderr
        assert "embedded_postgres stop" in migrate.stderr
        drained = manage("drain_outbox", "--once", pgdata=pgdata)
        assert drained.returncode == 0, drained.stderr
        assert "drained claimed=0" in drained.stdout
        assert "embedded PostgreSQL" not in drained.stderr, "the next commands reuse it without a word"
        wal = manage("shell", "-c", SHOW_MAX_WAL_SIZE, pgdata=pgdata)
        assert wal.stdout.strip().splitlines()[-1] == "128MB", wal.stdout + wal.stderr
        shown = manage("outbox_demo", "--results", "3000", "--products", "20", "--drainers", "1", pgdata=pgdata)
        assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
        assert "a checkpoint dropped the WAL this run wrote" in " ".join(shown.stdout.split()), shown.stdout[-1500:]
        wal_bytes = sum(f.stat().st_size for f in (pgdata / "pg_wal").iterdir() if f.is_file())
        assert wal_bytes <= 160 * 2**20, f"pg_wal holds {wal_bytes / 2**20:.0f} MB after the demo"
        status = manage("embedded_postgres", "status", pgdata=pgdata)
        assert status.returncode == 0 and "running" in status.stdout, status.stderr
        stop = manage("embedded_postgres", "stop", pgdata=pgdata)
        assert stop.returncode == 0, stop.stderr
        assert not (pgdata / "postmaster.pid").exists(), "the server is still running after stop"
