"""The suite's own CI rules, run for real in a pytest of their own (tests/conftest.py):
under CI a skip is a failure, and OUTBOX_TEST_SERVER_MAJOR refuses the wrong server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.support import ROOT

pytestmark = pytest.mark.process

PROBE = "tests/probes/skipping.py"


def pytest_of_probe(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "OUTBOX_TEST_SERVER_MAJOR")}
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def server_major() -> int:
    return connection.pg_version // 10000


def test_a_skip_is_a_skip_outside_ci() -> None:
    done = pytest_of_probe()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout, done.stdout


def test_a_skip_is_a_failure_under_ci() -> None:
    done = pytest_of_probe(CI="true")
    assert done.returncode == 1, done.stdout + done.stderr
    said = "skipped under CI (CI='true'), where nothing may be skipped: Skipped: a probe that always skips"
    assert said in done.stdout, done.stdout
    assert "1 failed" in done.stdout, done.stdout


@pytest.mark.django_db
def test_the_wrong_server_major_refuses_the_whole_run() -> None:
    wrong = pytest_of_probe(OUTBOX_TEST_SERVER_MAJOR=str(server_major() + 1))
    assert wrong.returncode == 3, wrong.stdout + wrong.stderr
    assert "refusing to run this pass on the wrong server" in wrong.stdout + wrong.stderr
    right = pytest_of_probe(OUTBOX_TEST_SERVER_MAJOR=str(server_major()))
    assert right.returncode == 0, right.stdout + right.stderr
