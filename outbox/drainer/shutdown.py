"""Stopping a drainer by signal: the first SIGTERM/SIGINT finishes the batch, a second exits at once."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

logger = logging.getLogger("outbox.drainer")


class Stoppable(Protocol):
    identity: str

    @property
    def stopping(self) -> bool: ...

    def request_stop(self) -> None: ...


@contextmanager
def signals_handled(drainer: Stoppable) -> Iterator[None]:
    """SIGTERM/SIGINT while in the block: the first asks ``drainer`` to stop after its batch.

    A second one re-raises the signal with its default action, so the process dies
    by it at once: its connection drops, the open transaction rolls back, and the
    other drainers take its events (docs/guarantees.md#shutdown).
    """

    def handle(signum: int, frame: FrameType | None) -> None:
        if drainer.stopping:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        logger.info(
            "drainer=%s signal=%s: finishing the current batch, then exiting (send it again to exit at once)",
            drainer.identity,
            signal.Signals(signum).name,
        )
        drainer.request_stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
