"""What cycles did: the counts ``run_once``/``drain``/``run`` return, and the per-batch log line."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from outbox.conf import OutboxSettings
from outbox.drainer.config import QUEUE_COUNT_CAP, QUEUE_COUNT_EVERY
from outbox.drainer.store import Store
from outbox.handlers import Registration

logger = logging.getLogger("outbox.drainer")


@dataclass
class DrainResult:
    """What one or more cycles did.

    ``lost``: claimed events another drainer took over before they ran here.
    ``released``: claimed events given back unrun (a stop was asked for, or their
    bucket changed hands), claimable again at once.
    """

    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def __iadd__(self, other: DrainResult) -> DrainResult:
        self.claimed += other.claimed
        self.done += other.done
        self.retried += other.retried
        self.failed += other.failed
        self.lost += other.lost
        self.released += other.released
        self.outcomes.update(other.outcomes)
        return self


@dataclass
class TopicReport:
    """One topic's part of a processing transaction, for the log line."""

    registration: Registration
    processed: int = 0
    failed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class BatchLog:
    """The per-batch INFO line, with the queue depth counted at most once a second."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._counted: tuple[float, int] | None = None

    def write(self, topics: list[TopicReport], finished: int) -> None:
        if not topics or not logger.isEnabledFor(logging.INFO):
            return
        remaining = self._remaining(finished)
        for topic in topics:
            names = topic.registration.outcome_names
            parts = [f"processed={topic.processed}"]
            parts += [f"{name}={topic.outcomes.get(name, 0)}" for name in names]
            parts += [f"{name}={count}" for name, count in sorted(topic.outcomes.items()) if name not in names]
            parts.append(f"failed={topic.failed}")
            parts.append(f"queue_remaining={remaining}")
            logger.info("%s: %s", topic.registration.label, " ".join(parts))

    def _remaining(self, finished: int) -> str:
        now = time.monotonic()
        if self._counted is not None and now - self._counted[0] < QUEUE_COUNT_EVERY:
            when, count = self._counted
            if count >= QUEUE_COUNT_CAP:
                return f"{QUEUE_COUNT_CAP}+"
            count = max(count - finished, 0)
            self._counted = (when, count)
            return str(count)
        count = self.store.count_pending(QUEUE_COUNT_CAP)
        self._counted = (now, count)
        return f"{count}+" if count >= QUEUE_COUNT_CAP else str(count)


def log_started(identity: str, s: OutboxSettings, topics: Sequence[str], ordered: Sequence[str]) -> None:
    """The drainer's first line: its identity and every setting that shapes its work."""
    logger.info(
        "drainer=%s started batch_size=%d max_attempts=%d lease=%ss interval=%ss notify=%s topics=%s ordered=%s",
        identity,
        s.batch_size,
        s.max_attempts,
        s.lease,
        s.poll_interval,
        s.notify,
        ",".join(topics),
        ",".join(ordered) or "-",
    )


def log_stopped(identity: str, total: DrainResult) -> None:
    """The drainer's last line: what it did in all."""
    logger.info(
        "drainer=%s stopped claimed=%d done=%d retried=%d failed=%d lost=%d released=%d",
        identity,
        total.claimed,
        total.done,
        total.retried,
        total.failed,
        total.lost,
        total.released,
    )
