from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from outbox.handlers import HandlerRegistry, registry


@pytest.fixture
def handlers() -> Iterator[HandlerRegistry]:
    """The process registry, restored after the test (tests may add topics)."""
    saved = registry.snapshot()
    try:
        yield registry
    finally:
        registry.restore(saved.items())


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
