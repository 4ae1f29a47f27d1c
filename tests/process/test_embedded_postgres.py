"""The zero-setup path: with DATABASE_URL unset, manage.py starts, reuses and stops an embedded server."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import manage as run_manage

pytestmark = pytest.mark.process


def manage(*args: str, pgdata: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env["EMBEDDED_PGDATA"] = str(pgdata)
    return run_manage(*args, env=env)


def test_fresh_data_dir_migrate_drain_status_stop() -> None:
    with tempfile.TemporaryDirectory(prefix="outbox-embedded-") as tmp:
        pgdata = Path(tmp) / "pgdata"
        migrate = manage("migrate", "--verbosity", "0", pgdata=pgdata)
        assert migrate.returncode == 0, migrate.stderr
        assert f"DATABASE_URL is unset: using the embedded PostgreSQL in {pgdata}" in migrate.stderr
        drained = manage("drain_outbox", "--once", pgdata=pgdata)
        assert drained.returncode == 0, drained.stderr
        assert "drained claimed=0" in drained.stdout
        status = manage("embedded_postgres", "status", pgdata=pgdata)
        assert status.returncode == 0 and "running" in status.stdout, status.stderr
        stop = manage("embedded_postgres", "stop", pgdata=pgdata)
        assert stop.returncode == 0, stop.stderr
        assert not (pgdata / "postmaster.pid").exists(), "the server is still running after stop"
