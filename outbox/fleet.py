"""Real ``manage.py drain_outbox`` processes: start them, watch them, stop them.

One helper for every place that runs drainers as processes: the demo
(``outbox_demo``), the test suites (kills, stalls, restarts) and the benchmarks.
Each process logs to a file of its own; ``stop()`` sends SIGTERM (each finishes its
batch and exits 0) and kills what has not exited after the timeout.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: What a drainer logs once it is connected, has joined the others and listens.
STARTED_MARKER = " started batch_size="


class FleetError(RuntimeError):
    """A drainer process exited or did not start as expected."""


def drainer_env(database_url: str, settings_module: str = "project.settings", **extra: str) -> dict[str, str]:
    """This process's environment for a drainer of ``database_url`` under ``settings_module``."""
    env = os.environ.copy()
    env["DATABASE_URL"] = database_url
    env["DJANGO_SETTINGS_MODULE"] = settings_module
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class DrainerProcess:
    """One ``manage.py drain_outbox`` subprocess, its output in ``log`` (a temporary file by default)."""

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str],
        manage_py: Path,
        log: Path | None = None,
    ) -> None:
        self.args = list(args)
        self._own_log = log is None
        if log is None:
            handle, name = tempfile.mkstemp(prefix="drainer-", suffix=".log")
            os.close(handle)
            log = Path(name)
        self.log = log
        with log.open("wb") as out:
            # Our own interpreter running our own manage.py: no untrusted input.
            self.process = subprocess.Popen(  # noqa: S603
                [sys.executable, str(manage_py), "drain_outbox", *self.args],
                cwd=manage_py.parent,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        """The last lines of its output, and how it ended if it has."""
        text = "\n".join(self.output().splitlines()[-lines:])
        code = self.exit_code
        return text if code is None else f"{text}\n[drainer {self.pid} exited with {code}]"

    def started(self) -> bool:
        return STARTED_MARKER in self.output()

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
            raise FleetError(
                f"drainer {self.pid} still running after {timeout}s; its output ends:\n{self.tail(40)}"
            ) from None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then wait; SIGKILL (and None) if it has not exited after ``timeout``."""
        self.send(signal.SIGTERM)
        return self.reap(timeout)

    def reap(self, timeout: float) -> int | None:
        """Wait for the exit code; SIGKILL (and None) after ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self._own_log:
            try:
                self.log.unlink()
            except OSError:
                pass


class DrainerFleet:
    """``count`` drainer processes kept at strength: a dead one can be replaced.

    Every process ever started is kept (``history``), so a failing run can show the
    output of the drainers that were killed, not only of the survivors.
    """

    def __init__(
        self,
        count: int,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str],
        manage_py: Path,
        log_dir: Path | None = None,
    ) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.manage_py = manage_py
        self.log_dir = log_dir
        self._lock = threading.Lock()
        self.history: list[DrainerProcess] = []
        self.live: list[DrainerProcess] = [self._start() for _ in range(count)]

    def _start(self) -> DrainerProcess:
        log = None if self.log_dir is None else self.log_dir / f"drainer-{len(self.history) + 1}.log"
        process = DrainerProcess(self.args, env=self.env, manage_py=self.manage_py, log=log)
        self.history.append(process)
        return process

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [process.pid for process in self.live]

    def live_pids(self) -> set[int]:
        with self._lock:
            return {process.pid for process in self.live if process.exit_code is None}

    def check_alive(self) -> None:
        """Raise FleetError naming the first drainer that exited, with the end of its output."""
        for index, process in enumerate(self.live):
            code = process.exit_code
            if code is not None:
                raise FleetError(
                    f"drainer {index + 1} (pid {process.pid}) exited with code {code}; its output ends:\n"
                    f"{process.tail()}"
                )

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until every live drainer is connected, has joined the others and listens."""
        deadline = time.monotonic() + timeout
        while not all(process.started() for process in self.live):
            self.check_alive()
            if time.monotonic() > deadline:
                waiting = [p.pid for p in self.live if not p.started()]
                raise FleetError(f"drainers {waiting} did not start within {timeout:.0f}s")
            time.sleep(0.05)

    def replace_dead(self) -> list[int]:
        """Start a new drainer for each one that exited (as systemd would); their exit codes."""
        codes: list[int] = []
        with self._lock:
            for index, process in enumerate(self.live):
                code = process.exit_code
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

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every live drainer once it has started; their exit codes (None: killed).

        A drainer still starting has no signal handler yet and would die of the
        SIGTERM instead of exiting 0, so each one's start is waited for first.
        """
        with self._lock:
            deadline = time.monotonic() + timeout
            for process in self.live:
                while not process.started() and process.exit_code is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                process.send(signal.SIGTERM)
            return [process.reap(max(deadline - time.monotonic(), 1.0)) for process in self.live]

    def output(self, tail: int = 1500) -> str:
        """The last ``tail`` characters of every drainer's output, newest drainers last."""
        return "\n".join(
            f"--- drainer pid={process.pid} exit={process.exit_code}\n{process.output()[-tail:]}"
            for process in self.history
        )

    def close(self) -> None:
        for process in self.history:
            process.close()
