"""Helpers shared by the test suites: waiting on state, real drainer processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
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
