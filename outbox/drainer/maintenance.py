"""A drainer's periodic duties, each with its own interval, run between cycles.

* rebalance: heartbeat and order buckets (REBALANCE_INTERVAL);
* rescue: drainers that died without a word, their unordered leases freed
  (RESCUE_INTERVAL; 0 turns it off and leaves it to the leases running out);
* retry_failed: failed events back to pending (``--retry-failed-every``);
* purge: done events past RETENTION, in bounded chunks (PURGE_INTERVAL).

Retry and purge are the operators' own functions (outbox.operations, which outbox.services exports).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from outbox import operations
from outbox.conf import OutboxSettings
from outbox.drainer.store import Store

logger = logging.getLogger(__name__)

#: Purge chunks per run of the duty, so a purge never delays the next claim long.
PURGE_CHUNKS_PER_RUN = 10


@dataclass
class Duty:
    """Something to do every ``every`` seconds (None or 0: never)."""

    name: str
    every: float | None
    run: Callable[[], object]
    last: float | None = None

    def due(self, now: float) -> bool:
        return bool(self.every) and (self.last is None or now - self.last >= (self.every or 0))


class Duties:
    """The duties of one drainer, run when due."""

    def __init__(self, duties: Sequence[Duty]) -> None:
        self.duties = list(duties)

    def run_due(self, *, force: bool = False) -> None:
        now = time.monotonic()
        for duty in self.duties:
            if duty.every and (force or duty.due(now)):
                duty.last = now
                duty.run()

    def seconds_until_due(self) -> float:
        """Seconds until the next duty is due (0: one is due now)."""
        now = time.monotonic()
        waits = [
            0.0 if duty.last is None else max(duty.last + duty.every - now, 0.0) for duty in self.duties if duty.every
        ]
        return min(waits, default=float("inf"))


def rescue(store: Store, expiry: float) -> int:
    """Forget drainers that are gone; free the unordered events they held. Returns how many."""
    rows = store.rescue_dead(expiry)
    if rows:
        holders = sorted({holder for _, holder in rows})
        logger.warning(
            "drainer=%s rescued %d event(s) held by drainer(s) no longer running: %s",
            store.identity,
            len(rows),
            ", ".join(holders),
        )
    return len(rows)


def purge(store: Store, settings: OutboxSettings) -> int:
    return operations.purge(
        older_than=settings.retention,
        chunk=settings.purge_chunk,
        max_chunks=PURGE_CHUNKS_PER_RUN,
        using=store.using,
    )


def retry_failed(store: Store, topics: Sequence[str]) -> int:
    return operations.retry(topics=topics, using=store.using)
