from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from django.conf import settings

from outbox.handlers import HandlerRegistry, registry
from tests.support import PrivateServer


@pytest.fixture
def handlers() -> Iterator[HandlerRegistry]:
    """The process registry, restored after the test (tests may add topics)."""
    saved = registry.snapshot()
    try:
        yield registry
    finally:
        registry.restore(saved.items())


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivateServer]:
    """A throwaway embedded PostgreSQL for one test module: the tests that restart or break their server."""
    server = PrivateServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def outbox_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog for the outbox and pricing loggers (they do not propagate to the root)."""
    loggers = [logging.getLogger(name) for name in ("outbox", "pricing")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(caplog.handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(caplog.handler)
            logger.setLevel(level)


# ------------------------------------------------------------------ CI strictness


def in_ci() -> bool:
    """True under CI (the variable CI set, as CI services and .ci/run set it): nothing may skip."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no", "off"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Under CI a skipped test is a failed one: CI must run everything it says it runs."""
    report: pytest.TestReport = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (CI={os.environ['CI']!r}), where nothing may be skipped: {reason}"
    return report


@pytest.fixture(scope="session", autouse=True)
def expected_server_major() -> None:
    """With OUTBOX_TEST_SERVER_MAJOR set (each CI pass sets it), the suite runs on that major
    version of PostgreSQL or not at all: a pass labelled 18 never runs on a 17 by accident."""
    expected = os.environ.get("OUTBOX_TEST_SERVER_MAJOR", "").strip()
    if not expected:
        return
    import psycopg
    from django.db import connection

    # The server's maintenance database: DATABASE_URL's own may not exist (pytest-django
    # creates test_<name> beside it, and only when a test needs one).
    s = connection.settings_dict
    params = {"host": s["HOST"], "port": s["PORT"], "user": s["USER"], "password": s["PASSWORD"]}
    with psycopg.connect(dbname="postgres", **{k: v for k, v in params.items() if v}) as conn:
        actual = conn.info.server_version // 10000
    if str(actual) != expected:
        pytest.exit(
            f"OUTBOX_TEST_SERVER_MAJOR={expected} but the test server is PostgreSQL {actual} "
            f"({settings.DATABASE_NOTE}); refusing to run this pass on the wrong server",
            returncode=3,
        )
